//! End-to-end tests of the `guildhall` binary against Bluesky's reference PDS and PLC
//! (`tests/peer`, started by `guildhall-testkit`), on SQLite and on PostgreSQL.
//!
//! Each scenario is one async body run once per backend (`sqlite` and `postgres` tests): the
//! real binary runs as a child process on the peer's firehose, and the test compares what the
//! store holds with what the repos hold (`listRecords`).

mod backfill;
mod crash;
mod credits;
mod discovery;
mod e2e;
mod harness;
mod latency;
mod no_ingest;
mod tls;
