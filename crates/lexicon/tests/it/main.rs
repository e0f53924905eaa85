//! Integration tests of guildhall-lexicon.
