//! The sybil scenario: one compromised endorser reachable from the viewer vouches for 1,000
//! sybil operators offering the same capability.

use guildhall_trust::{Basis, CandidateProvider, RankOptions};

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
            sybil_window: 0,
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
    // The remaining three slots go to unranked (fallback) providers, the excess sybils right
    // below the window in their original order.
    assert!(r[7..10].iter().all(|x| x.basis == Basis::Fallback));
    let demoted: Vec<usize> = r[10..1008].iter().map(|x| x.candidate).collect();
    let expect: Vec<usize> = uncapped
        .iter()
        .map(|x| x.candidate)
        .filter(|&i| is_sybil(i))
        .skip(2)
        .collect();
    assert_eq!(demoted, expect);
    assert!(r[1008..].iter().all(|x| x.basis == Basis::Fallback));
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
