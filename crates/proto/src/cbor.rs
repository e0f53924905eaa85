//! (placeholder) cbor
