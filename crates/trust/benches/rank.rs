//! Ranking benchmark on synthetic Chung-Lu-like endorsement graphs: build time, memory
//! (array bytes and process RSS), and `rank()` latency per query (p50/p99) for a random viewer
//! and a capability that selects 200–2,000 of 100k candidate services.
//!
//! Configs: `small` (100k operators / 1M endorsements) and `full` (1M / 10M). Choose with
//! `GUILDHALL_TRUST_BENCH=small|full|small,full` (default: both).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use guildhall_trust::{BuildOptions, CandidateProvider, Endorsement, RankOptions, TrustGraph};

const NOW: i64 = 1_735_689_600_000_000;
const YEAR: i64 = 365 * 24 * 3600 * 1_000_000;
const CAPS: usize = 100;
const QUERIES: usize = 2000;

struct Config {
    name: &'static str,
    nodes: usize,
    edges: usize,
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const SORTABLE: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

fn did(i: usize) -> String {
    let mut r = Rng(i as u64 ^ 0x5eed);
    let (a, b) = (r.next(), r.next());
    let mut s = String::with_capacity(32);
    s.push_str("did:plc:");
    for k in 0..24 {
        let v = if k < 12 {
            a >> (5 * k)
        } else {
            b >> (5 * (k - 12))
        };
        s.push(B32[(v & 31) as usize] as char);
    }
    s
}

fn tid(v: u64) -> String {
    (0..13)
        .rev()
        .map(|i| SORTABLE[((v >> (5 * i)) & 31) as usize] as char)
        .collect()
}

/// A canonical CIDv1 dag-cbor sha2-256 text form with a pseudo-random digest.
fn cid(seed: u64) -> String {
    let mut r = Rng(seed);
    let mut bytes = vec![0x01, 0x71, 0x12, 0x20];
    for _ in 0..4 {
        bytes.extend_from_slice(&r.next().to_le_bytes());
    }
    let mut s = String::from("b");
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            s.push(B32[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        s.push(B32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    s
}

/// Samples node ids with probability ∝ (rank + 1)^−α, ranks randomly permuted over nodes,
/// in O(1) by Vose's alias method.
struct ChungLu {
    prob: Vec<f64>,
    alias: Vec<u32>,
    perm: Vec<u32>,
}

impl ChungLu {
    fn new(n: usize, alpha: f64, rng: &mut Rng) -> Self {
        let w: Vec<f64> = (0..n).map(|r| ((r + 1) as f64).powf(-alpha)).collect();
        let total: f64 = w.iter().sum();
        let mut prob: Vec<f64> = w.iter().map(|x| x * n as f64 / total).collect();
        let mut alias = vec![0u32; n];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| prob[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            alias[s] = l as u32;
            prob[l] -= 1.0 - prob[s];
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        for i in small.into_iter().chain(large) {
            prob[i] = 1.0;
        }
        let mut perm: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            perm.swap(i, rng.below(i + 1));
        }
        Self { prob, alias, perm }
    }
    fn sample(&self, rng: &mut Rng) -> usize {
        let i = rng.below(self.prob.len());
        let r = if rng.unit() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        };
        self.perm[r] as usize
    }
}

struct World {
    dids: Vec<String>,
    out_w: ChungLu,
    in_w: ChungLu,
    /// Service URIs and their current CIDs.
    services: Vec<(String, String)>,
    /// Candidate services per capability.
    by_cap: Vec<Vec<CandidateProvider>>,
}

fn capability(k: usize) -> String {
    format!("cap{k:02}.send")
}

fn world(cfg: &Config) -> World {
    let mut rng = Rng(42);
    // Out-degree mildly skewed (few prolific endorsers), in-degree more so (popular providers);
    // independent permutations, so the hubs differ.
    let out_w = ChungLu::new(cfg.nodes, 0.5, &mut rng);
    let in_w = ChungLu::new(cfg.nodes, 0.7, &mut rng);
    let mut services = Vec::new();
    let mut by_cap = Vec::with_capacity(CAPS);
    for k in 0..CAPS {
        // 200 + 18k services per capability: 200 to 1,982, 109,100 in all.
        let count = 200 + 18 * k;
        let mut v = Vec::with_capacity(count);
        for _ in 0..count {
            let op = in_w.sample(&mut rng);
            let uri = format!(
                "at://{}/dev.guildhall.service/{}",
                did(op),
                tid((1 << 60) | services.len() as u64)
            );
            services.push((uri.clone(), cid(services.len() as u64 ^ 0xabc)));
            v.push(CandidateProvider {
                operator: did(op),
                service: uri,
                quality_ppm: (rng.next() % 1_000_000) as u32,
            });
        }
        by_cap.push(v);
    }
    World {
        dids: (0..cfg.nodes).map(did).collect(),
        out_w,
        in_w,
        services,
        by_cap,
    }
}

/// Endorsement `j`, generated on the fly so 10M records never sit in memory at once.
fn endorsement(w: &World, j: usize) -> Endorsement {
    let mut rng = Rng(j as u64 ^ 0xfeed_f00d);
    let from = w.out_w.sample(&mut rng);
    let mut to = w.in_w.sample(&mut rng);
    if to == from {
        to = (to + 1) % w.in_w.perm.len();
    }
    let capabilities = match rng.below(10) {
        0..=2 => Vec::new(),
        3..=6 => vec![capability(rng.below(CAPS))],
        7 | 8 => vec![format!("cap{:02}", rng.below(CAPS))],
        _ => vec![capability(rng.below(CAPS)), capability(rng.below(CAPS))],
    };
    let created_at_us = NOW - (rng.unit() * 3.0 * YEAR as f64) as i64;
    let expires_at_us = match rng.below(40) {
        0 => Some(NOW - 1000),
        1 => Some(NOW + YEAR),
        _ => None,
    };
    let pinned = (rng.below(50) == 0).then(|| {
        let (uri, current) = &w.services[rng.below(w.services.len())];
        let c = if rng.below(5) == 0 {
            cid(j as u64)
        } else {
            current.clone()
        };
        (uri.clone(), c)
    });
    Endorsement {
        uri: format!(
            "at://{}/dev.guildhall.endorsement/{}",
            w.dids[from],
            tid((1 << 60) | j as u64)
        ),
        cid: cid(j as u64),
        author: w.dids[from].clone(),
        subject: w.dids[to].clone(),
        capabilities,
        strength: 1 + rng.below(100) as i64,
        created_at_us,
        expires_at_us,
        pinned,
    }
}

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn rss_mib() -> (f64, f64) {
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

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

fn run(cfg: &Config, c: &mut Criterion) {
    let (rss0, _) = rss_mib();
    let t = Instant::now();
    let w = world(cfg);
    eprintln!(
        "[{}] world: {} operators, {} candidate services, {:.1}s",
        cfg.name,
        cfg.nodes,
        w.services.len(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let mut bytes = 0usize;
    for j in 0..cfg.edges {
        bytes += black_box(endorsement(&w, j)).uri.len();
    }
    let gen_s = t.elapsed().as_secs_f64();
    black_box(bytes);

    let (rss1, _) = rss_mib();
    let t = Instant::now();
    let built = TrustGraph::build(
        (0..cfg.edges).map(|j| endorsement(&w, j)),
        &BuildOptions::default(),
    );
    let total_s = t.elapsed().as_secs_f64();
    let mut g = match built {
        Ok(g) => g,
        Err(e) => panic!("build failed: {e}"),
    };
    for (uri, current) in &w.services {
        if let Err(e) = g.set_service_cid(uri, current) {
            panic!("{e}");
        }
    }
    let (rss2, hwm) = rss_mib();
    let s = g.stats();
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "[{}] build: {:.1}s ({:.1}s of it generating records), {} nodes, {} edges, {} self-loops dropped",
        cfg.name,
        total_s - gen_s,
        gen_s,
        s.nodes,
        s.base_edges,
        s.self_endorsements_dropped
    );
    eprintln!(
        "[{}] memory: graph {:.0} MiB ({:.1} B/edge incl. nodes); RSS grew {:.0} MiB over the build, peak RSS {:.0} MiB",
        cfg.name,
        mib(s.heap_bytes),
        s.heap_bytes as f64 / s.base_edges.max(1) as f64,
        rss2 - rss1,
        hwm
    );
    for (part, bytes) in g.memory_breakdown() {
        eprintln!("[{}]   {:>8.1} MiB  {part}", cfg.name, mib(bytes));
    }
    let _ = rss0;

    // A fixed query mix: random viewer (uniform over operators), random capability.
    let mut rng = Rng(7);
    let queries: Vec<(String, usize)> = (0..QUERIES)
        .map(|_| (did(rng.below(cfg.nodes)), rng.below(CAPS)))
        .collect();
    let caps: Vec<String> = (0..CAPS).map(capability).collect();
    let opts = RankOptions::default();
    // Three passes over the whole query mix: the first pass's wall times, and per query the
    // fastest of its three passes. Other queries run in between, so caches are as cold as in
    // the first pass, but a run that lost the shared cores to another process is discarded:
    // the best estimate of one uncontended core.
    let mut times = vec![Duration::MAX; QUERIES];
    let mut best = vec![Duration::MAX; QUERIES];
    let (mut cands, mut reached, mut with_path) = (0usize, 0usize, 0usize);
    for pass in 0..3 {
        for (q, (v, k)) in queries.iter().enumerate() {
            let t = Instant::now();
            let r = g.rank(Some(v), Some(caps[*k].as_str()), &w.by_cap[*k], NOW, &opts);
            let d = t.elapsed();
            black_box(&r);
            best[q] = best[q].min(d);
            if pass == 0 {
                times[q] = d;
                cands += w.by_cap[*k].len();
                let n = r
                    .iter()
                    .filter(|x| x.basis == guildhall_trust::Basis::Graph)
                    .count();
                reached += n;
                with_path += usize::from(n > 0);
            }
        }
    }
    times.sort_unstable();
    best.sort_unstable();
    eprintln!(
        "[{}] rank: {} queries, {:.0} candidates/query, {:.1} reached from the viewer/query ({:.0}% of queries reach any)",
        cfg.name,
        QUERIES,
        cands as f64 / QUERIES as f64,
        reached as f64 / QUERIES as f64,
        100.0 * with_path as f64 / QUERIES as f64,
    );
    for (label, t) in [("first pass", &times), ("fastest of 3 passes", &best)] {
        eprintln!(
            "[{}] rank ({label}): p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            cfg.name,
            pct(t, 0.5),
            pct(t, 0.9),
            pct(t, 0.99),
            pct(t, 1.0)
        );
    }

    // getTrustPath between random operators.
    let mut ptimes = Vec::with_capacity(QUERIES);
    for (v, k) in &queries {
        let to = &w.by_cap[*k][0].operator;
        let t = Instant::now();
        black_box(g.path(v, to, Some(caps[*k].as_str()), NOW, &opts));
        ptimes.push(t.elapsed());
    }
    ptimes.sort_unstable();
    eprintln!(
        "[{}] path: p50 {:.3} ms, p99 {:.3} ms",
        cfg.name,
        pct(&ptimes, 0.5),
        pct(&ptimes, 0.99)
    );

    let mut i = 0usize;
    c.bench_function(&format!("rank/{}", cfg.name), |b| {
        b.iter(|| {
            let (v, k) = &queries[i % QUERIES];
            i += 1;
            black_box(g.rank(Some(v), Some(caps[*k].as_str()), &w.by_cap[*k], NOW, &opts))
        })
    });
}

fn main() {
    let which = std::env::var("GUILDHALL_TRUST_BENCH").unwrap_or_else(|_| "small,full".into());
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let configs = [
        Config {
            name: "small",
            nodes: 100_000,
            edges: 1_000_000,
        },
        Config {
            name: "full",
            nodes: 1_000_000,
            edges: 10_000_000,
        },
    ];
    for cfg in configs
        .iter()
        .filter(|c| which.split(',').any(|w| w.trim() == c.name))
    {
        run(cfg, &mut c);
    }
    c.final_summary();
}
