//! Guildhall's trust graph and ranking. Pure: no I/O.
