//! Store integration tests: every case runs unchanged on a fresh SQLite file and on a fresh
//! PostgreSQL database (`GUILDHALL_TEST_PG`, default `postgres://postgres@127.0.0.1:5432/test`).

mod cases;
mod data;
mod equiv;
mod harness;
mod ledger;
mod prop;
mod reads;
mod resync;
mod shares;
