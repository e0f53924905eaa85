//! (placeholder) verify
