//! Property: the optimised ranker (frontier + in-edge check, base arrays + overlay) equals a
//! brute-force enumeration of every simple path of at most three hops.

use std::collections::{BTreeMap, BTreeSet};

use guildhall_trust::weight::{endorsement_weight_with, kappa_best, kappa_offered, to_ppm};
use guildhall_trust::{
    Basis, BuildOptions, CandidateProvider, EdgeRef, Endorsement, RankOptions, Ranked, TrustGraph,
    YEAR_US,
};
use proptest::prelude::*;

use crate::common::{NOW, did, tid};

const NODES: usize = 7;
const SVC_A: &str = "at://did:plc:svc/dev.guildhall.service/a";
const SVC_B: &str = "at://did:plc:svc/dev.guildhall.service/b";
const CAPS: [&[&str]; 5] = [
    &[],
    &["sms"],
    &["sms.send"],
    &["email"],
    &["sms.send.us", "email"],
];
/// Queried capabilities: none, one, or two in either order (best match per edge).
const QUERIES: [&[&str]; 5] = [
    &[],
    &["sms.send"],
    &["email"],
    &["sms.send", "email"],
    &["email", "sms.send"],
];

/// `(from, to, strength, age_us, caps, expiry, pin)`.
type Spec = (usize, usize, i64, i64, usize, u8, u8);

fn node(i: usize) -> String {
    did(&format!("n{i}"))
}

fn endorsement(i: usize, s: &Spec, junk: bool) -> Endorsement {
    let (from, to, strength, age, caps, expiry, pin) = *s;
    let n = if junk { 5000 + i } else { i } as u64;
    Endorsement {
        uri: format!("at://{}/dev.guildhall.endorsement/{}", node(from), tid(n)),
        cid: format!("bafyreitest{n}"),
        author: node(from),
        subject: node(to),
        capabilities: CAPS[caps].iter().map(|c| c.to_string()).collect(),
        strength,
        created_at_us: NOW - age,
        expires_at_us: match expiry {
            0 => Some(NOW - 1),
            1 => Some(NOW + 1000),
            _ => None,
        },
        pinned: match pin {
            0 => Some((SVC_A.into(), "bafyc1".into())),
            1 => Some((SVC_A.into(), "bafyc2".into())),
            2 => Some((SVC_B.into(), "bafyc1".into())),
            _ => None,
        },
    }
}

/// The scope of one ranking: the queried capabilities, and what the candidate's service
/// offers (weighed against its final edges when nothing is queried).
#[derive(Clone, Copy)]
struct Scope<'a> {
    query: &'a [&'a str],
    offered: &'a [&'a str],
}

fn weight_k(e: &Endorsement, kappa: f64) -> f64 {
    let current = match &e.pinned {
        Some((svc, _)) if svc == SVC_A => Some("bafyc1"),
        _ => None,
    };
    endorsement_weight_with(e, kappa, NOW, YEAR_US, current)
}

/// Weight of an edge inside a path.
fn weight(e: &Endorsement, sc: Scope<'_>) -> f64 {
    weight_k(e, kappa_best(&e.capabilities, sc.query))
}

/// Weight of the final edge of a path.
fn final_weight(e: &Endorsement, sc: Scope<'_>) -> f64 {
    if sc.query.is_empty() && !sc.offered.is_empty() {
        weight_k(e, kappa_offered(&e.capabilities, sc.offered))
    } else {
        weight(e, sc)
    }
}

#[derive(Debug, Clone)]
struct Best {
    dist: u8,
    score: f64,
    vouchers: BTreeSet<String>,
    /// Nodes on every enumerated path (seeds and the node itself excluded later): the
    /// intersection of the inner nodes of all of them.
    doms: Option<BTreeSet<String>>,
}

/// Every simple path of at most three hops from any seed, by depth-first enumeration.
fn oracle(list: &[Endorsement], seeds: &[String], cap: Scope<'_>) -> BTreeMap<String, Best> {
    let mut best: BTreeMap<String, Best> = BTreeMap::new();
    for s in seeds {
        best.insert(
            s.clone(),
            Best {
                dist: 0,
                score: 1.0,
                vouchers: BTreeSet::new(),
                doms: None,
            },
        );
    }
    fn walk(
        list: &[Endorsement],
        cap: Scope<'_>,
        seeds: &[String],
        path: &mut Vec<String>,
        product: f64,
        best: &mut BTreeMap<String, Best>,
    ) {
        let Some(here) = path.last().cloned() else {
            return;
        };
        for e in list.iter().filter(|e| e.author == here) {
            if path.contains(&e.subject) {
                continue;
            }
            let (w, wf) = (weight(e, cap), final_weight(e, cap));
            let len = path.len() as u8;
            // As the final edge (into e.subject), weighed by the final scope.
            let p = product * wf;
            if wf > 0.0 && !seeds.contains(&e.subject) {
                let b = best.entry(e.subject.clone()).or_insert(Best {
                    dist: u8::MAX,
                    score: 0.0,
                    vouchers: BTreeSet::new(),
                    doms: None,
                });
                if len < b.dist {
                    (b.dist, b.score) = (len, p);
                } else if len == b.dist && p > b.score {
                    b.score = p;
                }
                b.vouchers.insert(here.clone());
                let inner: BTreeSet<String> = path[1..].iter().cloned().collect();
                b.doms = Some(match b.doms.take() {
                    None => inner,
                    Some(d) => d.intersection(&inner).cloned().collect(),
                });
            }
            if len < 3 && w > 0.0 {
                path.push(e.subject.clone());
                walk(list, cap, seeds, path, product * w, best);
                path.pop();
            }
        }
    }
    for s in seeds {
        walk(list, cap, seeds, &mut vec![s.clone()], 1.0, &mut best);
    }
    best
}

/// (candidate, basis, distance, score ppm, voucher count, voucher sample, exact score,
/// dominators with the viewer and anchors removed).
type Row = (
    usize,
    Basis,
    Option<u8>,
    u32,
    u32,
    Vec<String>,
    f64,
    BTreeSet<String>,
);

/// What the ranker must return, before the sybil cap.
fn expected(
    list: &[Endorsement],
    viewer: Option<&str>,
    anchors: &[String],
    query: &[&str],
    offers: &[usize],
    cands: &[CandidateProvider],
) -> Vec<Row> {
    let mut rows: Vec<(u8, usize, Option<Best>)> = cands
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let sc = Scope {
                query,
                offered: CAPS[offers[i]],
            };
            let by_viewer = viewer.map(|v| oracle(list, &[v.to_string()], sc));
            let by_anchors = (!anchors.is_empty()).then(|| oracle(list, anchors, sc));
            if let Some(b) = by_viewer.as_ref().and_then(|m| m.get(&c.operator)) {
                (0, i, Some(b.clone()))
            } else if let Some(b) = by_anchors.as_ref().and_then(|m| m.get(&c.operator)) {
                (1, i, Some(b.clone()))
            } else {
                (2, i, None)
            }
        })
        .collect();
    rows.sort_by(|(ga, a, ba), (gb, b, bb)| {
        let (ca, cb) = (&cands[*a], &cands[*b]);
        ga.cmp(gb)
            .then_with(|| match (ba, bb) {
                (Some(x), Some(y)) => x
                    .dist
                    .cmp(&y.dist)
                    .then(y.score.total_cmp(&x.score))
                    .then(y.vouchers.len().cmp(&x.vouchers.len())),
                _ => cb.quality_ppm.cmp(&ca.quality_ppm),
            })
            .then_with(|| ca.operator.cmp(&cb.operator))
            .then_with(|| ca.service.cmp(&cb.service))
            .then(a.cmp(b))
    });
    rows.into_iter()
        .map(|(g, i, b)| {
            let basis = if g == 0 {
                Basis::Graph
            } else {
                Basis::Fallback
            };
            match b {
                Some(b) => (
                    i,
                    basis,
                    Some(b.dist),
                    to_ppm(b.score),
                    b.vouchers.len() as u32,
                    b.vouchers.iter().take(5).cloned().collect(),
                    b.score,
                    b.doms
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|x| viewer != Some(x.as_str()) && !anchors.contains(x))
                        .collect(),
                ),
                None => (i, basis, None, 0, 0, Vec::new(), 0.0, BTreeSet::new()),
            }
        })
        .collect()
}

/// The path must be a chain of live edges from a seed to the candidate whose weight product
/// is exactly the optimal score.
fn check_path(
    list: &[Endorsement],
    seeds: &[String],
    cap: Scope<'_>,
    target: &str,
    path: &[EdgeRef],
    score: f64,
) {
    let Some(first) = path.first() else {
        assert_eq!(score, 1.0, "only a seed has an empty path");
        return;
    };
    assert!(seeds.contains(&first.from), "path starts at a seed");
    assert_eq!(path.last().map(|e| e.to.as_str()), Some(target));
    let mut product = 1.0;
    for (k, r) in path.iter().enumerate() {
        if k > 0 {
            assert_eq!(path[k - 1].to, r.from);
        }
        let e = list.iter().find(|e| e.uri == r.uri);
        let Some(e) = e else {
            panic!("path edge {} is not a live endorsement", r.uri)
        };
        assert_eq!((&e.author, &e.subject), (&r.from, &r.to));
        // The graph keeps creation times to the second.
        assert_eq!(
            e.created_at_us.div_euclid(1_000_000) * 1_000_000,
            r.created_at_us
        );
        assert_eq!(r.cid.as_deref(), Some(e.cid.as_str()));
        product *= if k + 1 == path.len() {
            final_weight(e, cap)
        } else {
            weight(e, cap)
        };
    }
    assert_eq!(product, score, "the path explains the score exactly");
}

/// The sybil cap applied to an uncapped ranking, from the brute-force dominators: going down
/// the order, a result stays while each node dominating it dominates fewer than two results
/// kept so far; the others follow every other result, in order.
fn sybil_capped(r: &[Ranked], want: &[Row]) -> Vec<usize> {
    let doms: BTreeMap<usize, &BTreeSet<String>> = want.iter().map(|w| (w.0, &w.7)).collect();
    let (mut kept, mut over, mut counts) = (Vec::new(), Vec::new(), BTreeMap::new());
    for x in r {
        let d = doms.get(&x.candidate).copied().cloned().unwrap_or_default();
        if d.iter().all(|u| counts.get(u).copied().unwrap_or(0) < 2) {
            for u in d {
                *counts.entry(u).or_insert(0) += 1;
            }
            kept.push(x.candidate);
        } else {
            over.push(x.candidate);
        }
    }
    kept.into_iter().chain(over).collect()
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..NODES,
        0..NODES,
        prop_oneof![Just(100i64), Just(50), 1i64..=100],
        // Future dates too: within the clock skew (counts as new) and past it (refused).
        prop_oneof![
            Just(0i64),
            0..4 * YEAR_US,
            Just(-100_000_000),
            Just(-400_000_000),
            Just(-10 * YEAR_US)
        ],
        0..CAPS.len(),
        0u8..8,
        0u8..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn ranker_equals_brute_force(
        specs in prop::collection::vec(spec(), 0..28),
        junk in prop::collection::vec(spec(), 0..4),
        split in 0usize..28,
        viewer in prop::option::of(0..NODES + 1),
        anchor_mask in 0u8..8,
        query in 0..QUERIES.len(),
        qualities in prop::collection::vec(0u32..4, NODES + 1),
        offers in prop::collection::vec(0..CAPS.len(), NODES + 1),
    ) {
        let list: Vec<Endorsement> = specs.iter().enumerate().map(|(i, s)| endorsement(i, s, false)).collect();
        let junk: Vec<Endorsement> = junk.iter().enumerate().map(|(i, s)| endorsement(i, s, true)).collect();
        // Base from a prefix plus junk, the rest through the overlay, then delete the junk.
        let split = split.min(list.len());
        let base = list[..split].iter().chain(&junk);
        let Ok(mut g) = TrustGraph::build(base, &BuildOptions::default()) else { panic!("build") };
        prop_assert!(g.set_service_cid(SVC_A, "bafyc1").is_ok());
        // What each candidate's service offers (CAPS[0]: nothing known).
        for (i, &k) in offers.iter().enumerate() {
            let svc = format!("s{i}");
            prop_assert!(g.set_service_capabilities(&svc, CAPS[k]).is_ok());
        }
        let cands: Vec<CandidateProvider> = (0..=NODES)
            .map(|i| CandidateProvider { operator: node(i), service: format!("s{i}"), quality_ppm: qualities[i] })
            .collect();
        // Prepared before the overlay edges, which may add the nodes of unknown operators.
        let early = g.prepare(&cands);
        for e in &list[split..] {
            prop_assert!(g.add(e).is_ok());
        }
        for e in &junk {
            prop_assert_eq!(g.remove(&e.uri), e.author != e.subject);
        }
        let cap = QUERIES[query];
        // Node NODES is unknown to the graph.
        let viewer = viewer.map(node);
        let anchors: Vec<String> = (0..3).filter(|b| anchor_mask & (1 << b) != 0).map(|b| node(b + 4)).collect();
        let want = expected(&list, viewer.as_deref(), &anchors, cap, &offers, &cands);

        let free = RankOptions { anchors: anchors.clone(), sybil_per_dominator: None, ..RankOptions::default() };
        for graph in [&g, &g.rebuilt().unwrap_or_else(|e| panic!("{e}"))] {
            let got = graph.rank(viewer.as_deref(), cap, &cands, NOW, &free);
            let got_rows: Vec<_> = got
                .iter()
                .map(|x| (x.candidate, x.basis, x.distance, x.score_ppm, x.vouchers.count, x.vouchers.sample.clone()))
                .collect();
            let want_rows: Vec<_> = want.iter().map(|w| (w.0, w.1, w.2, w.3, w.4, w.5.clone())).collect();
            prop_assert_eq!(got_rows, want_rows);
            // A stale preparation (new nodes since, or another graph's numbering) is resolved
            // again for the call; a refreshed one is current. Both give the same answer.
            prop_assert_eq!(&graph.rank_prepared(viewer.as_deref(), cap, &cands, &early, NOW, &free).into_vec(), &got);
            let mut fresh = early.clone();
            graph.refresh_prepared(&mut fresh, &cands);
            prop_assert!(fresh.is_current_for(graph));
            let ranking = graph.rank_prepared(viewer.as_deref(), cap, &cands, &fresh, NOW, &free);
            // Pages of the compact ranking are slices of the whole.
            for offset in [0, 3, 7, 20] {
                let page: Vec<Ranked> = ranking.range(offset, 3).collect();
                prop_assert_eq!(&page[..], got.get(offset..(offset + 3).min(got.len())).unwrap_or_default());
            }
            prop_assert_eq!(&ranking.into_vec(), &got);
            for (x, w) in got.iter().zip(&want) {
                if let Some(d) = x.distance {
                    let seeds = if x.basis == Basis::Graph { vec![viewer.clone().unwrap_or_default()] } else { anchors.clone() };
                    prop_assert_eq!(x.path.len(), usize::from(d));
                    let sc = Scope { query: cap, offered: CAPS[offers[x.candidate]] };
                    check_path(&list, &seeds, sc, &cands[x.candidate].operator, &x.path, w.6);
                    // getTrustPath knows no service: it agrees when none scopes the path.
                    if x.basis == Basis::Graph && (!cap.is_empty() || sc.offered.is_empty()) {
                        let tp = graph.path(&seeds[0], &cands[x.candidate].operator, cap, NOW, &free);
                        prop_assert_eq!(tp.map(|t| (t.distance, t.score_ppm, t.edges)), Some((d, x.score_ppm, x.path.clone())));
                    }
                }
            }
            // The sybil cap is a stable demotion of the uncapped order.
            let capped = graph.rank(viewer.as_deref(), cap, &cands, NOW, &RankOptions { anchors: anchors.clone(), ..RankOptions::default() });
            prop_assert_eq!(capped.iter().map(|x| x.candidate).collect::<Vec<_>>(), sybil_capped(&got, &want));
        }
    }
}
