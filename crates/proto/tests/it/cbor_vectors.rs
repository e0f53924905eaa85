//! (placeholder) cbor_vectors
