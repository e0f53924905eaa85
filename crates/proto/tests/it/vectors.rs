//! Where the shared vectors and fixtures live, relative to this crate: the project root's sibling `shared/`.

use std::path::PathBuf;

/// `../shared/atproto-interop-tests/<rel>` from the project root.
pub fn interop(rel: &str) -> PathBuf {
    root().join("../shared/atproto-interop-tests").join(rel)
}

/// `../shared/atproto-peer/fixtures/<rel>` from the project root.
pub fn peer_fixture(rel: &str) -> PathBuf {
    root().join("../shared/atproto-peer/fixtures").join(rel)
}

/// The project root (two levels above this crate's manifest).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads a vector file, failing the test loudly when it is missing: a vector that silently
/// does not load proves nothing.
pub fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("cannot read vector file {}: {e}", path.display()))
}
