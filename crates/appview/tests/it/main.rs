//! AppView integration tests: XRPC requests answered in-process by the router, every case on
//! a fresh SQLite file and on a fresh PostgreSQL database (`GUILDHALL_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432/test`).

mod cases;
mod crowding;
mod data;
mod edge;
mod harness;
mod ledger;
mod peer_support;
mod refresh;
mod service_auth;
