//! (placeholder) manifest
