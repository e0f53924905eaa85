//! (placeholder) mst
