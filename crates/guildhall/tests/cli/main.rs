//! End-to-end tests of the operator CLI: the real `guildhall` binary against Bluesky's
//! reference PDS and PLC on loopback (`tests/peer`, started by the testkit), and against a
//! running `guildhall serve` for the queries.

mod appview;
mod dns;
mod errors;
mod escaping;
mod manifests;
mod operator;
mod packaging;
mod readme;
mod support;
mod transport;
