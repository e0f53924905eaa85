//! Hand-built graphs: hops, cycles, self-endorsement, scope, expiry, pins, overlay, fallback.

use guildhall_trust::{Basis, BuildOptions, RankOptions, TrustGraph};

use crate::common::*;

#[test]
fn chain_distances_scores_and_paths() {
    let mut e = Edges::default();
    e.add("v", "a", 100, &[], 0);
    e.add("a", "b", 80, &[], 0);
    e.add("b", "c", 50, &[], 0);
    e.add("c", "d", 100, &[], 0);
    let g = e.graph();
    let cands = [cand("a", 0), cand("b", 0), cand("c", 0), cand("d", 0)];
    let r = rank(&g, Some("v"), None, &cands);
    assert_eq!(
        r.iter().map(|x| x.candidate).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(
        r.iter()
            .map(|x| (x.distance, x.score_ppm, x.basis))
            .collect::<Vec<_>>(),
        [
            (Some(1), 1_000_000, Basis::Graph),
            (Some(2), 800_000, Basis::Graph),
            (Some(3), 400_000, Basis::Graph),
            (None, 0, Basis::Fallback),
        ]
    );
    let p = &of(&r, 2).path;
    assert_eq!(
        p.iter().map(|x| x.uri.clone()).collect::<Vec<_>>(),
        [e.uri(0), e.uri(1), e.uri(2)]
    );
    assert_eq!(
        (p[0].from.as_str(), p[2].to.as_str()),
        ("did:plc:v", "did:plc:c")
    );
    assert_eq!(p[1].cid.as_deref(), Some("bafyreitest1"));
    assert_eq!(p[1].created_at_us, NOW);
    assert!(of(&r, 3).path.is_empty(), "four hops is beyond the limit");
    // getTrustPath agrees with the ranking.
    let tp = g.path(&did("v"), &did("c"), None, NOW, &RankOptions::default());
    assert_eq!(
        tp.map(|t| (t.distance, t.score_ppm, t.edges)),
        Some((3, 400_000, p.clone()))
    );
    assert_eq!(
        g.path(&did("v"), &did("d"), None, NOW, &RankOptions::default()),
        None
    );
}

#[test]
fn fewer_hops_first_even_when_weaker() {
    let mut e = Edges::default();
    e.add("v", "p", 10, &[], 0); // direct but weak
    e.add("v", "a", 100, &[], 0);
    e.add("a", "q", 100, &[], 0); // strong, two hops
    e.add("a", "p", 100, &[], 0); // p also has a strong 2-hop path: does not raise its score
    let g = e.graph();
    let r = rank(&g, Some("v"), None, &[cand("q", 0), cand("p", 0)]);
    assert_eq!(
        r.iter()
            .map(|x| (x.candidate, x.distance, x.score_ppm))
            .collect::<Vec<_>>(),
        [(1, Some(1), 100_000), (0, Some(2), 1_000_000)]
    );
    assert_eq!(of(&r, 1).path.len(), 1);
    assert_eq!(of(&r, 1).vouchers.count, 2, "v directly, a at one hop");
}

#[test]
fn cycles_terminate_and_viewer_is_distance_zero() {
    let mut e = Edges::default();
    e.add("v", "a", 100, &[], 0);
    e.add("a", "b", 100, &[], 0);
    e.add("b", "a", 100, &[], 0);
    e.add("b", "v", 100, &[], 0);
    e.add("a", "v", 100, &[], 0);
    let g = e.graph();
    let r = rank(
        &g,
        Some("v"),
        None,
        &[cand("b", 0), cand("v", 0), cand("a", 0)],
    );
    assert_eq!(
        r.iter()
            .map(|x| (x.candidate, x.distance))
            .collect::<Vec<_>>(),
        [(1, Some(0)), (2, Some(1)), (0, Some(2))]
    );
    assert_eq!(of(&r, 1).score_ppm, 1_000_000);
    assert!(of(&r, 1).path.is_empty());
    assert_eq!(
        of(&r, 1).vouchers.count,
        0,
        "no simple path returns to the viewer"
    );
    // b's endorsers: a (1 hop). v→a→b→a is not simple, so b does not vouch for a.
    assert_eq!(of(&r, 0).vouchers.sample, [did("a")]);
    assert_eq!(of(&r, 2).vouchers.sample, [did("v")]);
}

#[test]
fn self_endorsement_never_counts() {
    let mut e = Edges::default();
    e.add("p", "p", 100, &[], 0);
    e.add("v", "v", 100, &[], 0);
    let g = e.graph();
    assert_eq!(g.stats().self_endorsements_dropped, 2);
    let r = rank(&g, Some("v"), None, &[cand("p", 5)]);
    assert_eq!((r[0].distance, r[0].basis), (None, Basis::Fallback));
}

#[test]
fn capability_scope_match_mismatch_unscoped() {
    let mut e = Edges::default();
    e.add("v", "exact", 100, &["sms.send"], 0);
    e.add("v", "prefix", 100, &["sms"], 0);
    e.add("v", "unscoped", 100, &[], 0);
    e.add("v", "other", 100, &["email.send"], 0);
    e.add("v", "narrower", 100, &["sms.send.us"], 0);
    e.add("v", "lookalike", 100, &["smsx"], 0);
    e.add("v", "mixed", 100, &["email.send", "sms"], 0);
    let g = e.graph();
    let names = [
        "exact",
        "prefix",
        "unscoped",
        "other",
        "narrower",
        "lookalike",
        "mixed",
    ];
    let cands: Vec<_> = names.iter().map(|n| cand(n, 0)).collect();
    let r = rank(&g, Some("v"), Some("sms.send"), &cands);
    let score = |i| (of(&r, i).distance, of(&r, i).score_ppm);
    assert_eq!(score(0), (Some(1), 1_000_000));
    assert_eq!(score(1), (Some(1), 1_000_000));
    assert_eq!(score(2), (Some(1), 500_000));
    assert_eq!(score(3), (None, 0));
    assert_eq!(score(4), (None, 0), "sms.send.us does not cover sms.send");
    assert_eq!(score(5), (None, 0));
    assert_eq!(score(6), (Some(1), 1_000_000));
    // With no capability asked, every endorsement counts fully.
    let all = rank(&g, Some("v"), None, &cands);
    assert!(all.iter().all(|x| x.score_ppm == 1_000_000));
    // Scope applies on every hop, not only the last.
    let mut e = Edges::default();
    e.add("v", "a", 100, &["email"], 0);
    e.add("a", "p", 100, &["sms"], 0);
    let g = e.graph();
    assert_eq!(
        rank(&g, Some("v"), Some("sms"), &[cand("p", 0)])[0].distance,
        None
    );
    assert_eq!(
        rank(&g, Some("v"), None, &[cand("p", 0)])[0].distance,
        Some(2)
    );
}

#[test]
fn decay_halves_each_half_life() {
    let mut e = Edges::default();
    e.add("v", "a", 100, &[], YEAR_DAYS);
    e.add("v", "b", 100, &[], 2 * YEAR_DAYS);
    e.add("v", "c", 60, &["x"], 0);
    let g = e.graph();
    let r = rank(
        &g,
        Some("v"),
        Some("x"),
        &[cand("a", 0), cand("b", 0), cand("c", 0)],
    );
    assert_eq!(
        r.iter()
            .map(|x| (x.candidate, x.score_ppm))
            .collect::<Vec<_>>(),
        [(2, 600_000), (0, ppm(0.5 * 0.5)), (1, ppm(0.25 * 0.5))]
    );
    let opts = RankOptions {
        half_life_us: 2 * YEAR_US_,
        ..RankOptions::default()
    };
    let r = g.rank(Some(&did("v")), None, &[cand("a", 0)], NOW, &opts);
    assert_eq!(r[0].score_ppm, ppm(2f64.powf(-0.5)));
}

const YEAR_US_: i64 = guildhall_trust::YEAR_US;

#[test]
fn future_dated_endorsements_do_not_stay_new() {
    let mut e = Edges::default();
    // Ten years ahead: under the old rule brand new (weight 1) for ten years.
    e.add("v", "far", 100, &[], -10 * YEAR_DAYS);
    // A minute ahead: a drifting clock, within the skew.
    e.add("v", "near", 100, &[], 0).created_at_us = NOW + 60_000_000;
    let mut g = e.graph();
    // The same through the overlay.
    let mut later = Edges::default();
    later.list.push(e.list[0].clone());
    later.list[0].uri = e.list[0]
        .uri
        .replace("dev.guildhall.endorsement", "dev.guildhall.other");
    later.list[0].subject = did("far2");
    assert!(g.add(&later.list[0]).is_ok());
    let cands = [cand("far", 0), cand("near", 0), cand("far2", 0)];
    let r = rank(&g, Some("v"), None, &cands);
    assert_eq!(of(&r, 0).distance, None, "refused, not brand new");
    assert_eq!(of(&r, 2).distance, None, "refused through the overlay too");
    assert_eq!(of(&r, 1).score_ppm, 1_000_000, "within the skew: new");
    // From its date on, the far one counts and decays like any other.
    let at = NOW + 10 * YEAR_US_;
    let opts = RankOptions::default();
    let r = g.rank(Some(&did("v")), None, &cands, at + YEAR_US_, &opts);
    assert_eq!(of(&r, 0).score_ppm, ppm(0.5));
}

#[test]
fn expiry_is_exclusive_of_its_instant() {
    let mut e = Edges::default();
    e.add("v", "a", 100, &[], 0).expires_at_us = Some(NOW);
    e.add("v", "b", 100, &[], 0).expires_at_us = Some(NOW + 1);
    let g = e.graph();
    let r = rank(&g, Some("v"), None, &[cand("a", 0), cand("b", 0)]);
    assert_eq!((of(&r, 0).distance, of(&r, 1).distance), (None, Some(1)));
    let later = g.rank(
        Some(&did("v")),
        None,
        &[cand("b", 0)],
        NOW + 1,
        &RankOptions::default(),
    );
    assert_eq!(later[0].distance, None);
}

#[test]
fn pinned_endorsement_lapses_and_returns_with_the_service_cid() {
    let svc = "at://did:plc:p/dev.guildhall.service/main";
    let mut e = Edges::default();
    e.add("v", "p", 100, &[], 0).pinned = Some((svc.into(), "bafyv1".into()));
    let mut g = e.graph();
    let go = |g: &TrustGraph| rank(g, Some("v"), None, &[cand("p", 0)])[0].distance;
    assert_eq!(
        go(&g),
        None,
        "an unknown service version cannot be confirmed"
    );
    assert!(g.set_service_cid(svc, "bafyv1").is_ok());
    assert_eq!(go(&g), Some(1));
    assert!(g.set_service_cid(svc, "bafyv2").is_ok());
    assert_eq!(go(&g), None, "the service changed: the pin lapsed");
    assert!(g.set_service_cid(svc, "bafyv1").is_ok());
    assert_eq!(go(&g), Some(1), "reverted: the pin counts again");
    g.clear_service(svc);
    assert_eq!(go(&g), None);
    assert!(g.set_service_cid(svc, "bafyv1").is_ok());
    // Service versions survive a rebuild.
    let r = g.rebuilt();
    assert!(r.as_ref().is_ok_and(|r| go(r) == Some(1)));
}

#[test]
fn overlay_delete_add_and_rebuild_equal() {
    let mut e = Edges::default();
    for (a, b) in [
        ("v", "a"),
        ("a", "b"),
        ("v", "c"),
        ("c", "b"),
        ("b", "d"),
        ("c", "d"),
        ("d", "e"),
    ] {
        e.add(a, b, 90, &[], 10);
    }
    let mut g = e.graph();
    let cands = [
        cand("a", 0),
        cand("b", 0),
        cand("d", 0),
        cand("e", 0),
        cand("n", 0),
    ];
    let before = rank(&g, Some("v"), None, &cands);
    assert_eq!(of(&before, 2).distance, Some(2));
    // Delete c→b and c→d: d is now 3 hops away; then add v→d directly via the overlay, and a
    // new operator n.
    assert!(g.remove(&e.uri(3)));
    assert!(g.remove(&e.uri(5)));
    let mid = rank(&g, Some("v"), None, &cands);
    assert_eq!(
        (of(&mid, 2).distance, of(&mid, 3).distance),
        (Some(3), None)
    );
    let mut more = Edges { list: Vec::new() };
    more.list = e.list.clone();
    more.add("v", "d", 40, &[], 0);
    more.add("e", "n", 100, &[], 0);
    assert_eq!(g.add(&more.list[7]), Ok(true));
    assert_eq!(g.add(&more.list[8]), Ok(true));
    let live = rank(&g, Some("v"), None, &cands);
    assert_eq!(of(&live, 2).distance, Some(1));
    assert_eq!(of(&live, 2).score_ppm, 400_000);
    assert_eq!(
        of(&live, 4).distance,
        Some(3),
        "v→d→e→n through overlay edges only"
    );
    assert!(g.needs_rebuild());
    let Ok(r) = g.rebuilt() else {
        panic!("rebuild")
    };
    assert_eq!(r.stats().overlay_edges, 0);
    assert_eq!(r.stats().base_edges, 7);
    for viewer in ["v", "a", "c", "d", "zz"] {
        for cap in [None, Some("x")] {
            assert_eq!(
                rank(&g, Some(viewer), cap, &cands),
                rank(&r, Some(viewer), cap, &cands),
                "{viewer}"
            );
        }
    }
    // A rebuilt graph compares equal to building the surviving records from scratch.
    let mut survivors = more.list.clone();
    survivors.remove(5);
    survivors.remove(3);
    let Ok(fresh) = TrustGraph::build(&survivors, &BuildOptions::default()) else {
        panic!()
    };
    assert_eq!(rank(&fresh, Some("v"), None, &cands), live);
}

#[test]
fn vouchers_count_distinct_reachable_endorsers_only() {
    let mut e = Edges::default();
    for x in ["k", "j", "i", "h", "g", "f"] {
        e.add("v", x, 100, &[], 0);
        e.add(x, "p", 50, &[], 0);
        e.add(x, "p", 60, &["sms"], 0); // a second endorsement by the same author
    }
    e.add("stranger", "p", 100, &[], 0); // not reachable from v
    e.add("p", "sock", 100, &[], 0); // reachable only through p itself
    e.add("sock", "p", 100, &[], 0);
    let g = e.graph();
    let r = rank(&g, Some("v"), None, &[cand("p", 0)]);
    assert_eq!(r[0].vouchers.count, 6);
    assert_eq!(r[0].vouchers.sample, ["f", "g", "h", "i", "j"].map(did));
    assert_eq!(
        r[0].score_ppm, 600_000,
        "the stronger of the two parallel edges"
    );
    let opts = RankOptions {
        voucher_sample: 2,
        ..RankOptions::default()
    };
    let r = g.rank(Some(&did("v")), None, &[cand("p", 0)], NOW, &opts);
    assert_eq!(r[0].vouchers.sample, ["f", "g"].map(did));
}

#[test]
fn fallback_anchors_then_quality() {
    let mut e = Edges::default();
    e.add("anchor", "a", 100, &[], 0);
    e.add("a", "b", 50, &[], 0);
    e.add("v", "c", 100, &[], 0);
    let g = e.graph();
    let cands = [
        cand("q1", 300),
        cand("b", 0),
        cand("c", 0),
        cand("q2", 900),
        cand("a", 0),
        cand("anchor", 0),
    ];
    let opts = RankOptions {
        anchors: vec![did("anchor"), did("unknown")],
        ..RankOptions::default()
    };
    let r = g.rank(Some(&did("v")), None, &cands, NOW, &opts);
    assert_eq!(
        r.iter()
            .map(|x| (x.candidate, x.distance, x.basis))
            .collect::<Vec<_>>(),
        [
            (2, Some(1), Basis::Graph),
            (5, Some(0), Basis::Fallback),
            (4, Some(1), Basis::Fallback),
            (1, Some(2), Basis::Fallback),
            (3, None, Basis::Fallback),
            (0, None, Basis::Fallback),
        ]
    );
    assert_eq!(
        of(&r, 1).path.first().map(|x| x.from.clone()),
        Some(did("anchor"))
    );
    // No viewer: anchors, then quality.
    let r = g.rank(None, None, &cands, NOW, &opts);
    assert!(r.iter().all(|x| x.basis == Basis::Fallback));
    assert_eq!(
        r.iter().map(|x| x.candidate).collect::<Vec<_>>(),
        [5, 4, 1, 3, 0, 2]
    );
    // No viewer, no anchors: quality, then operator DID.
    let r = g.rank(None, None, &cands, NOW, &RankOptions::default());
    assert_eq!(
        r.iter().map(|x| x.candidate).collect::<Vec<_>>(),
        [3, 0, 4, 5, 1, 2]
    );
}

#[test]
fn services_of_one_operator_share_its_trust_and_tie_by_uri() {
    let mut e = Edges::default();
    e.add("v", "p", 70, &[], 0);
    let g = e.graph();
    let mut a = cand("p", 0);
    a.service = "at://did:plc:p/dev.guildhall.service/zeta".into();
    let mut b = cand("p", 0);
    b.service = "at://did:plc:p/dev.guildhall.service/alpha".into();
    let r = rank(&g, Some("v"), None, &[a, b]);
    assert_eq!(
        r.iter()
            .map(|x| (x.candidate, x.score_ppm))
            .collect::<Vec<_>>(),
        [(1, 700_000), (0, 700_000)]
    );
}

#[test]
fn equal_weights_tie_on_the_smaller_uri() {
    let mut e = Edges::default();
    e.add("v", "a", 100, &[], 0);
    e.add("v", "b", 100, &[], 0);
    e.add("b", "p", 100, &[], 0);
    e.add("a", "p", 100, &[], 0); // larger TID, but at://did:plc:a/... sorts first
    let g = e.graph();
    let r = rank(&g, Some("v"), None, &[cand("p", 0)]);
    assert_eq!(
        r[0].path.iter().map(|x| x.uri.clone()).collect::<Vec<_>>(),
        [e.uri(0), e.uri(3)]
    );
}

#[test]
fn unknown_viewer_and_non_tid_record_keys() {
    let mut e = Edges::default();
    e.add("v", "p", 100, &[], 0).uri = "at://did:plc:v/dev.guildhall.endorsement/self".into();
    let mut g = e.graph();
    let r = rank(&g, Some("nobody"), None, &[cand("p", 1)]);
    assert_eq!(r[0].basis, Basis::Fallback);
    let r = rank(&g, Some("v"), None, &[cand("p", 1)]);
    assert_eq!(
        r[0].path[0].uri,
        "at://did:plc:v/dev.guildhall.endorsement/self"
    );
    assert!(g.remove("at://did:plc:v/dev.guildhall.endorsement/self"));
    assert_eq!(rank(&g, Some("v"), None, &[cand("p", 1)])[0].distance, None);
}

#[test]
fn deterministic_under_shuffled_input() {
    let mut rng = Rng(7);
    let mut e = Edges::default();
    let caps: [&[&str]; 4] = [&[], &["sms"], &["sms.send"], &["email"]];
    for _ in 0..600 {
        let a = format!("n{}", rng.below(80));
        let b = format!("n{}", rng.below(80));
        // Few distinct strengths and ages: many exact ties, which must still be decided the
        // same way.
        let s = [50, 100][rng.below(2) as usize];
        e.add(&a, &b, s, caps[rng.below(4) as usize], 0);
    }
    let cands: Vec<_> = (0..80)
        .map(|i| cand(&format!("n{i}"), (i * 7919 % 1000) as u32))
        .collect();
    let g1 = e.graph();
    let mut shuffled = e.list.clone();
    rng.shuffle(&mut shuffled);
    let Ok(g2) = TrustGraph::build(&shuffled, &BuildOptions::default()) else {
        panic!()
    };
    let opts = RankOptions {
        anchors: vec![did("n3")],
        ..RankOptions::default()
    };
    for v in ["n0", "n1", "n2", "n40"] {
        for cap in [None, Some("sms.send")] {
            let a = g1.rank(Some(&did(v)), cap, &cands, NOW, &opts);
            let b = g2.rank(Some(&did(v)), cap, &cands, NOW, &opts);
            assert_eq!(a, b);
            assert!(
                a.iter().any(|x| x.path.len() >= 2),
                "the graph is connected enough to matter"
            );
        }
    }
}

#[test]
fn several_capabilities_weigh_by_best_match_in_any_order() {
    let mut e = Edges::default();
    e.add("v", "mail", 80, &["email"], 0);
    e.add("v", "text", 60, &["sms.send"], 0);
    e.add("v", "any", 100, &[], 0);
    let g = e.graph();
    let cands = [cand("mail", 0), cand("text", 0), cand("any", 0)];
    let scores = |q: &[&str]| -> Vec<(usize, u32)> {
        g.rank(Some(&did("v")), q, &cands, NOW, &RankOptions::default())
            .into_iter()
            .map(|x| (x.candidate, x.score_ppm))
            .collect()
    };
    let a = scores(&["sms.send", "email"]);
    let b = scores(&["email", "sms.send"]);
    assert_eq!(a, b, "order of the queried capabilities does not matter");
    // Each scoped endorsement counts fully for the capability it names; unscoped, half.
    assert_eq!(a, [(0, 800_000), (1, 600_000), (2, 500_000)]);
}

#[test]
fn with_no_capability_queried_scope_is_weighed_against_the_service() {
    // The viewer endorses op for email only; op also runs an sms service. Nothing queried:
    // the email service is vouched for, the sms one is not (it was, fully, before).
    let mut e = Edges::default();
    e.add("v", "op", 100, &["email"], 0);
    e.add("v", "friend", 100, &[], 0);
    e.add("friend", "op", 50, &[], 0);
    let mut g = e.graph();
    let svc = |name: &str| format!("at://{}/dev.guildhall.service/{name}", did("op"));
    let ok = g.set_service_capabilities(&svc("mail"), &["email"]).is_ok()
        && g.set_service_capabilities(&svc("sms"), &["sms.send"])
            .is_ok();
    assert!(ok);
    let mk = |name: &str| guildhall_trust::CandidateProvider {
        operator: did("op"),
        service: svc(name),
        quality_ppm: 0,
    };
    let cands = [mk("mail"), mk("sms"), mk("unknown")];
    let r = rank(&g, Some("v"), None, &cands);
    // Email: the direct, email-scoped endorsement.
    assert_eq!(
        (of(&r, 0).distance, of(&r, 0).score_ppm),
        (Some(1), 1_000_000)
    );
    // Sms: the scoped endorsement does not cover it; only the unscoped path via friend.
    assert_eq!(
        (of(&r, 1).distance, of(&r, 1).score_ppm),
        (Some(2), 500_000)
    );
    assert_eq!(of(&r, 1).vouchers.sample, [did("friend")]);
    // A service whose capabilities the graph does not know is weighed as before.
    assert_eq!(
        (of(&r, 2).distance, of(&r, 2).score_ppm),
        (Some(1), 1_000_000)
    );
    // The same through a rebuild, and forgotten with the service.
    let Ok(mut h) = g.rebuilt() else {
        panic!("rebuild")
    };
    assert_eq!(rank(&h, Some("v"), None, &cands), r);
    h.clear_service(&svc("sms"));
    assert_eq!(of(&rank(&h, Some("v"), None, &cands), 1).distance, Some(1));
}

/// The viewer endorses ten hubs (h0 most trusted); each hub endorses 10,000 fillers, one
/// provider q directly and one middleman m leading to provider p. `to_m` false leaves the
/// hub → m edges of hubs 2..10 out.
fn hubs(to_m: bool) -> Edges {
    let mut e = Edges::default();
    for i in 0..10 {
        let h = format!("h{i}");
        e.add("viewer", &h, 100 - i, &[], 0);
        e.add(&h, &format!("q{i}"), 90, &[], 0);
        if to_m || i < 2 {
            e.add(&h, &format!("m{i}"), 90, &[], 0);
        }
        e.add(&format!("m{i}"), &format!("p{i}"), 90, &[], 0);
        for j in 0..10_000 {
            e.add(&h, &format!("f{i}x{j}"), 50, &[], 0);
        }
    }
    e
}

#[test]
fn a_huge_frontier_is_cut_and_exact_for_what_it_covers() {
    let g = hubs(true).graph();
    let cands: Vec<_> = (0..10)
        .flat_map(|i| [cand(&format!("p{i}"), 0), cand(&format!("q{i}"), 0)])
        .collect();
    let (v, cap) = (did("viewer"), None::<&str>);
    // Hubs have 10,002 out-edges each: 25,000 edges of budget expand the two most trusted.
    let budget = RankOptions {
        frontier_budget: 25_000,
        ..RankOptions::default()
    };
    let prepared = g.prepare(&cands);
    let cut = g.rank_prepared(Some(&v), cap, &cands, &prepared, NOW, &budget);
    assert!(cut.frontier_cut());
    let cut = cut.into_vec();
    // Every hub still ends paths: each q at two hops. Only the two expanded hubs lead on to
    // their p at three hops; the other p are not reached.
    for i in 0..10 {
        assert_eq!(of(&cut, 2 * i + 1).distance, Some(2), "q{i}");
        let p = of(&cut, 2 * i).distance;
        assert_eq!(p, (i < 2).then_some(3), "p{i}");
    }
    // Exact for what it covers: the same answer as an uncut ranking of the graph without
    // the unexpanded hubs' onward edges.
    let reduced = hubs(false).graph();
    let full = reduced.rank_prepared(
        Some(&v),
        cap,
        &cands,
        &reduced.prepare(&cands),
        NOW,
        &RankOptions::default(),
    );
    assert!(!full.frontier_cut());
    // (Record keys differ between the two graphs: compare everything but them.)
    let strip = |r: Vec<guildhall_trust::Ranked>| -> Vec<_> {
        r.into_iter()
            .map(|x| {
                let hops: Vec<(String, String)> = x
                    .path
                    .iter()
                    .map(|e| (e.from.clone(), e.to.clone()))
                    .collect();
                (
                    x.candidate,
                    x.distance,
                    x.score_ppm,
                    x.vouchers,
                    x.basis,
                    hops,
                )
            })
            .collect()
    };
    assert_eq!(strip(full.into_vec()), strip(cut));
    // Within the default budget nothing is cut and every p is reached.
    let all = g.rank_prepared(
        Some(&v),
        cap,
        &cands,
        &prepared,
        NOW,
        &RankOptions::default(),
    );
    assert!(!all.frontier_cut());
    assert!(all.into_vec().iter().all(|x| x.distance.is_some()));
}

#[test]
fn remove_repo_drops_what_the_repo_wrote_only() {
    let mut e = Edges::default();
    e.add("v", "a", 100, &[], 0);
    e.add("a", "b", 100, &[], 0);
    e.add("c", "a", 100, &[], 0);
    let mut g = e.graph();
    // One of a's endorsements through the overlay too.
    let mut more = e.clone();
    more.add("a", "d", 100, &[], 0);
    assert!(g.add(&more.list[3]).is_ok());
    let svc = format!("at://{}/dev.guildhall.service/x", did("a"));
    assert!(g.set_service_capabilities(&svc, &["sms"]).is_ok());
    assert_eq!(g.remove_repo(&did("a")), 2);
    let live: Vec<String> = g.live_endorsements().map(|x| x.uri).collect();
    assert_eq!(
        live,
        [e.uri(0), e.uri(2)],
        "a's own endorsements went, those naming a stay"
    );
    // Its services' capabilities are forgotten: a scoped endorsement of a counts again
    // for x as for any service the graph knows nothing of.
    let mut h = Edges::default();
    h.add("v", "a", 100, &["email"], 0);
    let mut g2 = h.graph();
    assert!(g2.set_service_capabilities(&svc, &["sms"]).is_ok());
    let c = [guildhall_trust::CandidateProvider {
        operator: did("a"),
        service: svc.clone(),
        quality_ppm: 0,
    }];
    assert_eq!(rank(&g2, Some("v"), None, &c)[0].distance, None);
    g2.remove_repo(&did("a"));
    assert_eq!(rank(&g2, Some("v"), None, &c)[0].distance, Some(1));
}
