//! (placeholder) frame
