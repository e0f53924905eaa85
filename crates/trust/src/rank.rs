//! Ranking: the viewer's ≤2-hop frontier (best weight per node, fewest hops first), then a
//! check of each candidate's in-edges against it, ordering, the sybil cap, and fallback.
//!
//! Definitions (the brute-force oracle in the tests uses exactly these):
//! - distance(p): fewest hops of any simple path from the seed(s) to p with every edge weight
//!   positive, if at most 3; 0 when p is a seed.
//! - score(p): the largest product of edge weights among paths of exactly that many hops. A
//!   longer path never raises the score, so the path shown always explains both numbers.
//!   (Weights are at most 1, so the best walk of the fewest hops is a simple path.)
//! - vouchers(p): distinct last-hop endorsers over all simple paths of at most 3 hops to p.
//! - Ties between equal products go to the lexicographically smaller URI of the deciding edge,
//!   so output never depends on input order or interning.

use std::cmp::Ordering;

use crate::graph::{IdMap, NONE, TrustGraph, Weigher};
use crate::model::{Basis, CandidateProvider, RankOptions, Ranked, TrustPath, Vouchers};
use crate::weight::to_ppm;

/// Hop limit of every path.
pub const MAX_HOPS: u8 = 3;

/// How one node is reached from the seeds.
#[derive(Debug, Clone, Copy)]
struct Reach {
    dist: u8,
    best: f64,
    /// Last edge of the best path; `NONE` for a seed.
    parent: u32,
    /// Up to two distinct hop-1 intermediates of 2-hop paths to this node, so a voucher at
    /// distance 2 can be checked for a route that avoids the candidate itself.
    vias: [u32; 2],
}

struct Frontier {
    map: IdMap<Reach>,
    /// One bit per node: in `map`. The in-edge scan of a popular candidate mostly meets
    /// nodes outside the frontier, and a bit test in a cache-resident bitmap rejects them far
    /// faster than a hash probe.
    mask: Vec<u64>,
}

impl Frontier {
    #[inline]
    fn contains(&self, u: u32) -> bool {
        self.mask
            .get(u as usize / 64)
            .is_some_and(|w| w & (1 << (u % 64)) != 0)
    }
}

/// The outcome for one operator.
#[derive(Debug, Clone)]
struct Eval {
    dist: u8,
    best: f64,
    /// Last edge of the best path; `NONE` at distance 0.
    last: u32,
    /// Sorted, distinct.
    vouchers: Vec<u32>,
}

/// Direction of candidate evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Auto,
    Pull,
    #[cfg_attr(not(test), allow(dead_code))]
    Push,
}

/// Best candidate path and vouchers seen so far for one target.
#[derive(Default)]
struct Acc {
    best: Option<(u8, f64, u32)>,
    vouchers: Vec<u32>,
}

impl Acc {
    fn finish(mut self) -> Option<Eval> {
        let (dist, best, last) = self.best?;
        self.vouchers.sort_unstable();
        self.vouchers.dedup();
        Some(Eval {
            dist,
            best,
            last,
            vouchers: self.vouchers,
        })
    }
}

impl Eval {
    fn zero() -> Self {
        Self {
            dist: 0,
            best: 1.0,
            last: NONE,
            vouchers: Vec::new(),
        }
    }
}

/// Whether (`val`, edge `e`) beats the current (`best`, edge `cur`).
fn beats(g: &TrustGraph, val: f64, e: u32, best: f64, cur: u32) -> bool {
    match val.partial_cmp(&best) {
        Some(Ordering::Greater) => true,
        Some(Ordering::Equal) => g.edge_uri(e) < g.edge_uri(cur),
        _ => false,
    }
}

impl Frontier {
    /// Best reach of every node within two hops of `seeds`.
    fn compute(g: &TrustGraph, w: &mut Weigher<'_>, seeds: &[u32]) -> Self {
        let mut map = IdMap::default();
        for &s in seeds {
            map.insert(
                s,
                Reach {
                    dist: 0,
                    best: 1.0,
                    parent: NONE,
                    vias: [NONE; 2],
                },
            );
        }
        let mut layer1 = Vec::new();
        for &s in seeds {
            g.for_each_out(s, |t, e| {
                if map.get(&t).is_some_and(|r: &Reach| r.dist == 0) {
                    return;
                }
                let val = w.weight(e);
                if val <= 0.0 {
                    return;
                }
                match map.get_mut(&t) {
                    Some(r) => {
                        if beats(g, val, e, r.best, r.parent) {
                            r.best = val;
                            r.parent = e;
                        }
                    }
                    None => {
                        layer1.push(t);
                        map.insert(
                            t,
                            Reach {
                                dist: 1,
                                best: val,
                                parent: e,
                                vias: [NONE; 2],
                            },
                        );
                    }
                }
            });
        }
        for &x in &layer1 {
            let bx = map.get(&x).map_or(0.0, |r| r.best);
            g.for_each_out(x, |t, e| {
                if map.get(&t).is_some_and(|r: &Reach| r.dist <= 1) {
                    return;
                }
                let we = w.weight(e);
                if we <= 0.0 {
                    return;
                }
                let val = bx * we;
                match map.get_mut(&t) {
                    Some(r) => {
                        if r.vias[0] != x && r.vias[1] == NONE {
                            r.vias[1] = x;
                        }
                        if beats(g, val, e, r.best, r.parent) {
                            r.best = val;
                            r.parent = e;
                        }
                    }
                    None => {
                        map.insert(
                            t,
                            Reach {
                                dist: 2,
                                best: val,
                                parent: e,
                                vias: [x, NONE],
                            },
                        );
                    }
                }
            });
        }
        let mut mask = vec![0u64; g.node_count().div_ceil(64)];
        for &u in map.keys() {
            if let Some(w) = mask.get_mut(u as usize / 64) {
                *w |= 1 << (u % 64);
            }
        }
        Self { map, mask }
    }

    /// Offers edge `e` (`u → p`, weight `we`) from frontier node `u` to `p`'s accumulator.
    /// Pull and push evaluation both go through here, so they cannot disagree.
    #[inline]
    fn offer(g: &TrustGraph, acc: &mut Acc, r: &Reach, u: u32, p: u32, e: u32, we: f64) {
        // u vouches only if some simple path to it avoids p (a 2-hop path via another node).
        if r.dist < 2 || r.vias.iter().any(|&x| x != NONE && x != p) {
            acc.vouchers.push(u);
        }
        let d = r.dist + 1;
        let val = r.best * we;
        let take = match acc.best {
            None => true,
            Some((bd, bv, be)) => d < bd || (d == bd && beats(g, val, e, bv, be)),
        };
        if take {
            acc.best = Some((d, val, e));
        }
    }

    fn is_seed(&self, p: u32) -> bool {
        self.map.get(&p).is_some_and(|r| r.dist == 0)
    }

    /// Distance, score, last edge and vouchers of operator `p` (pull: scan its in-edges), or
    /// `None` if no path of at most three hops reaches it.
    fn evaluate(&self, g: &TrustGraph, w: &mut Weigher<'_>, p: u32) -> Option<Eval> {
        if self.is_seed(p) {
            return Some(Eval::zero());
        }
        let mut acc = Acc::default();
        g.for_each_in(
            p,
            |u| u != p && self.contains(u),
            |u, e| {
                let Some(r) = self.map.get(&u) else {
                    return;
                };
                let we = w.weight(e);
                if we > 0.0 {
                    Self::offer(g, &mut acc, r, u, p, e, we);
                }
            },
        );
        acc.finish()
    }

    /// Evaluates many operators at once, choosing the cheaper direction: the in-edges of every
    /// target (pull) or the out-edges of every frontier node (push, i.e. a third BFS layer
    /// restricted to the targets). Both visit the same edge set, so the results are equal.
    fn evaluate_all(
        &self,
        g: &TrustGraph,
        w: &mut Weigher<'_>,
        targets: &[u32],
        mode: Mode,
    ) -> IdMap<Option<Eval>> {
        let pull: usize = targets.iter().map(|&p| g.in_degree(p)).sum();
        let push: usize = self.map.keys().map(|&u| g.out_degree(u)).sum();
        let mut out: IdMap<Option<Eval>> = IdMap::default();
        out.reserve(targets.len());
        if mode == Mode::Pull || (mode == Mode::Auto && pull <= push) {
            for &p in targets {
                out.insert(p, self.evaluate(g, w, p));
            }
            return out;
        }
        let mut slot: IdMap<usize> = IdMap::default();
        let mut mask = vec![0u64; g.node_count().div_ceil(64)];
        let mut accs: Vec<(u32, Acc)> = Vec::new();
        for &p in targets {
            if self.is_seed(p) {
                out.insert(p, Some(Eval::zero()));
            } else if let Some(m) = mask.get_mut(p as usize / 64) {
                if *m & (1 << (p % 64)) == 0 {
                    *m |= 1 << (p % 64);
                    slot.insert(p, accs.len());
                    accs.push((p, Acc::default()));
                }
            } else {
                out.insert(p, None);
            }
        }
        for (&u, r) in &self.map {
            g.for_each_out(u, |p, e| {
                if mask
                    .get(p as usize / 64)
                    .is_none_or(|m| m & (1 << (p % 64)) == 0)
                {
                    return;
                }
                let Some(acc) = slot.get(&p).and_then(|&i| accs.get_mut(i)) else {
                    return;
                };
                let we = w.weight(e);
                if we > 0.0 {
                    Self::offer(g, &mut acc.1, r, u, p, e, we);
                }
            });
        }
        for (p, acc) in accs {
            out.insert(p, acc.finish());
        }
        out
    }

    /// The edges of the best path ending with edge `last`, seed first.
    fn path_edges(&self, g: &TrustGraph, last: u32) -> Vec<u32> {
        let mut edges = Vec::with_capacity(usize::from(MAX_HOPS));
        let mut e = last;
        while e != NONE && edges.len() < usize::from(MAX_HOPS) {
            edges.push(e);
            e = self.map.get(&g.author_of(e)).map_or(NONE, |r| r.parent);
        }
        edges.reverse();
        edges
    }
}

/// Evaluations of operators against one frontier, memoised (services share operators).
struct Evaluator {
    frontier: Frontier,
    memo: IdMap<Option<usize>>,
    evals: Vec<Eval>,
    zero: Option<usize>,
}

impl Evaluator {
    fn new(frontier: Frontier) -> Self {
        Self {
            frontier,
            memo: IdMap::default(),
            evals: Vec::new(),
            zero: None,
        }
    }

    /// The distance-0 answer, for a candidate that is itself a seed.
    fn zero(&mut self) -> usize {
        if let Some(i) = self.zero {
            return i;
        }
        self.evals.push(Eval {
            dist: 0,
            best: 1.0,
            last: NONE,
            vouchers: Vec::new(),
        });
        let i = self.evals.len() - 1;
        self.zero = Some(i);
        i
    }

    /// Evaluates every node of `nodes` not yet known, in one pass.
    fn prefetch(&mut self, g: &TrustGraph, w: &mut Weigher<'_>, nodes: &[u32]) {
        let mut todo: Vec<u32> = nodes
            .iter()
            .copied()
            .filter(|p| !self.memo.contains_key(p))
            .collect();
        todo.sort_unstable();
        todo.dedup();
        for (p, ev) in self.frontier.evaluate_all(g, w, &todo, Mode::Auto) {
            let r = ev.map(|ev| {
                self.evals.push(ev);
                self.evals.len() - 1
            });
            self.memo.insert(p, r);
        }
    }

    fn get(&mut self, g: &TrustGraph, w: &mut Weigher<'_>, p: u32) -> Option<usize> {
        if let Some(&r) = self.memo.get(&p) {
            return r;
        }
        let r = self.frontier.evaluate(g, w, p).map(|ev| {
            self.evals.push(ev);
            self.evals.len() - 1
        });
        self.memo.insert(p, r);
        r
    }
}

/// Which frontier an entry was scored against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Viewer,
    Anchors,
    Quality,
}

struct Entry {
    candidate: usize,
    source: Source,
    eval: Option<usize>,
}

fn vouchers_of(g: &TrustGraph, ids: &[u32], sample: usize) -> Vouchers {
    let mut dids: Vec<&str> = ids.iter().map(|&u| g.did(u)).collect();
    if dids.len() > sample && sample > 0 {
        dids.select_nth_unstable(sample - 1);
    }
    dids.truncate(sample);
    dids.sort_unstable();
    Vouchers {
        count: u32::try_from(ids.len()).unwrap_or(u32::MAX),
        sample: dids.into_iter().map(str::to_owned).collect(),
    }
}

impl TrustGraph {
    /// Ranks `candidates` for `viewer` and `capability` at time `now_us`.
    ///
    /// Order: candidates reached from the viewer (`Basis::Graph`) by distance ascending, score
    /// descending, voucher count descending; then candidates reached only from the anchors
    /// (`Basis::Fallback` with a distance), same key; then the rest (`Basis::Fallback`, no
    /// distance) by `quality_ppm` descending; ties by operator DID, service URI, index.
    ///
    /// Then the sybil cap (`RankOptions::sybil_per_endorser`, 2 by default): the *last-hop
    /// endorser* of a result is the author of the final edge of its explaining path, for paths
    /// of two or more hops (a one-hop path ends at the viewer or an anchor, who are exempt).
    /// Per endorser, only the first `sybil_per_endorser` results in the order above keep their
    /// place; every further result of that endorser is *over the cap* and moves below every
    /// result that is not, `Basis::Fallback` ones included, keeping its relative order. So
    /// one compromised endorser places at most that many results among any top N, unless
    /// fewer than N results are not over the cap (then the excess fills the remaining
    /// places, still after all the others).
    pub fn rank<S: AsRef<str>>(
        &self,
        viewer: Option<&str>,
        capability: Option<&str>,
        candidates: &[CandidateProvider<S>],
        now_us: i64,
        opts: &RankOptions,
    ) -> Vec<Ranked> {
        let mut w = self.weigher(capability, now_us, opts.half_life_us);
        // A viewer unknown to the graph still has a frontier (just itself): its own services
        // are at distance 0.
        let mut by_viewer = viewer.map(|v| {
            let seeds: Vec<u32> = self.node(v).into_iter().collect();
            Evaluator::new(Frontier::compute(self, &mut w, &seeds))
        });
        let mut anchors: Vec<u32> = opts.anchors.iter().filter_map(|a| self.node(a)).collect();
        anchors.sort_unstable();
        anchors.dedup();
        let mut by_anchors: Option<Evaluator> = None;

        let nodes: Vec<Option<u32>> = self.nodes(candidates.iter().map(|c| c.operator.as_ref()));
        if let Some(ev) = by_viewer.as_mut() {
            let todo: Vec<u32> = candidates
                .iter()
                .zip(&nodes)
                .filter(|(c, _)| viewer != Some(c.operator.as_ref()))
                .filter_map(|(_, n)| *n)
                .collect();
            ev.prefetch(self, &mut w, &todo);
        }
        if !opts.anchors.is_empty() {
            // Only candidates the viewer does not reach fall back to the anchors.
            let todo: Vec<u32> = candidates
                .iter()
                .zip(&nodes)
                .filter(|(c, _)| {
                    viewer != Some(c.operator.as_ref())
                        && !opts.anchors.iter().any(|a| a == c.operator.as_ref())
                })
                .filter_map(|(_, n)| *n)
                .filter(|p| {
                    by_viewer
                        .as_ref()
                        .is_none_or(|ev| ev.memo.get(p).is_none_or(Option::is_none))
                })
                .collect();
            if !todo.is_empty() {
                let ev = by_anchors.get_or_insert_with(|| {
                    Evaluator::new(Frontier::compute(self, &mut w, &anchors))
                });
                ev.prefetch(self, &mut w, &todo);
            }
        }

        let mut entries = Vec::with_capacity(candidates.len());
        for (i, c) in candidates.iter().enumerate() {
            let node = nodes[i];
            let mut entry = Entry {
                candidate: i,
                source: Source::Quality,
                eval: None,
            };
            if let Some(ev) = by_viewer.as_mut() {
                entry.eval = if viewer == Some(c.operator.as_ref()) {
                    Some(ev.zero())
                } else {
                    node.and_then(|p| ev.get(self, &mut w, p))
                };
                entry.source = Source::Viewer;
            }
            if entry.eval.is_none() && !opts.anchors.is_empty() {
                let ev = by_anchors.get_or_insert_with(|| {
                    Evaluator::new(Frontier::compute(self, &mut w, &anchors))
                });
                entry.eval = if opts.anchors.iter().any(|a| a == c.operator.as_ref()) {
                    Some(ev.zero())
                } else {
                    node.and_then(|p| ev.get(self, &mut w, p))
                };
                entry.source = Source::Anchors;
            }
            if entry.eval.is_none() {
                entry.source = Source::Quality;
            }
            entries.push(entry);
        }

        let eval_of = |e: &Entry| -> Option<&Eval> {
            let ev = match e.source {
                Source::Viewer => by_viewer.as_ref(),
                Source::Anchors => by_anchors.as_ref(),
                Source::Quality => None,
            }?;
            ev.evals.get(e.eval?)
        };
        let group = |s: Source| match s {
            Source::Viewer => 0u8,
            Source::Anchors => 1,
            Source::Quality => 2,
        };
        entries.sort_by(|a, b| {
            let (ca, cb) = (&candidates[a.candidate], &candidates[b.candidate]);
            let mut o = group(a.source).cmp(&group(b.source));
            if o == Ordering::Equal {
                o = match (eval_of(a), eval_of(b)) {
                    (Some(x), Some(y)) => x
                        .dist
                        .cmp(&y.dist)
                        .then(y.best.total_cmp(&x.best))
                        .then(y.vouchers.len().cmp(&x.vouchers.len())),
                    _ => cb.quality_ppm.cmp(&ca.quality_ppm),
                };
            }
            o.then_with(|| ca.operator.as_ref().cmp(cb.operator.as_ref()))
                .then_with(|| ca.service.as_ref().cmp(cb.service.as_ref()))
                .then(a.candidate.cmp(&b.candidate))
        });

        // Sybil cap. Paths of one hop end at a seed (viewer or anchor), which is exempt. A
        // partition keeps both sides in ranked order, so the result stays deterministic.
        let endorser = |e: &Entry| -> Option<u32> {
            eval_of(e)
                .filter(|ev| ev.dist >= 2)
                .map(|ev| self.author_of(ev.last))
        };
        let (kept, over): (Vec<Entry>, Vec<Entry>) = match opts.sybil_per_endorser {
            Some(cap) => {
                let mut counts: IdMap<usize> = IdMap::default();
                entries.into_iter().partition(|e| match endorser(e) {
                    Some(u) => {
                        let n = counts.entry(u).or_insert(0);
                        *n += 1;
                        *n <= cap
                    }
                    None => true,
                })
            }
            None => (entries, Vec::new()),
        };
        let ordered = kept.into_iter().chain(over);

        ordered
            .map(|e| {
                let ev = eval_of(&e);
                let frontier = match e.source {
                    Source::Viewer => by_viewer.as_ref(),
                    Source::Anchors => by_anchors.as_ref(),
                    Source::Quality => None,
                };
                let path = match (ev, frontier) {
                    (Some(ev), Some(f)) if ev.last != NONE => f
                        .frontier
                        .path_edges(self, ev.last)
                        .into_iter()
                        .map(|x| self.edge_ref(x))
                        .collect(),
                    _ => Vec::new(),
                };
                Ranked {
                    candidate: e.candidate,
                    distance: ev.map(|x| x.dist),
                    score_ppm: ev.map_or(0, |x| to_ppm(x.best)),
                    path,
                    vouchers: ev.map_or_else(Vouchers::default, |x| {
                        vouchers_of(self, &x.vouchers, opts.voucher_sample)
                    }),
                    basis: if e.source == Source::Viewer {
                        Basis::Graph
                    } else {
                        Basis::Fallback
                    },
                }
            })
            .collect()
    }

    /// The best path of at most three hops from `from` to `to` (fewest hops, then largest
    /// product), for getTrustPath. `None` if there is none or either DID is unknown.
    pub fn path(
        &self,
        from: &str,
        to: &str,
        capability: Option<&str>,
        now_us: i64,
        opts: &RankOptions,
    ) -> Option<TrustPath> {
        if from == to {
            return Some(TrustPath {
                distance: 0,
                score_ppm: to_ppm(1.0),
                edges: Vec::new(),
                vouchers: Vouchers::default(),
            });
        }
        let a = self.node(from)?;
        let b = self.node(to)?;
        let mut w = self.weigher(capability, now_us, opts.half_life_us);
        let f = Frontier::compute(self, &mut w, &[a]);
        let ev = f.evaluate(self, &mut w, b)?;
        let edges = if ev.last == NONE {
            Vec::new()
        } else {
            f.path_edges(self, ev.last)
                .into_iter()
                .map(|x| self.edge_ref(x))
                .collect()
        };
        Some(TrustPath {
            distance: ev.dist,
            score_ppm: to_ppm(ev.best),
            edges,
            vouchers: vouchers_of(self, &ev.vouchers, opts.voucher_sample),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BuildOptions, Endorsement};

    /// Push and pull evaluation must agree on every node, on graphs with hubs, parallel edges,
    /// deletions and overlay edges.
    #[test]
    fn push_equals_pull() {
        let mut x: u64 = 99;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut list = Vec::new();
        for i in 0..3000 {
            // A product of two draws skews authors towards low ids: hubs.
            let a = next(60) * next(60) / 60;
            let b = next(60);
            list.push(Endorsement {
                uri: format!("at://did:x:{a}/c/r{i}"),
                cid: String::new(),
                author: format!("did:x:{a}"),
                subject: format!("did:x:{b}"),
                capabilities: if next(3) == 0 {
                    vec!["s".into()]
                } else {
                    Vec::new()
                },
                strength: 1 + next(100) as i64,
                created_at_us: next(1 << 50) as i64,
                expires_at_us: None,
                pinned: None,
            });
        }
        let Ok(mut g) = TrustGraph::build(&list[..2500], &BuildOptions::default()) else {
            panic!("build")
        };
        for e in &list[2500..] {
            assert!(g.add(e).is_ok());
        }
        for e in list.iter().step_by(7) {
            g.remove(&e.uri);
        }
        let all: Vec<u32> = (0..g.node_count() as u32).collect();
        let mut compared = 0;
        for seed in 0..20u32 {
            for cap in [None, Some("s")] {
                let mut w = g.weigher(cap, 1 << 50, crate::model::YEAR_US);
                let f = Frontier::compute(&g, &mut w, &[seed]);
                let pull = f.evaluate_all(&g, &mut w, &all, Mode::Pull);
                let push = f.evaluate_all(&g, &mut w, &all, Mode::Push);
                for p in &all {
                    let (a, b) = (&pull[p], &push[p]);
                    assert_eq!(
                        a.as_ref().map(|e| (e.dist, e.best, e.last, &e.vouchers)),
                        b.as_ref().map(|e| (e.dist, e.best, e.last, &e.vouchers)),
                        "seed {seed} node {p}"
                    );
                    compared += usize::from(a.as_ref().is_some_and(|e| e.dist >= 2));
                }
            }
        }
        assert!(
            compared > 100,
            "multi-hop answers were compared: {compared}"
        );
    }
}
