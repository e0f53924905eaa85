//! Guildhall's ATProto protocol core: parse, decode and verify, with no I/O.
//!
//! Everything here is a pure function of its inputs (bytes, keys, the current time): no sockets,
//! no files, no async runtime. The ingestion edge feeds it frames and DID documents; it answers
//! with typed values or typed errors. `tests/manifest.rs` keeps it that way.

pub mod car;
pub mod cbor;
pub mod commit;
pub mod crypto;
#[cfg(feature = "forge")]
pub mod forge;
pub mod frame;
pub mod identity;
pub mod mst;
pub mod service_auth;
pub mod syntax;
pub mod verify;
