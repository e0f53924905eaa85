//! (placeholder) syntax
