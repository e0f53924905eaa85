//! The `guildhall` command: the AppView, the indexer and the operator CLI in one binary.

fn main() {}
