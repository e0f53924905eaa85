//! Keeps the protocol core pure: its manifest may not depend on I/O crates.

use crate::vectors;

/// Crates that would bring sockets, async runtimes, databases or HTTP into the core.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "sqlx",
    "rusqlite",
    "postgres",
    "axum",
    "hyper",
    "reqwest",
    "tungstenite",
    "tokio-tungstenite",
    "mio",
    "ureq",
];

#[test]
fn proto_manifest_has_no_io_dependencies() {
    let path = vectors::root().join("crates/proto/Cargo.toml");
    let text = String::from_utf8(vectors::read(&path)).expect("manifest is UTF-8");
    let mut checked = 0;
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        // Dev-dependencies may use anything: tests and benches are not the core.
        if section != "[dependencies]" || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
        checked += 1;
        assert!(
            !FORBIDDEN.contains(&name),
            "guildhall-proto must stay free of I/O, but depends on {name}"
        );
    }
    eprintln!("manifest: {checked} dependencies checked");
    assert!(checked > 3, "found no [dependencies] section to check");
}
