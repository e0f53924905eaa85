//! (placeholder) car
