//! Ranking: the viewer's ≤2-hop frontier (best weight per node, fewest hops first), then a
//! check of each candidate's in-edges against it (best path, vouchers, dominators), ordering, the
//! sybil cap, and fallback.
//!
//! Definitions (the brute-force oracle in the tests uses exactly these):
//! - distance(p): fewest hops of any simple path from the seed(s) to p with every edge weight
//!   positive, if at most 3; 0 when p is a seed.
//! - score(p): the largest product of edge weights among paths of exactly that many hops. A
//!   longer path never raises the score, so the path shown always explains both numbers.
//!   (Weights are at most 1, so the best walk of the fewest hops is a simple path.)
//! - vouchers(p): distinct last-hop endorsers over all simple paths of at most 3 hops to p.
//! - dominators(p): the nodes other than the seeds and p on every such path.
//! - Ties between equal products go to the lexicographically smaller URI of the deciding edge,
//!   so output never depends on input order or interning.

use std::cell::OnceCell;
use std::cmp::Ordering;
use std::collections::HashMap;

use crate::graph::{IdMap, NONE, TrustGraph, Weigher};
use crate::model::{Basis, CandidateProvider, RankOptions, Ranked, TrustPath, Vouchers};
use crate::weight::{Capabilities, to_ppm};

/// Hop limit of every path.
pub const MAX_HOPS: u8 = 3;

/// How one node is reached from the seeds.
#[derive(Debug, Clone, Copy)]
struct Reach {
    dist: u8,
    best: f64,
    /// Last edge of the best path; `NONE` for a seed.
    parent: u32,
    /// Up to three distinct hop-1 intermediates of 2-hop paths to this node, so a voucher at
    /// distance 2 can be checked for a route that avoids the candidate itself, and the
    /// dominators of a candidate reached through it told apart (one route left, or several).
    vias: [u32; 3],
    /// At two hops: the hop-1 node of the best path, and the best path through any other
    /// hop-1 node (`alt_parent` its last edge, `NONE` if none). A candidate that is itself
    /// `via` cannot use the best path (it would pass through it twice) and takes `alt`.
    via: u32,
    alt: f64,
    alt_parent: u32,
}

struct Frontier {
    seeds: Vec<u32>,
    /// Whether the work budget left some hop-1 nodes unexpanded.
    cut: bool,
    map: IdMap<Reach>,
    /// One bit per node: in `map`. The in-edge scan of a popular candidate mostly meets
    /// nodes outside the frontier, and a bit test in a cache-resident bitmap rejects them far
    /// faster than a hash probe. Built on first use: only in-edge scans need it, and it costs
    /// a bit per node of the graph.
    mask: OnceCell<Vec<u64>>,
    node_count: usize,
}

impl Frontier {
    #[inline]
    fn contains(&self, u: u32) -> bool {
        let mask = self.mask.get_or_init(|| {
            let mut mask = vec![0u64; self.node_count.div_ceil(64)];
            for &u in self.map.keys() {
                if let Some(w) = mask.get_mut(u as usize / 64) {
                    *w |= 1 << (u % 64);
                }
            }
            mask
        });
        mask.get(u as usize / 64)
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
    /// Dominators (`NONE`-padded): the nodes on every path of at most three hops from the
    /// seeds, the seeds and the candidate excluded. A path has at most two such nodes, so
    /// their intersection does too.
    doms: [u32; 2],
}

/// The nodes of `a` also in `b`, `NONE`-padded.
fn intersect(a: [u32; 2], b: [u32; 2]) -> [u32; 2] {
    let mut out = [NONE; 2];
    let mut k = 0;
    for x in a {
        if x != NONE && b.contains(&x) {
            out[k] = x;
            k += 1;
        }
    }
    out
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
    /// Intersection of the inner nodes of every path offered so far; `None` before the first.
    doms: Option<[u32; 2]>,
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
            doms: self.doms.unwrap_or([NONE; 2]),
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
            doms: [NONE; 2],
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
    /// Best reach of every node within two hops of `seeds`, expanding hop-1 nodes only
    /// while their out-edges fit in `budget` (see [`RankOptions::frontier_budget`]).
    fn compute(g: &TrustGraph, w: &mut Weigher<'_>, seeds: &[u32], budget: usize) -> Self {
        let mut map = IdMap::default();
        for &s in seeds {
            map.insert(
                s,
                Reach {
                    dist: 0,
                    best: 1.0,
                    parent: NONE,
                    vias: [NONE; 3],
                    via: NONE,
                    alt: 0.0,
                    alt_parent: NONE,
                },
            );
        }
        let mut layer1 = Vec::new();
        let mut seeds: Vec<u32> = seeds.to_vec();
        seeds.sort_unstable();
        seeds.dedup();
        for &s in &seeds {
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
                                vias: [NONE; 3],
                                via: NONE,
                                alt: 0.0,
                                alt_parent: NONE,
                            },
                        );
                    }
                }
            });
        }
        // The work budget: the second layer scans the out-edges of hop-1 nodes. When they
        // exceed it, only the most trusted hop-1 nodes are expanded (best weight, then the
        // smaller URI of the deciding edge, as everywhere), a prefix whose out-edges fit. The
        // answer is then exact for the graph without the others' out-edges.
        let mut cut = false;
        let total: usize = layer1.iter().map(|&x| g.out_degree(x)).sum();
        if total > budget {
            let key = |x: &u32| {
                map.get(x)
                    .map_or((0.0, NONE), |r: &Reach| (r.best, r.parent))
            };
            layer1.sort_by(|a, b| {
                let ((va, ea), (vb, eb)) = (key(a), key(b));
                vb.total_cmp(&va)
                    .then_with(|| g.edge_uri(ea).cmp(&g.edge_uri(eb)))
            });
            let mut spent = 0usize;
            let keep = layer1
                .iter()
                .take_while(|&&x| {
                    spent += g.out_degree(x);
                    spent <= budget
                })
                .count();
            layer1.truncate(keep);
            cut = true;
        }
        // At most this many nodes join: reserving spares the rehashes of a growing map.
        map.reserve(layer1.iter().map(|&x| g.out_degree(x)).sum());
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
                        if !r.vias.contains(&x)
                            && let Some(free) = r.vias.iter_mut().find(|v| **v == NONE)
                        {
                            *free = x;
                        }
                        if beats(g, val, e, r.best, r.parent) {
                            // The old best becomes the best through another node, unless
                            // it came through this one.
                            if r.via != x {
                                r.alt = r.best;
                                r.alt_parent = r.parent;
                            }
                            r.best = val;
                            r.parent = e;
                            r.via = x;
                        } else if r.via != x
                            && (r.alt_parent == NONE || beats(g, val, e, r.alt, r.alt_parent))
                        {
                            r.alt = val;
                            r.alt_parent = e;
                        }
                    }
                    None => {
                        map.insert(
                            t,
                            Reach {
                                dist: 2,
                                best: val,
                                parent: e,
                                vias: [x, NONE, NONE],
                                via: x,
                                alt: 0.0,
                                alt_parent: NONE,
                            },
                        );
                    }
                }
            });
        }
        Self {
            seeds,
            cut,
            map,
            mask: OnceCell::new(),
            node_count: g.node_count(),
        }
    }

    /// Offers edge `e` (`u → p`, weight `we`) from frontier node `u` to `p`'s accumulator.
    /// Pull and push evaluation both go through here, so they cannot disagree.
    #[inline]
    fn offer(g: &TrustGraph, acc: &mut Acc, r: &Reach, u: u32, p: u32, e: u32, we: f64) {
        // u vouches only if some simple path to it avoids p (a 2-hop path via another node).
        let mut vias = r.vias.iter().filter(|&&x| x != NONE && x != p);
        // The inner nodes every path through this edge shares: none from a seed; u from a
        // node at one hop; from a node at two hops, u and its one route's middle node, or
        // u alone when several routes avoid p. Intersected over every in-edge offered (of
        // every length up to three hops), they are exactly p's dominators.
        let inner = match r.dist {
            0 => Some([NONE; 2]),
            1 => Some([u, NONE]),
            _ => match (vias.next(), vias.next()) {
                (Some(&y), None) => Some([y, u]),
                (Some(_), Some(_)) => Some([u, NONE]),
                (None, _) => None,
            },
        };
        if let Some(inner) = inner {
            acc.vouchers.push(u);
            acc.doms = Some(acc.doms.map_or(inner, |d| intersect(d, inner)));
        }
        // A best path to u through p itself is no path to p: take u's best through another
        // hop-1 node, or none. (When weights into p are those of the frontier, p is then
        // at one hop and this never decides; it does when the final edge is weighed apart.)
        let (best, _) = if r.dist == 2 && r.via == p {
            if r.alt_parent == NONE {
                return;
            }
            (r.alt, r.alt_parent)
        } else {
            (r.best, r.parent)
        };
        let d = r.dist + 1;
        let val = best * we;
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

    /// Evaluates every target of `p` at once, choosing the cheaper direction: the in-edges of
    /// every target (pull) or the out-edges of every frontier node (push, i.e. a third BFS
    /// layer restricted to the targets). Both visit the same edge set, so the results are
    /// equal. Returns, per target slot, an index into the returned evaluations or `NONE`.
    fn evaluate_targets(
        &self,
        g: &TrustGraph,
        w: &mut Weigher<'_>,
        p: &PreparedCandidates,
        mode: Mode,
    ) -> (Vec<u32>, Vec<Eval>) {
        let targets = &p.targets;
        let mut at = vec![NONE; targets.len()];
        let mut evals = Vec::new();
        let mut put = |at: &mut Vec<u32>, s: usize, ev: Eval| {
            at[s] = u32::try_from(evals.len()).unwrap_or(NONE);
            evals.push(ev);
        };
        let push: usize = self.map.keys().map(|&u| g.out_degree(u)).sum();
        if mode == Mode::Pull || (mode == Mode::Auto && p.pull_cost <= push) {
            for (s, &t) in targets.iter().enumerate() {
                if let Some(ev) = self.evaluate(g, w, t) {
                    put(&mut at, s, ev);
                }
            }
            return (at, evals);
        }
        // Seeds among the targets are at distance 0 whatever edges reach them.
        for &u in &self.seeds {
            if let Ok(s) = targets.binary_search(&u) {
                put(&mut at, s, Eval::zero());
            }
        }
        // Per target slot, its accumulator in `accs` (most targets get none).
        let mut acc_at = vec![NONE; targets.len()];
        let mut accs: Vec<(usize, Acc)> = Vec::new();
        for (&u, r) in &self.map {
            g.for_each_out(u, |t, e| {
                if !p.may_target(t) {
                    return;
                }
                let Ok(s) = targets.binary_search(&t) else {
                    return;
                };
                if at[s] != NONE {
                    return;
                }
                let we = w.weight(e);
                if we <= 0.0 {
                    return;
                }
                let i = match acc_at[s] {
                    NONE => {
                        acc_at[s] = u32::try_from(accs.len()).unwrap_or(NONE);
                        accs.push((s, Acc::default()));
                        accs.len() - 1
                    }
                    i => i as usize,
                };
                if let Some((_, acc)) = accs.get_mut(i) {
                    Self::offer(g, acc, r, u, t, e, we);
                }
            });
        }
        for (s, acc) in accs {
            if let Some(ev) = acc.finish() {
                put(&mut at, s, ev);
            }
        }
        (at, evals)
    }

    /// The edges of the best path ending with edge `last`, seed first.
    fn path_edges(&self, g: &TrustGraph, last: u32) -> Vec<u32> {
        let mut edges = Vec::with_capacity(usize::from(MAX_HOPS));
        let target = g.subject_of(last);
        let mut e = last;
        while e != NONE && edges.len() < usize::from(MAX_HOPS) {
            edges.push(e);
            // As in `offer`: a best path through the target is replaced by the alternative.
            e = self.map.get(&g.author_of(e)).map_or(NONE, |r| {
                if r.dist == 2 && r.via == target {
                    r.alt_parent
                } else {
                    r.parent
                }
            });
        }
        edges.reverse();
        edges
    }
}

/// Evaluations of every prepared target against one frontier (services share operators,
/// so each operator is evaluated once).
struct Evaluator {
    frontier: Frontier,
    /// Per target slot: index into `evals`, or `NONE` when no path reaches it.
    at: Vec<u32>,
    evals: Vec<Eval>,
    zero: Option<usize>,
    /// Evaluations with the final edge weighed against what a service offers, per
    /// (operator node, offered capability set).
    offered: HashMap<(u32, u32), Option<usize>>,
}

impl Evaluator {
    fn new(
        g: &TrustGraph,
        w: &mut Weigher<'_>,
        seeds: &[u32],
        prepared: &PreparedCandidates,
        budget: usize,
    ) -> Self {
        let frontier = Frontier::compute(g, w, seeds, budget);
        let (at, evals) = frontier.evaluate_targets(g, w, prepared, Mode::Auto);
        Self {
            frontier,
            at,
            evals,
            zero: None,
            offered: HashMap::new(),
        }
    }

    /// The evaluation of `node` with each final edge weighed against capability set
    /// `offered` (a query naming no capability, a service offering these): a pull over the
    /// node's in-edges, done once per pair and only for candidates the frontier reaches.
    fn offered(
        &mut self,
        g: &TrustGraph,
        node: u32,
        offered: u32,
        now_us: i64,
        half_life_us: i64,
    ) -> Option<usize> {
        if let Some(&r) = self.offered.get(&(node, offered)) {
            return r;
        }
        let mut w = g.offered_weigher(offered, now_us, half_life_us);
        let r = self.frontier.evaluate(g, &mut w, node).map(|ev| {
            self.evals.push(ev);
            self.evals.len() - 1
        });
        self.offered.insert((node, offered), r);
        r
    }

    /// The distance-0 answer, for a candidate that is itself a seed.
    fn zero(&mut self) -> usize {
        if let Some(i) = self.zero {
            return i;
        }
        self.evals.push(Eval::zero());
        let i = self.evals.len() - 1;
        self.zero = Some(i);
        i
    }

    /// The evaluation of target slot `slot` (`NONE`: an operator without a node).
    fn get(&self, slot: u32) -> Option<usize> {
        match self.at.get(slot as usize) {
            Some(&i) if i != NONE => Some(i as usize),
            _ => None,
        }
    }
}

/// Which frontier an entry was scored against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Viewer,
    Anchors,
    Quality,
}

#[derive(Clone, Copy)]
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

/// Candidates made ready to be ranked many times: each operator's graph node resolved, and
/// the order of candidates no path reaches (quality, operator, service) computed, once. A
/// caller ranking the same filtered set for many viewers keeps one beside the set; a ranking
/// then hashes no DID and compares no string for the candidates no path reaches, which are
/// nearly all of them.
///
/// It stays valid for the graph it was resolved against through all its later changes
/// (node ids are only ever appended), except that an operator unknown then may have gained a
/// node since. [`TrustGraph::rank_prepared`] notices either case and resolves again for that
/// call, so a stale one costs time, never correctness; [`TrustGraph::refresh_prepared`] refreshes it.
#[derive(Debug, Clone, Default)]
pub struct PreparedCandidates {
    /// [`TrustGraph::numbering`] resolved against; 0 for none.
    numbering: u64,
    /// Nodes the graph had then.
    node_count: usize,
    nodes: Vec<Option<u32>>,
    /// Candidate indices in the no-path order.
    order: Vec<usize>,
    /// Whether some operator had no node (only then can new nodes make this stale).
    unresolved: bool,
    /// The distinct nodes of the operators, ascending: what a ranking evaluates.
    targets: Vec<u32>,
    /// Per candidate, its operator's index in `targets`, or `NONE`.
    slot: Vec<u32>,
    /// A bitmap over node ids modulo its size, set for every target: the out-edge scan
    /// rejects nearly every non-target with one bit test instead of a search of `targets`.
    filter: Vec<u64>,
    /// In-edges of all targets when resolved: the cost of evaluating them by in-edge scans,
    /// weighed against the frontier's out-edges (only a choice of direction; both give the
    /// same answer).
    pull_cost: usize,
}

impl PreparedCandidates {
    /// The graph-independent half: the no-path order of `candidates` (quality descending,
    /// then operator DID, service URI, index). Resolve it with [`TrustGraph::refresh_prepared`].
    pub fn new<S: AsRef<str>>(candidates: &[CandidateProvider<S>]) -> Self {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| {
            let (ca, cb) = (&candidates[a], &candidates[b]);
            cb.quality_ppm
                .cmp(&ca.quality_ppm)
                .then_with(|| ca.operator.as_ref().cmp(cb.operator.as_ref()))
                .then_with(|| ca.service.as_ref().cmp(cb.service.as_ref()))
                .then(a.cmp(&b))
        });
        Self {
            order,
            ..Self::default()
        }
    }

    /// How many candidates it was prepared for.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether it holds no candidate.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether node `t` may be a target (no false negatives).
    #[inline]
    fn may_target(&self, t: u32) -> bool {
        let bits = self.filter.len() * 64;
        let b = t as usize & (bits.wrapping_sub(1));
        self.filter
            .get(b / 64)
            .is_some_and(|w| w & (1 << (b % 64)) != 0)
    }

    /// Whether its nodes are those `g` would resolve now.
    pub fn is_current_for(&self, g: &TrustGraph) -> bool {
        self.numbering == g.numbering && (!self.unresolved || self.node_count == g.node_count())
    }
}

/// The answer of [`TrustGraph::rank_prepared`]: every candidate in ranked order, with the
/// reached ones explained (path, vouchers) and the rest described on demand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranking {
    /// Per place: candidate index and index into `explained`, or `NONE` for a candidate no
    /// path reaches.
    order: Vec<(u32, u32)>,
    explained: Vec<Ranked>,
    cut: bool,
}

impl Ranking {
    /// Whether the work budget ([`RankOptions::frontier_budget`]) cut a frontier: the
    /// answer is exact for the paths it covers, and may miss some through the less trusted
    /// hop-1 nodes.
    pub fn frontier_cut(&self) -> bool {
        self.cut
    }

    /// Ranked candidates.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there were no candidates.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The candidate at place `i`.
    pub fn get(&self, i: usize) -> Option<Ranked> {
        let &(candidate, x) = self.order.get(i)?;
        Some(match self.explained.get(x as usize) {
            Some(r) => r.clone(),
            None => Ranked {
                candidate: candidate as usize,
                distance: None,
                score_ppm: 0,
                path: Vec::new(),
                vouchers: Vouchers::default(),
                basis: Basis::Fallback,
            },
        })
    }

    /// Places `offset..offset + limit` (clipped to the ranking).
    pub fn range(&self, offset: usize, limit: usize) -> impl Iterator<Item = Ranked> + '_ {
        let end = offset.saturating_add(limit).min(self.len());
        (offset.min(end)..end).filter_map(|i| self.get(i))
    }

    /// Every place, in order.
    pub fn into_vec(self) -> Vec<Ranked> {
        (0..self.len()).filter_map(|i| self.get(i)).collect()
    }
}

/// An index as `u32` (candidate lists are far smaller than 2^32).
fn to_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(NONE)
}

impl TrustGraph {
    /// Prepares `candidates` for [`rank_prepared`](Self::rank_prepared) against this graph.
    pub fn prepare<S: AsRef<str>>(
        &self,
        candidates: &[CandidateProvider<S>],
    ) -> PreparedCandidates {
        let mut p = PreparedCandidates::new(candidates);
        self.refresh_prepared(&mut p, candidates);
        p
    }

    /// Resolves the operators of `p` (prepared for `candidates`) against this graph: only
    /// those still unknown when `p` was resolved against an earlier state of this graph, all
    /// of them otherwise.
    pub fn refresh_prepared<S: AsRef<str>>(
        &self,
        p: &mut PreparedCandidates,
        candidates: &[CandidateProvider<S>],
    ) {
        if p.is_current_for(self) && p.nodes.len() == candidates.len() {
            return;
        }
        if p.numbering == self.numbering && p.nodes.len() == candidates.len() {
            let todo: Vec<usize> = (0..p.nodes.len())
                .filter(|&i| p.nodes[i].is_none())
                .collect();
            let found = self.nodes(todo.iter().map(|&i| candidates[i].operator.as_ref()));
            for (i, n) in todo.into_iter().zip(found) {
                p.nodes[i] = n;
            }
        } else {
            p.nodes = self.nodes(candidates.iter().map(|c| c.operator.as_ref()));
        }
        p.numbering = self.numbering;
        p.node_count = self.node_count();
        p.unresolved = p.nodes.iter().any(Option::is_none);
        p.targets = p.nodes.iter().flatten().copied().collect();
        p.targets.sort_unstable();
        p.targets.dedup();
        p.slot = p
            .nodes
            .iter()
            .map(|n| {
                n.and_then(|n| p.targets.binary_search(&n).ok())
                    .and_then(|s| u32::try_from(s).ok())
                    .unwrap_or(NONE)
            })
            .collect();
        // About 16 bits per target, a power of two of at least one word.
        let bits = (p.targets.len() * 16).next_power_of_two().max(64);
        p.filter = vec![0u64; bits / 64];
        for &t in &p.targets {
            let b = t as usize & (bits - 1);
            p.filter[b / 64] |= 1 << (b % 64);
        }
        p.pull_cost = p.targets.iter().map(|&t| self.in_degree(t)).sum();
    }

    /// Ranks `candidates` for `viewer` and `capability` at time `now_us`.
    ///
    /// Order: candidates reached from the viewer (`Basis::Graph`) by distance ascending, score
    /// descending, voucher count descending; then candidates reached only from the anchors
    /// (`Basis::Fallback` with a distance), same key; then the rest (`Basis::Fallback`, no
    /// distance) by `quality_ppm` descending; ties by operator DID, service URI, index.
    ///
    /// Then the sybil cap (`RankOptions::sybil_per_dominator`, 2 by default). A node X
    /// *dominates* a reached result when every path of at most three hops with positive
    /// weights from the seeds it was reached from (the viewer, or the anchors for a result
    /// reached only from them) to its operator passes through X. Going down the order
    /// above, a result keeps its place only while every node dominating it (the viewer and
    /// the anchors exempt) dominates fewer than `sybil_per_dominator` results kept so far;
    /// every other result is *over the cap* and moves below every result that is not,
    /// `Basis::Fallback` ones included, keeping its relative order.
    ///
    /// Invariant: for any node X other than the viewer and the anchors, at most
    /// `sybil_per_dominator` of the results not over the cap are dominated by X; so X places
    /// at most that many among any top N, unless fewer than N results are not over the cap
    /// (then the excess fills the remaining places, still after all the others). A result
    /// with a path avoiding X (an independent voucher) is never capped by X. Whatever the
    /// shape behind one compromised node (star, chain, tree of intermediates, ring), every
    /// path into it passes through that node, so it holds at most two of the top ten.
    pub fn rank<S: AsRef<str>, C: Capabilities>(
        &self,
        viewer: Option<&str>,
        capability: C,
        candidates: &[CandidateProvider<S>],
        now_us: i64,
        opts: &RankOptions,
    ) -> Vec<Ranked> {
        let prepared = self.prepare(candidates);
        self.rank_prepared(viewer, capability, candidates, &prepared, now_us, opts)
            .into_vec()
    }

    /// [`rank`](Self::rank) with the candidates prepared beforehand (by
    /// [`prepare`](Self::prepare) of these same candidates, against this graph or any other:
    /// a stale preparation is resolved again for this call). The answer is the same, in a
    /// compact form that describes candidates no path reaches only when asked.
    pub fn rank_prepared<S: AsRef<str>, C: Capabilities>(
        &self,
        viewer: Option<&str>,
        capability: C,
        candidates: &[CandidateProvider<S>],
        prepared: &PreparedCandidates,
        now_us: i64,
        opts: &RankOptions,
    ) -> Ranking {
        let fresh;
        let prepared = if prepared.len() == candidates.len()
            && prepared.nodes.len() == candidates.len()
            && prepared.is_current_for(self)
        {
            prepared
        } else {
            let mut p = if prepared.len() == candidates.len() {
                prepared.clone()
            } else {
                PreparedCandidates::new(candidates)
            };
            self.refresh_prepared(&mut p, candidates);
            fresh = p;
            &fresh
        };
        let nodes = &prepared.nodes;
        let queries = capability.list();
        let mut w = self.weigher(&queries, now_us, opts.half_life_us);
        // With no capability queried, a reached candidate's final edges are weighed against
        // what its service offers (when the graph knows it).
        let offered = |i: usize, ev: &Eval| -> Option<(u32, u32)> {
            if !queries.is_empty() || ev.dist == 0 {
                return None;
            }
            let o = self.offered_by(candidates[i].service.as_ref());
            (o != 0).then_some(())?;
            Some((nodes[i]?, o))
        };
        let viewer_node = viewer.and_then(|v| self.node(v));
        // Compared by node: interning is a bijection, and an operator without a node can
        // only be a viewer without one.
        let is_viewer = |i: usize| match viewer_node {
            Some(v) => nodes[i] == Some(v),
            None => nodes[i].is_none() && viewer == Some(candidates[i].operator.as_ref()),
        };
        // A viewer unknown to the graph still has a frontier (just itself): its own services
        // are at distance 0.
        let mut by_viewer = viewer.map(|_| {
            let seeds: Vec<u32> = viewer_node.into_iter().collect();
            Evaluator::new(self, &mut w, &seeds, prepared, opts.frontier_budget)
        });
        let mut anchors: Vec<u32> = opts.anchors.iter().filter_map(|a| self.node(a)).collect();
        anchors.sort_unstable();
        anchors.dedup();
        let is_anchor = |i: usize| match nodes[i] {
            Some(n) => anchors.binary_search(&n).is_ok(),
            None => opts
                .anchors
                .iter()
                .any(|a| a == candidates[i].operator.as_ref()),
        };
        // Built when a candidate first falls back to the anchors.
        let mut by_anchors: Option<Evaluator> = None;

        let mut entries = Vec::with_capacity(candidates.len());
        for (i, &slot) in prepared.slot.iter().enumerate() {
            let mut entry = Entry {
                candidate: i,
                source: Source::Quality,
                eval: None,
            };
            if let Some(ev) = by_viewer.as_mut() {
                entry.eval = if is_viewer(i) {
                    Some(ev.zero())
                } else {
                    ev.get(slot)
                };
                if let Some((n, o)) = entry.eval.and_then(|x| offered(i, &ev.evals[x])) {
                    entry.eval = ev.offered(self, n, o, now_us, opts.half_life_us);
                }
                entry.source = Source::Viewer;
            }
            if entry.eval.is_none() && !opts.anchors.is_empty() {
                let ev = by_anchors.get_or_insert_with(|| {
                    Evaluator::new(self, &mut w, &anchors, prepared, opts.frontier_budget)
                });
                entry.eval = if is_anchor(i) {
                    Some(ev.zero())
                } else {
                    ev.get(slot)
                };
                if let Some((n, o)) = entry.eval.and_then(|x| offered(i, &ev.evals[x])) {
                    entry.eval = ev.offered(self, n, o, now_us, opts.half_life_us);
                }
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
        // Reached candidates (usually a handful) are sorted here; the rest keep the prepared
        // order, which is the same comparison as theirs.
        let mut ordered: Vec<Entry> = entries
            .iter()
            .filter(|e| e.source != Source::Quality)
            .copied()
            .collect();
        ordered.sort_by(|a, b| {
            let (ca, cb) = (&candidates[a.candidate], &candidates[b.candidate]);
            let o = match (eval_of(a), eval_of(b)) {
                (Some(x), Some(y)) => x
                    .dist
                    .cmp(&y.dist)
                    .then(y.best.total_cmp(&x.best))
                    .then(y.vouchers.len().cmp(&x.vouchers.len())),
                _ => Ordering::Equal,
            };
            (a.source == Source::Anchors)
                .cmp(&(b.source == Source::Anchors))
                .then(o)
                .then_with(|| ca.operator.as_ref().cmp(cb.operator.as_ref()))
                .then_with(|| ca.service.as_ref().cmp(cb.service.as_ref()))
                .then(a.candidate.cmp(&b.candidate))
        });

        // Sybil cap. A result's dominators (nodes on every path to it within the hop bound)
        // are computed with its evaluation; the viewer and the anchors are exempt. A result
        // keeps its place only while each of its dominators has fewer than `cap` kept
        // results, so no node holds more than `cap` kept places. A partition keeps both sides
        // in ranked order, so the result stays deterministic. Unreached candidates have no
        // dominators: they are never over the cap.
        let exempt =
            |x: u32| x == NONE || viewer_node == Some(x) || anchors.binary_search(&x).is_ok();
        let dominators = |e: &Entry| -> [u32; 2] {
            eval_of(e).map_or([NONE; 2], |ev| {
                ev.doms.map(|x| if exempt(x) { NONE } else { x })
            })
        };
        let (kept, over): (Vec<Entry>, Vec<Entry>) = match opts.sybil_per_dominator {
            Some(cap) => {
                let mut counts: IdMap<usize> = IdMap::default();
                ordered.into_iter().partition(|e| {
                    let doms = dominators(e);
                    let under = doms
                        .iter()
                        .all(|x| *x == NONE || counts.get(x).copied().unwrap_or(0) < cap);
                    if under {
                        for x in doms.into_iter().filter(|&x| x != NONE) {
                            *counts.entry(x).or_insert(0) += 1;
                        }
                    }
                    under
                })
            }
            None => (ordered, Vec::new()),
        };

        // Only reached candidates are explained here (paths, vouchers); the rest are cheap to
        // describe when a page asks for them.
        let explain = |e: &Entry| -> Ranked {
            let ev = eval_of(e);
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
        };
        let mut order = Vec::with_capacity(entries.len());
        let mut explained = Vec::with_capacity(kept.len() + over.len());
        let mut place = |e: &Entry, order: &mut Vec<(u32, u32)>| {
            order.push((to_u32(e.candidate), to_u32(explained.len())));
            explained.push(explain(e));
        };
        for e in &kept {
            place(e, &mut order);
        }
        order.extend(
            prepared
                .order
                .iter()
                .filter(|&&i| entries.get(i).is_some_and(|e| e.source == Source::Quality))
                .map(|&i| (to_u32(i), NONE)),
        );
        for e in &over {
            place(e, &mut order);
        }
        let cut = by_viewer.as_ref().is_some_and(|e| e.frontier.cut)
            || by_anchors.as_ref().is_some_and(|e| e.frontier.cut);
        Ranking {
            order,
            explained,
            cut,
        }
    }

    /// The best path of at most three hops from `from` to `to` (fewest hops, then largest
    /// product), for getTrustPath. `None` if there is none or either DID is unknown.
    pub fn path<C: Capabilities>(
        &self,
        from: &str,
        to: &str,
        capability: C,
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
        let mut w = self.weigher(&capability.list(), now_us, opts.half_life_us);
        let f = Frontier::compute(self, &mut w, &[a], opts.frontier_budget);
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
        // Every node a target, as candidates of one service each.
        let all: Vec<CandidateProvider> = (0..g.node_count() as u32)
            .map(|u| CandidateProvider {
                operator: g.did(u).to_owned(),
                service: format!("s{u}"),
                quality_ppm: 0,
            })
            .collect();
        let prepared = g.prepare(&all);
        assert_eq!(prepared.targets.len(), all.len());
        let mut compared = 0;
        for seed in 0..20u32 {
            for cap in [None, Some("s")] {
                let mut w = g.weigher(cap.as_slice(), 1 << 50, crate::model::YEAR_US);
                let f = Frontier::compute(&g, &mut w, &[seed], usize::MAX);
                let (pull_at, pull) = f.evaluate_targets(&g, &mut w, &prepared, Mode::Pull);
                let (push_at, push) = f.evaluate_targets(&g, &mut w, &prepared, Mode::Push);
                let key = |at: &[u32], evals: &[Eval], s: usize| {
                    evals
                        .get(at[s] as usize)
                        .map(|e| (e.dist, e.best, e.last, e.vouchers.clone(), e.doms))
                };
                for s in 0..all.len() {
                    let (a, b) = (key(&pull_at, &pull, s), key(&push_at, &push, s));
                    assert_eq!(a, b, "seed {seed} target {s}");
                    compared += usize::from(a.is_some_and(|e| e.0 >= 2));
                }
            }
        }
        assert!(
            compared > 100,
            "multi-hop answers were compared: {compared}"
        );
    }
}
