//! Ingestion integration tests: the pipeline against a loopback firehose, PLC and PDS of our
//! own, on SQLite and PostgreSQL (`GUILDHALL_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432/test`).

mod firehose;
mod forged;
mod harness;
mod hostile;
mod identity;
mod identity_events;
mod net;
mod outbound;
mod pipeline;
mod retry;
mod rollback;
mod service_auth;
