//! The rev compare-and-set that keeps a repo from rolling back (pure).
//!
//! A repo's changes reach the store as a *unit*: its record changes, then the `SetRepo` that
//! names the rev they bring the repo to (a live commit, or a whole resync or backfill with its
//! `DeleteRepoRecords` first). A unit whose rev is older than the one recorded — a resync
//! answered by a lagging or hostile host, a `guildhall backfill` that fetched before `serve`
//! applied a newer commit — would bring back records the newer commit removed (a revoked
//! endorsement). [`refuse_stale`] drops such units whole, against the revs the store holds
//! inside the batch's own transaction, so the check and the write cannot be interleaved.
//!
//! Invariant: after a batch commits, no repo's recorded rev is lower than before it, and no
//! record change of a refused unit was written.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::types::{Change, RepoRow};

/// A batch with its stale units taken out.
#[derive(Debug)]
pub(crate) struct Guarded<'a> {
    /// The changes to write: the batch itself when nothing was refused.
    pub changes: Cow<'a, [Change]>,
    /// `(did, refused rev, recorded rev)` of every unit refused.
    pub refused: Vec<(String, String, String)>,
}

/// The repo a change belongs to, for the changes that are part of a rev-bearing unit.
fn unit_did(change: &Change) -> Option<&str> {
    match change {
        Change::UpsertRecord(r, _) => Some(r.did.as_str()),
        Change::DeleteRecord { uri } => uri.strip_prefix("at://")?.split('/').next(),
        Change::DeleteRepoRecords { did } | Change::BackfillDone { did } => Some(did),
        Change::SetRepo(r) => Some(r.did.as_str()),
        // Account status and handles are not versioned by the repo's rev; rejections are a
        // log. None of them is rolled back by an old snapshot.
        Change::Account { .. } | Change::Identity { .. } | Change::Reject(_) => None,
    }
}

/// The DIDs whose recorded rev [`refuse_stale`] needs: every repo a `SetRepo` names.
pub(crate) fn dids_to_check(changes: &[Change]) -> Vec<&str> {
    let mut dids: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::SetRepo(r) => Some(r.did.as_str()),
            _ => None,
        })
        .collect();
    dids.sort_unstable();
    dids.dedup();
    dids
}

/// Drops every unit whose `SetRepo` rev is lower than the repo's current rev (the recorded
/// one, or the one an earlier unit of this batch set), and keeps the recorded rev on a
/// `SetRepo` that carries none (a repo marked desynchronized keeps its floor). Revs are TIDs,
/// whose string order is their time order. A unit at the same rev is kept: replaying a
/// snapshot of the state we hold changes nothing.
pub(crate) fn refuse_stale<'a>(
    changes: &'a [Change],
    recorded: &HashMap<String, Option<String>>,
) -> Guarded<'a> {
    let mut current: HashMap<&str, Option<&str>> = recorded
        .iter()
        .map(|(d, r)| (d.as_str(), r.as_deref()))
        .collect();
    // Indices of each repo's changes since its last SetRepo.
    let mut open: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut drop = vec![false; changes.len()];
    let mut rewrite: Vec<(usize, String)> = Vec::new();
    let mut refused = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        let Some(did) = unit_did(change) else {
            continue;
        };
        let Change::SetRepo(row) = change else {
            open.entry(did).or_default().push(i);
            continue;
        };
        let unit = open.remove(did).unwrap_or_default();
        let held = current.get(did).copied().flatten();
        match (row.rev.as_deref(), held) {
            (Some(new), Some(old)) if new < old => {
                for j in unit {
                    drop[j] = true;
                }
                drop[i] = true;
                refused.push((did.to_owned(), new.to_owned(), old.to_owned()));
            }
            (Some(new), _) => {
                current.insert(did, Some(new));
            }
            (None, Some(old)) => rewrite.push((i, old.to_owned())),
            (None, None) => {}
        }
    }
    if refused.is_empty() && rewrite.is_empty() {
        return Guarded {
            changes: Cow::Borrowed(changes),
            refused,
        };
    }
    let mut out: Vec<Change> = Vec::with_capacity(changes.len());
    let mut rewrite = rewrite.into_iter().peekable();
    for (i, change) in changes.iter().enumerate() {
        if rewrite.peek().is_some_and(|(j, _)| *j == i)
            && let (Some((_, rev)), Change::SetRepo(row)) = (rewrite.next(), change)
        {
            out.push(Change::SetRepo(RepoRow {
                rev: Some(rev),
                ..row.clone()
            }));
            continue;
        }
        if !drop[i] {
            out.push(change.clone());
        }
    }
    Guarded {
        changes: Cow::Owned(out),
        refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{RecordRow, RepoStatus};

    fn record(did: &str, rkey: &str) -> Change {
        Change::UpsertRecord(
            RecordRow {
                uri: format!("at://{did}/dev.guildhall.endorsement/{rkey}"),
                did: did.to_owned(),
                collection: "dev.guildhall.endorsement".to_owned(),
                rkey: rkey.to_owned(),
                cid: "bafy".to_owned(),
                bytes: Vec::new(),
            },
            None,
        )
    }

    fn set(did: &str, rev: Option<&str>) -> Change {
        Change::SetRepo(RepoRow {
            did: did.to_owned(),
            rev: rev.map(str::to_owned),
            data_cid: None,
            status: RepoStatus::Synced,
        })
    }

    fn recorded(pairs: &[(&str, &str)]) -> HashMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(d, r)| ((*d).to_owned(), Some((*r).to_owned())))
            .collect()
    }

    #[test]
    fn an_older_snapshot_is_dropped_whole_and_others_stay() {
        let changes = vec![
            Change::DeleteRepoRecords {
                did: "did:a".into(),
            },
            record("did:a", "1"),
            set("did:a", Some("3kaaaaaaaaaa2")),
            Change::BackfillDone {
                did: "did:a".into(),
            },
            record("did:b", "1"),
            set("did:b", Some("3kaaaaaaaaaa5")),
        ];
        let g = refuse_stale(
            &changes,
            &recorded(&[("did:a", "3kaaaaaaaaaa4"), ("did:b", "3kaaaaaaaaaa4")]),
        );
        assert_eq!(g.refused.len(), 1);
        assert_eq!(g.refused[0].0, "did:a");
        // BackfillDone follows the SetRepo: it is not part of the refused unit (it only says
        // the repo was looked at).
        assert_eq!(&*g.changes, &changes[3..]);
    }

    #[test]
    fn newer_and_equal_revs_pass_untouched() {
        let changes = vec![record("did:a", "1"), set("did:a", Some("3kaaaaaaaaaa4"))];
        let g = refuse_stale(&changes, &recorded(&[("did:a", "3kaaaaaaaaaa4")]));
        assert!(g.refused.is_empty());
        assert!(matches!(g.changes, Cow::Borrowed(_)));
        let g = refuse_stale(&changes, &HashMap::new());
        assert!(matches!(g.changes, Cow::Borrowed(_)));
    }

    #[test]
    fn a_unit_is_checked_against_the_rev_an_earlier_unit_of_the_batch_set() {
        let changes = vec![
            record("did:a", "2"),
            set("did:a", Some("3kaaaaaaaaaa6")),
            record("did:a", "1"),
            set("did:a", Some("3kaaaaaaaaaa5")),
        ];
        let g = refuse_stale(&changes, &HashMap::new());
        assert_eq!(&*g.changes, &changes[..2]);
    }

    #[test]
    fn a_set_repo_without_rev_keeps_the_recorded_floor() {
        let changes = vec![set("did:a", None)];
        let g = refuse_stale(&changes, &recorded(&[("did:a", "3kaaaaaaaaaa4")]));
        assert_eq!(&*g.changes, &[set("did:a", Some("3kaaaaaaaaaa4"))]);
    }
}
