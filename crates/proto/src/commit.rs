//! (placeholder) commit
