//! (placeholder) commit_proofs
