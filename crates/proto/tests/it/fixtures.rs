//! (placeholder) fixtures
