//! Guildhall's lexicons and record validation against them. Pure.
