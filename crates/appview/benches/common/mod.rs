//! A synthetic endorsement world shared by the search benchmark and the bench server:
//! skewed out- and in-degrees, scoped and unscoped endorsements, expiries, and services
//! spread over 100 capabilities (200 to 1,982 services each).
//!
//! Everything derives from indices through a splitmix64 stream, so 10M endorsements can be
//! generated on the fly and regenerated identically by another process.

#![allow(dead_code)]

use guildhall_store::ServiceCandidate;
use guildhall_trust::Endorsement;

/// The benchmark's "now": 2026-01-01T00:00:00Z.
pub const NOW_US: i64 = 1_767_225_600_000_000;
const YEAR_US: i64 = 365 * 24 * 3600 * 1_000_000;
/// Capabilities in the world.
pub const CAPS: usize = 100;

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Operator `i`'s DID.
pub fn did(i: usize) -> String {
    format!("did:plc:x{i}")
}

/// Capability `k`'s id.
pub fn capability(k: usize) -> String {
    format!("cap{k:02}.send")
}

/// A skewed node pick: rank `floor(n·u^p)`, scattered over ids by a bijection mod `n`
/// (`mul` odd and not a multiple of 5, so coprime with the power-of-ten sizes used).
fn skewed(rng: &mut Rng, n: usize, p: f64, mul: u64, add: u64) -> usize {
    let rank = ((n as f64) * rng.unit().powf(p)) as u64 % n as u64;
    ((rank.wrapping_mul(mul).wrapping_add(add)) % n as u64) as usize
}

/// Author of endorsement `j` (mildly skewed: a few prolific endorsers).
fn author(rng: &mut Rng, n: usize) -> usize {
    skewed(rng, n, 2.0, 2_654_435_761, 17)
}

/// Subject of endorsement `j` / operator of a service (more skewed: popular providers).
fn popular(rng: &mut Rng, n: usize) -> usize {
    skewed(rng, n, 2.5, 40_503, 101)
}

/// Sortable base32 TID-shaped key of `v`.
pub fn tid(v: u64) -> String {
    const S: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
    (0..13)
        .rev()
        .map(|i| char::from(S[((v >> (5 * i)) & 31) as usize]))
        .collect()
}

/// Plain data of endorsement `j` (what the PostgreSQL copy stores).
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub strength: i64,
    pub created_at_us: i64,
    pub expires_at_us: Option<i64>,
    /// Scope; empty = unscoped. Entries are `capNN.send` or the namespace `capNN`.
    pub caps: Vec<String>,
}

/// Endorsement `j` of a world with `n` operators.
pub fn edge(n: usize, j: usize) -> Edge {
    let mut rng = Rng(j as u64 ^ 0xfeed_f00d);
    let from = author(&mut rng, n);
    let mut to = popular(&mut rng, n);
    if to == from {
        to = (to + 1) % n;
    }
    let caps = match rng.below(10) {
        0..=2 => Vec::new(),
        3..=6 => vec![capability(rng.below(CAPS))],
        7 | 8 => vec![format!("cap{:02}", rng.below(CAPS))],
        _ => vec![capability(rng.below(CAPS)), capability(rng.below(CAPS))],
    };
    let created_at_us = NOW_US - (rng.unit() * 3.0 * YEAR_US as f64) as i64;
    let expires_at_us = match rng.below(40) {
        0 => Some(NOW_US - 1000),
        1 => Some(NOW_US + YEAR_US),
        _ => None,
    };
    Edge {
        from,
        to,
        strength: 1 + rng.below(100) as i64,
        created_at_us,
        expires_at_us,
        caps,
    }
}

/// Endorsement `j` as the trust crate takes it.
pub fn endorsement(n: usize, j: usize) -> Endorsement {
    let e = edge(n, j);
    let author = did(e.from);
    Endorsement {
        uri: format!(
            "at://{author}/dev.guildhall.endorsement/{}",
            tid((1 << 60) | j as u64)
        ),
        cid: format!("bafyreie{j:x}"),
        author,
        subject: did(e.to),
        capabilities: e.caps,
        strength: e.strength,
        created_at_us: e.created_at_us,
        expires_at_us: e.expires_at_us,
        pinned: None,
    }
}

/// One synthetic service: operator index, capability index, URI.
pub struct Service {
    pub operator: usize,
    pub cap: usize,
    pub uri: String,
    pub rkey: String,
}

/// The services of a world with `n` operators: capability `k` has `200 + 18k`, scaled by
/// `total / 109_100`.
pub fn services(n: usize, total: usize) -> Vec<Service> {
    let mut rng = Rng(42);
    let mut out = Vec::with_capacity(total);
    for k in 0..CAPS {
        let count = (200 + 18 * k) * total / 109_100;
        for _ in 0..count.max(1) {
            let op = popular(&mut rng, n);
            let rkey = format!("s{}", out.len());
            out.push(Service {
                operator: op,
                cap: k,
                uri: format!("at://{}/dev.guildhall.service/{rkey}", did(op)),
                rkey,
            });
        }
    }
    out
}

/// Candidates per capability, as `search_candidates` would return them (ordered by URI).
pub fn candidates_by_cap(services: &[Service]) -> Vec<Vec<ServiceCandidate>> {
    let mut by = vec![Vec::new(); CAPS];
    for s in services {
        by[s.cap].push(ServiceCandidate {
            uri: s.uri.clone(),
            did: did(s.operator),
            cid: format!("bafyreis{}", s.rkey),
            created_at: "2026-01-01T00:00:00Z".to_owned(),
            latency_p95_ms: Some(200),
            availability_bp: Some(9_990),
            success_rate_bp: Some(9_950),
        });
    }
    for v in &mut by {
        v.sort_by(|a: &ServiceCandidate, b| a.uri.cmp(&b.uri));
    }
    by
}

/// `VmRSS` and `VmHWM` of this process, in MiB.
pub fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
