//! Ranking benchmark.
fn main() {}
