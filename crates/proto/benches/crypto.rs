//! Signature verification cost: our `PublicKey::verify_digest` (libsecp256k1 for K-256, `p256`
//! for P-256) against the pure-Rust `k256` crate, on pre-parsed keys and a fixed digest.

use criterion::{Criterion, criterion_group, criterion_main};
use guildhall_proto::crypto::{PublicKey, SigningKey};
use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use std::hint::black_box;

fn verify(c: &mut Criterion) {
    let digest = [0x5au8; 32];

    let k_sk = SigningKey::generate_from_seed(&[1u8; 32]);
    let k_pk = k_sk.public_key();
    let k_sig = k_sk.sign_digest(&digest);
    let pure_key =
        k256::ecdsa::VerifyingKey::from_sec1_bytes(&k_pk.to_compressed()).expect("valid point");
    let pure_sig = k256::ecdsa::Signature::from_slice(&k_sig).expect("valid signature");

    let p_sk = SigningKey::generate_p256_from_seed(&[1u8; 32]);
    let p_pk = p_sk.public_key();
    let p_sig = p_sk.sign_digest(&digest);

    let mut g = c.benchmark_group("verify");
    g.bench_function("k256_secp256k1 (ours)", |b| {
        b.iter(|| k_pk.verify_digest(black_box(&digest), black_box(&k_sig)))
    });
    g.bench_function("k256_pure_rust", |b| {
        b.iter(|| pure_key.verify_prehash(black_box(&digest), black_box(&pure_sig)))
    });
    g.bench_function("p256 (ours)", |b| {
        b.iter(|| p_pk.verify_digest(black_box(&digest), black_box(&p_sig)))
    });
    g.finish();

    let did_key = k_pk.to_did_key();
    c.bench_function("parse_did_key_k256", |b| {
        b.iter(|| PublicKey::from_did_key(black_box(&did_key)))
    });
}

criterion_group!(benches, verify);
criterion_main!(benches);
