//! (placeholder) crypto_vectors
