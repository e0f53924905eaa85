//! Benchmarks of the firehose hot path: route a frame, fully verify a commit, invert alone.
//!
//! Inputs are forged by a real repo of 10,000 records (the size where MST depth is realistic)
//! with one-record commits, the shape of nearly every firehose event, plus the frames captured
//! from the reference PDS.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use guildhall_proto::car::{self, CarLimits};
use guildhall_proto::cbor;
use guildhall_proto::crypto::SigningKey;
use guildhall_proto::forge::{ForgeRepo, Forged, Write};
use guildhall_proto::frame;
use guildhall_proto::mst::{self, RecordOp};
use guildhall_proto::syntax::Did;
use guildhall_proto::verify::{self, RepoState};
use std::hint::black_box;

const NOW: u64 = 1_798_761_600_000_000;

fn record(n: u32) -> Vec<u8> {
    let mut m = std::collections::BTreeMap::new();
    m.insert("$type", "dev.guildhall.service".to_owned());
    m.insert("name", format!("service number {n}"));
    m.insert(
        "description",
        "Sends SMS to any number in the US and Canada".to_owned(),
    );
    m.insert("createdAt", "2026-01-01T00:00:00.000Z".to_owned());
    cbor::encode(&m).unwrap_or_default()
}

/// A 10k-record repo and `n` single-record commits on top of it, with the state before each.
fn commits(key: SigningKey, n: u32) -> Vec<(Forged, RepoState)> {
    let did = Did::parse("did:plc:benchrepoaaaaaaaaaaaaaaa").expect("did");
    let mut repo = ForgeRepo::new(did, key);
    repo.commit(&[]).expect("genesis");
    let fill: Vec<Write> = (0..10_000)
        .map(|i| Write::Put {
            path: format!("dev.guildhall.service/s{i:06}"),
            record: record(i),
        })
        .collect();
    repo.commit(&fill).expect("fill");
    (0..n)
        .map(|i| {
            let (rev, data) = repo.head().expect("head").clone();
            let f = repo
                .commit(&[Write::Put {
                    path: format!("dev.guildhall.endorsement/3k{:011}", 1000 + i),
                    record: record(100_000 + i),
                }])
                .expect("commit");
            (f, RepoState { rev, data })
        })
        .collect()
}

fn route(c: &mut Criterion) {
    let forged = commits(SigningKey::generate_from_seed(&[1; 32]), 64);
    let frames: Vec<Vec<u8>> = forged.iter().map(|(f, _)| f.wire.frame()).collect();
    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("route (header, repo, op paths)", |b| {
        b.iter(|| {
            let mut ours = 0usize;
            for f in &frames {
                let r = frame::route(black_box(f)).expect("routes");
                ours += usize::from(r.touches("dev.guildhall."));
            }
            ours
        })
    });
    g.bench_function("full decode", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(frame::decode_frame(black_box(f)).expect("decodes"));
            }
        })
    });
    g.finish();
}

fn full_verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify commit (decode + CAR + signature + inversion)");
    for (name, key) in [
        ("K-256", SigningKey::generate_from_seed(&[2; 32])),
        ("P-256", SigningKey::generate_p256_from_seed(&[3; 32])),
    ] {
        let public = key.public_key();
        let forged = commits(key, 64);
        let frames: Vec<(Vec<u8>, RepoState)> = forged
            .iter()
            .map(|(f, s)| (f.wire.frame(), s.clone()))
            .collect();
        g.throughput(Throughput::Elements(frames.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                for (bytes, state) in &frames {
                    let frame::Frame::Commit(ev) = frame::decode_frame(bytes).expect("decodes")
                    else {
                        unreachable!("forged a commit")
                    };
                    black_box(
                        verify::verify_commit(&ev, &public, Some(state), NOW).expect("verifies"),
                    );
                }
            })
        });
    }
    g.finish();
}

fn inversion(c: &mut Criterion) {
    let forged = commits(SigningKey::generate_from_seed(&[4; 32]), 16);
    let cases: Vec<_> = forged
        .iter()
        .map(|(f, _)| {
            let car = car::read_car(&f.wire.blocks, &CarLimits::FIREHOSE).expect("car");
            let commit =
                guildhall_proto::commit::Commit::decode(car.blocks.get(&f.root).expect("commit"))
                    .expect("commit");
            let ops: Vec<RecordOp> = f
                .wire
                .ops
                .iter()
                .map(|o| RecordOp::Create {
                    path: o.path.clone(),
                    cid: o.cid.expect("cid"),
                })
                .collect();
            (commit.data, ops, car.blocks)
        })
        .collect();
    let mut g = c.benchmark_group("mst");
    g.throughput(Throughput::Elements(cases.len() as u64));
    g.bench_function("invert one-op commit on a 10k-record tree", |b| {
        b.iter_batched(
            || (),
            |()| {
                for (root, ops, blocks) in &cases {
                    black_box(mst::invert(*root, ops, blocks).expect("inverts"));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, route, full_verify, inversion);
criterion_main!(benches);
