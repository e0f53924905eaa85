//! (placeholder) crypto
