//! Test helpers: a small graph builder, a seeded PRNG, and rank shorthands.

use guildhall_trust::{
    BuildOptions, CandidateProvider, Endorsement, RankOptions, Ranked, TrustGraph, YEAR_US,
};

/// "Now" in every test: 2025-01-01T00:00:00Z.
pub const NOW: i64 = 1_735_689_600_000_000;

pub fn did(name: &str) -> String {
    format!("did:plc:{name}")
}

/// A canonical TID for `n` (so URIs take the compact path; `odd_rkey` tests the other one).
pub fn tid(n: u64) -> String {
    const A: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
    let v = (1u64 << 60) | n;
    (0..13)
        .rev()
        .map(|i| A[((v >> (5 * i)) & 31) as usize] as char)
        .collect()
}

/// Builds endorsements with unique URIs.
#[derive(Default, Clone)]
pub struct Edges {
    pub list: Vec<Endorsement>,
}

impl Edges {
    /// `from` endorses `to` with `strength`, created `age_days` before `NOW`.
    pub fn add(
        &mut self,
        from: &str,
        to: &str,
        strength: i64,
        caps: &[&str],
        age_days: i64,
    ) -> &mut Endorsement {
        let n = self.list.len() as u64;
        self.list.push(Endorsement {
            uri: format!("at://{}/dev.guildhall.endorsement/{}", did(from), tid(n)),
            cid: format!("bafyreitest{n}"),
            author: did(from),
            subject: did(to),
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            strength,
            created_at_us: NOW - age_days * 24 * 3600 * 1_000_000,
            expires_at_us: None,
            pinned: None,
        });
        let last = self.list.len() - 1;
        &mut self.list[last]
    }

    pub fn uri(&self, i: usize) -> String {
        self.list[i].uri.clone()
    }

    pub fn graph(&self) -> TrustGraph {
        match TrustGraph::build(&self.list, &BuildOptions::default()) {
            Ok(g) => g,
            Err(e) => panic!("build failed: {e}"),
        }
    }
}

pub fn cand(op: &str, quality_ppm: u32) -> CandidateProvider {
    CandidateProvider {
        operator: did(op),
        service: format!("at://{}/dev.guildhall.service/main", did(op)),
        quality_ppm,
    }
}

pub fn rank(
    g: &TrustGraph,
    viewer: Option<&str>,
    cap: Option<&str>,
    cands: &[CandidateProvider],
) -> Vec<Ranked> {
    let v = viewer.map(did);
    g.rank(v.as_deref(), cap, cands, NOW, &RankOptions::default())
}

/// The ranked entry of candidate `i`.
pub fn of(r: &[Ranked], i: usize) -> &Ranked {
    match r.iter().find(|x| x.candidate == i) {
        Some(x) => x,
        None => panic!("candidate {i} missing from the ranking"),
    }
}

/// Weight of a fresh, matching endorsement of `strength`, in ppm.
pub fn ppm(x: f64) -> u32 {
    (x * 1e6).round() as u32
}

pub const DAY_US: i64 = 24 * 3600 * 1_000_000;
pub const YEAR_DAYS: i64 = YEAR_US / DAY_US;

/// splitmix64: a seeded, dependency-free PRNG for generated graphs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}
