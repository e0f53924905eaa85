//! Integration tests of guildhall-trust.
