//! (placeholder) forged
