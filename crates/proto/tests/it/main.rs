//! The protocol core's one integration-test binary: shared vectors, captured frames, forgeries.

mod cbor_vectors;
mod commit_proofs;
mod crypto_vectors;
mod fixtures;
mod forged;
mod manifest;
mod mst_vectors;
mod service_auth;
mod syntax_vectors;
mod vectors;
