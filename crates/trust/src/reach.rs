//! Reach: the operators within a few hops of some seeds, nearest first, for callers that must
//! not lose them (the search candidate set).

use std::collections::HashSet;

use crate::graph::TrustGraph;

impl TrustGraph {
    /// DIDs of the operators at most `hops` endorsements away from any of `seeds` (the seeds
    /// included when known), breadth first, at most `budget` of them; `true` when the budget
    /// cut the walk short. Every stored edge counts, whatever its weight now (expired,
    /// scoped elsewhere, removed but not yet compacted): a superset of what a ranking
    /// reaches, which is what a caller keeping candidates needs.
    pub fn reach(&self, seeds: &[&str], hops: u8, budget: usize) -> (Vec<String>, bool) {
        let mut seen: HashSet<u32> = HashSet::new();
        let mut order: Vec<u32> = Vec::new();
        for s in seeds {
            if let Some(n) = self.node(s)
                && seen.insert(n)
            {
                order.push(n);
            }
        }
        let mut cut = order.len() > budget;
        order.truncate(budget);
        let mut level = 0..order.len();
        for _ in 0..hops {
            if cut || level.is_empty() {
                break;
            }
            let start = order.len();
            for i in level.clone() {
                let u = order[i];
                self.for_each_out(u, |v, _| {
                    if order.len() < budget {
                        if seen.insert(v) {
                            order.push(v);
                        }
                    } else if !seen.contains(&v) {
                        cut = true;
                    }
                });
            }
            level = start..order.len();
        }
        (order.iter().map(|&n| self.did(n).to_owned()).collect(), cut)
    }
}

#[cfg(test)]
mod tests {
    use crate::{BuildOptions, Endorsement, TrustGraph};

    fn e(author: &str, n: u8, subject: &str) -> Endorsement {
        Endorsement {
            uri: format!("at://{author}/dev.guildhall.endorsement/3kaaaaaaaaa{n}"),
            cid: format!("bafy-{n}"),
            author: author.into(),
            subject: subject.into(),
            strength: 50,
            capabilities: vec![],
            created_at_us: 0,
            expires_at_us: None,
            pinned: None,
        }
    }

    #[test]
    fn nearest_first_within_hops_and_budget() {
        // v → a → b → c → d; x → v (not out of v).
        let g = TrustGraph::build(
            [
                e("did:plc:v", 2, "did:plc:a"),
                e("did:plc:a", 3, "did:plc:b"),
                e("did:plc:b", 4, "did:plc:c"),
                e("did:plc:c", 5, "did:plc:d"),
                e("did:plc:x", 6, "did:plc:v"),
            ],
            &BuildOptions::default(),
        )
        .expect("graph");
        let (r, cut) = g.reach(&["did:plc:v"], 3, 100);
        assert_eq!(r, ["did:plc:v", "did:plc:a", "did:plc:b", "did:plc:c"]);
        assert!(!cut);
        let (r, cut) = g.reach(&["did:plc:v"], 3, 2);
        assert_eq!(r, ["did:plc:v", "did:plc:a"]);
        assert!(cut);
        let (r, _) = g.reach(&["did:plc:nobody"], 3, 100);
        assert!(r.is_empty());
    }
}
