//! (placeholder) syntax_vectors
