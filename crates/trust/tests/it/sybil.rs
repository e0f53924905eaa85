//! The sybil scenario: one compromised endorser reachable from the viewer vouches for 1,000
//! sybil operators offering the same capability, with few or many honest alternatives.

use guildhall_trust::{Basis, CandidateProvider, RankOptions, Ranked, TrustGraph};

use crate::common::*;

#[test]
fn one_compromised_endorser_gets_at_most_two_of_the_top_ten() {
    let mut e = Edges::default();
    let mut cands = Vec::new();
    for i in 0..5 {
        let (h, p) = (format!("honest{i}"), format!("provider{i}"));
        e.add("viewer", &h, 90, &[], 30);
        e.add(&h, &p, 80, &["sms.send"], 30);
        cands.push(cand(&p, 990_000));
    }
    // The compromised endorser is trusted fully and vouches at full strength, so every sybil
    // outscores every honest provider.
    e.add("viewer", "compromised", 100, &[], 0);
    for j in 0..1000 {
        let s = format!("sybil{j:04}");
        e.add("compromised", &s, 100, &["sms"], 0);
        cands.push(cand(&s, 999_999));
    }
    // Providers nobody in the graph knows: they fill the first page once sybils are capped.
    for k in 0..20 {
        cands.push(cand(&format!("unknown{k:02}"), 500_000));
    }
    let g = e.graph();
    let is_sybil = |i: usize| cands[i].operator.starts_with("did:plc:sybil");
    let is_honest = |i: usize| cands[i].operator.starts_with("did:plc:provider");

    let uncapped = g.rank(
        Some(&did("viewer")),
        Some("sms.send"),
        &cands,
        NOW,
        &RankOptions {
            sybil_per_dominator: None,
            ..RankOptions::default()
        },
    );
    assert!(
        uncapped[..10].iter().all(|x| is_sybil(x.candidate)),
        "without the cap sybils take the page"
    );

    let r = rank(&g, Some("viewer"), Some("sms.send"), &cands);
    assert_eq!(r.len(), cands.len());
    let top: Vec<usize> = r[..10].iter().map(|x| x.candidate).collect();
    assert_eq!(top.iter().filter(|&&i| is_sybil(i)).count(), 2);
    assert_eq!(top.iter().filter(|&&i| is_honest(i)).count(), 5);
    // The first two sybils keep their place; honest providers follow in their own order.
    assert_eq!(top[..2], [uncapped[0].candidate, uncapped[1].candidate]);
    assert_eq!(top[2..7], [0, 1, 2, 3, 4]);
    assert!(
        r[2..7]
            .iter()
            .all(|x| x.basis == Basis::Graph && x.distance == Some(2))
    );
    // The remaining three slots go to unranked (fallback) providers; every fallback provider
    // comes before the excess sybils, which follow in their original order.
    assert!(
        r[7..27]
            .iter()
            .all(|x| x.basis == Basis::Fallback && !is_sybil(x.candidate))
    );
    let demoted: Vec<usize> = r[27..].iter().map(|x| x.candidate).collect();
    let expect: Vec<usize> = uncapped
        .iter()
        .map(|x| x.candidate)
        .filter(|&i| is_sybil(i))
        .skip(2)
        .collect();
    assert_eq!(demoted, expect);
    // Each sybil explains itself through the compromised endorser.
    assert_eq!(
        r[0].path.last().map(|p| p.from.clone()),
        Some(did("compromised"))
    );
    assert_eq!(r[0].vouchers.sample, [did("compromised")]);
}

#[test]
fn the_viewers_own_endorsements_are_not_capped() {
    let mut e = Edges::default();
    let mut cands: Vec<CandidateProvider> = Vec::new();
    for i in 0..12 {
        let p = format!("p{i:02}");
        e.add("viewer", &p, 100 - i, &[], 0);
        cands.push(cand(&p, 0));
    }
    let g = e.graph();
    let r = rank(&g, Some("viewer"), None, &cands);
    assert_eq!(
        r.iter().map(|x| x.candidate).collect::<Vec<_>>(),
        (0..12).collect::<Vec<_>>()
    );
    // Anchors, likewise.
    let opts = RankOptions {
        anchors: vec![did("viewer")],
        ..RankOptions::default()
    };
    let r = g.rank(None, None, &cands, NOW, &opts);
    assert_eq!(
        r.iter().map(|x| x.candidate).collect::<Vec<_>>(),
        (0..12).collect::<Vec<_>>()
    );
}

/// `honest` providers reachable through their own endorsers, 1,000 sybils behind one
/// compromised endorser (outscoring every honest path), `unreachable` providers nobody in the
/// graph knows.
fn few_honest(honest: usize, unreachable: usize) -> (TrustGraph, Vec<CandidateProvider>) {
    let mut e = Edges::default();
    let mut cands = Vec::new();
    for i in 0..honest {
        let (h, p) = (format!("honest{i}"), format!("provider{i}"));
        e.add("viewer", &h, 60, &[], 100);
        e.add(&h, &p, 60, &["sms.send"], 100);
        cands.push(cand(&p, 0));
    }
    e.add("viewer", "compromised", 100, &[], 0);
    for j in 0..1000 {
        let s = format!("sybil{j:04}");
        e.add("compromised", &s, 100, &["sms.send"], 0);
        // Sybils claim the best quality: it must not help them past the cap.
        cands.push(cand(&s, u32::MAX));
    }
    for k in 0..unreachable {
        cands.push(cand(&format!("stranger{k:02}"), 0));
    }
    (e.graph(), cands)
}

#[test]
fn the_cap_holds_with_few_honest_providers() {
    let (g, cands) = few_honest(3, 8);
    let kind = |x: &Ranked| {
        let op = &cands[x.candidate].operator;
        if op.contains(":sybil") {
            'S'
        } else if op.contains(":provider") {
            'H'
        } else {
            'F'
        }
    };
    let r = rank(&g, Some("viewer"), Some("sms.send"), &cands);
    assert_eq!(r.len(), cands.len());
    let shape: String = r.iter().take(14).map(kind).collect();
    // Two sybils on their trust, the three honest providers, then every unreachable
    // (fallback) provider, and only then the excess sybils.
    assert_eq!(shape, "SSHHHFFFFFFFFS");
    let top = &r[..10];
    assert!(top.iter().filter(|x| kind(x) == 'S').count() <= 2);
    assert!(r[5..13].iter().all(|x| x.basis == Basis::Fallback));
    assert!(
        r[13..]
            .iter()
            .all(|x| kind(x) == 'S' && x.basis == Basis::Graph)
    );
    // The excess sybils keep their trust numbers (they are demoted, not rewritten).
    assert!(
        r[13..]
            .iter()
            .all(|x| x.distance == Some(2) && x.score_ppm == r[0].score_ppm)
    );
    // Deterministic: the same input in another order ranks the same providers the same way.
    let mut shuffled: Vec<(usize, CandidateProvider)> = cands.iter().cloned().enumerate().collect();
    Rng(7).shuffle(&mut shuffled);
    let only: Vec<CandidateProvider> = shuffled.iter().map(|(_, c)| c.clone()).collect();
    let again = rank(&g, Some("viewer"), Some("sms.send"), &only);
    let ops = |r: &[Ranked], c: &[CandidateProvider]| -> Vec<String> {
        r.iter().map(|x| c[x.candidate].operator.clone()).collect()
    };
    assert_eq!(ops(&again, &only), ops(&r, &cands));
}

#[test]
fn with_nothing_else_to_show_the_excess_fills_the_page_last() {
    // Three honest providers and nothing unreachable: ten results cannot avoid sybils, but
    // every result that is not over the cap still comes first.
    let (g, cands) = few_honest(3, 0);
    let r = rank(&g, Some("viewer"), Some("sms.send"), &cands);
    let shape: String = r
        .iter()
        .take(10)
        .map(|x| {
            if cands[x.candidate].operator.contains(":sybil") {
                'S'
            } else {
                'H'
            }
        })
        .collect();
    assert_eq!(shape, "SSHHHSSSSS");
    // Without a viewer nobody is reached: all fallback, ordered by quality, no cap involved.
    let r = rank(&g, None, Some("sms.send"), &cands);
    assert!(
        r.iter()
            .all(|x| x.basis == Basis::Fallback && x.distance.is_none())
    );
}

/// How the 1,000 sybils behind the compromised node C are wired.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// C endorses every sybil.
    Star,
    /// C endorses one intermediate, which endorses every sybil; the sybils also endorse the
    /// next one along.
    Chain,
    /// C endorses 500 intermediates, each of which endorses two sybils: every sybil has its
    /// own last-hop endorser, which the old per-endorser cap did not catch.
    Tree,
    /// C endorses every sybil, and each sybil endorses both ring neighbours, so each has
    /// three vouchers.
    Ring,
}

const SYBILS: usize = 1000;

/// The viewer (or, with `anchored`, the sole anchor) reaches: five honest providers at three
/// hops, each behind its own two endorsers; one provider with three independent vouchers;
/// the compromised node C by one attack edge, behind which 1,000 sybils are wired as
/// `shape`, all at full strength (they outscore every honest path); and 20 strangers.
fn attack(shape: Shape) -> (TrustGraph, Vec<CandidateProvider>) {
    let mut e = Edges::default();
    let mut cands = Vec::new();
    for i in 0..5 {
        let (h, g, p) = (format!("h{i}"), format!("g{i}"), format!("provider{i}"));
        e.add("viewer", &h, 60, &[], 100);
        e.add(&h, &g, 60, &[], 100);
        e.add(&g, &p, 60, &["sms.send"], 100);
        cands.push(cand(&p, 0));
    }
    for a in ["a1", "a2", "a3"] {
        e.add("viewer", a, 50, &[], 100);
        e.add(a, "independent", 50, &["sms.send"], 100);
    }
    cands.push(cand("independent", 0));
    // The one attack edge.
    e.add("viewer", "c", 100, &[], 0);
    let s = |j: usize| format!("sybil{:04}", j % SYBILS);
    match shape {
        Shape::Star => {
            for j in 0..SYBILS {
                e.add("c", &s(j), 100, &["sms.send"], 0);
            }
        }
        Shape::Chain => {
            e.add("c", "link", 100, &[], 0);
            for j in 0..SYBILS {
                e.add("link", &s(j), 100, &["sms.send"], 0);
                e.add(&s(j), &s(j + 1), 100, &["sms.send"], 0);
            }
        }
        Shape::Tree => {
            for k in 0..SYBILS / 2 {
                let i = format!("inter{k:03}");
                e.add("c", &i, 100, &[], 0);
                e.add(&i, &s(2 * k), 100, &["sms.send"], 0);
                e.add(&i, &s(2 * k + 1), 100, &["sms.send"], 0);
            }
        }
        Shape::Ring => {
            for j in 0..SYBILS {
                e.add("c", &s(j), 100, &["sms.send"], 0);
                e.add(&s(j), &s(j + 1), 100, &["sms.send"], 0);
                e.add(&s(j + 1), &s(j), 100, &["sms.send"], 0);
            }
        }
    }
    for j in 0..SYBILS {
        cands.push(cand(&s(j), u32::MAX));
    }
    for k in 0..20 {
        cands.push(cand(&format!("stranger{k:02}"), 0));
    }
    (e.graph(), cands)
}

#[test]
fn one_attack_edge_holds_two_of_the_top_ten_in_any_shape() {
    for shape in [Shape::Star, Shape::Chain, Shape::Tree, Shape::Ring] {
        let (g, cands) = attack(shape);
        let op = |x: &Ranked| cands[x.candidate].operator.as_str();
        let sybils = |r: &[Ranked]| r.iter().filter(|x| op(x).contains(":sybil")).count();
        for anchored in [false, true] {
            let (viewer, anchors) = if anchored {
                (None, vec![did("viewer")])
            } else {
                (Some(did("viewer")), Vec::new())
            };
            let rank = |cap: Option<usize>| {
                g.rank(
                    viewer.as_deref(),
                    Some("sms.send"),
                    &cands,
                    NOW,
                    &RankOptions {
                        anchors: anchors.clone(),
                        sybil_per_dominator: cap,
                        ..RankOptions::default()
                    },
                )
            };
            let uncapped = rank(None);
            // (In the two shapes that put sybils at three hops, the independent provider at
            // two hops keeps one place.)
            assert!(
                sybils(&uncapped[..10]) >= 9,
                "{shape:?}: without the cap sybils take the page"
            );
            let r = rank(Some(2));
            let top = &r[..10];
            assert_eq!(sybils(top), 2, "{shape:?} anchored={anchored}");
            // Every honest provider keeps a place: each is dominated only by its own
            // endorsers, and the independent one by nobody.
            for p in [
                "provider0",
                "provider1",
                "provider2",
                "provider3",
                "provider4",
            ]
            .into_iter()
            .chain(["independent"])
            {
                assert!(
                    top.iter().any(|x| op(x) == did(p)),
                    "{shape:?} anchored={anchored}: {p} was demoted"
                );
            }
            // The two sybils kept are the first two of the uncapped order; the rest follow
            // every other result, the strangers included.
            assert_eq!(r[..2], uncapped[..2]);
            assert!(
                r[r.len() - (SYBILS - 2)..]
                    .iter()
                    .all(|x| op(x).contains(":sybil"))
            );
            assert!(r[8..28].iter().all(|x| op(x).contains(":stranger")));
        }
    }
}

#[test]
fn three_independent_vouchers_are_not_demoted_by_one_of_them() {
    // The honest provider P has three vouchers; one of them, C, also vouches for twelve
    // sybils that outscore P. C dominates every sybil but not P, so P keeps its place
    // right after the two sybils C is allowed.
    let mut e = Edges::default();
    let mut cands = Vec::new();
    for a in ["c", "a2", "a3"] {
        e.add("viewer", a, 100, &[], 0);
        e.add(a, "p", 40, &[], 0);
    }
    for j in 0..12 {
        let s = format!("sybil{j:02}");
        e.add("c", &s, 100, &[], 0);
        cands.push(cand(&s, 0));
    }
    cands.push(cand("p", 0));
    let g = e.graph();
    let r = rank(&g, Some("viewer"), None, &cands);
    let ops: Vec<&str> = r
        .iter()
        .map(|x| cands[x.candidate].operator.as_str())
        .collect();
    assert_eq!(ops[2], did("p"));
    assert_eq!(r[2].vouchers.count, 3);
    assert!(ops[..2].iter().all(|o| o.contains(":sybil")));
}
