//! Integration tests of guildhall-trust: hand-built graphs, the brute-force oracle property,
//! the sybil scenario and determinism.

mod common;
mod oracle;
mod scenarios;
mod sybil;
