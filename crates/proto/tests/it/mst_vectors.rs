//! (placeholder) mst_vectors
