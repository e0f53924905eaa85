//! Write-path throughput benchmark (placeholder until the bench lands).
fn main() {}
