//! Regroups a batch's ordered changes into set-wise steps with the same end state (pure).
//!
//! A batch is specified as "apply these changes in order". Written that way, every delete,
//! status change or repo-state write between two upserts costs its own statements and breaks
//! the multi-row runs. Most changes only set the row(s) of one key (a record URI, a repo DID,
//! an account DID), so between two changes that touch many keys at once — clearing a repo
//! before a resync, deleting an account — only the last change per key matters, and changes to
//! different keys commute. [`steps`] keeps those many-key changes as ordered barriers and
//! reduces everything between them to its net effect per key, which the store then writes
//! with a constant number of statements per table.
//!
//! The store's property test checks that applying [`steps`] leaves the same database as
//! applying each change as its own batch.

use std::collections::{HashMap, HashSet};

use crate::types::{Change, IndexRow, OperatorStatus, RecordRow, RejectionRow, RepoRow};

/// The net effect of the changes between two barriers. Each record URI appears in at most one
/// of `deletes` and `upserts`, each DID at most once per list, so the lists can be written in
/// any order.
#[derive(Debug, Default)]
pub(crate) struct Group<'a> {
    /// Record URIs whose last change deletes them.
    pub deletes: Vec<&'a str>,
    /// The last upsert of every other record URI, in the order those upserts came.
    pub upserts: Vec<(&'a RecordRow, Option<&'a IndexRow>)>,
    /// The last sync state per repo.
    pub repos: Vec<&'a RepoRow>,
    /// The last account status per DID (never `Deleted`: that is a barrier).
    pub accounts: Vec<(&'a str, OperatorStatus)>,
    /// The last handle per DID, with whether it verified.
    pub identities: Vec<(&'a str, Option<&'a str>, bool)>,
    /// Every rejection (the table deduplicates replays itself).
    pub rejects: Vec<&'a RejectionRow>,
    /// DIDs whose backfill finished, once each.
    pub backfilled: Vec<&'a str>,
}

impl Group<'_> {
    fn is_empty(&self) -> bool {
        self.deletes.is_empty()
            && self.upserts.is_empty()
            && self.repos.is_empty()
            && self.accounts.is_empty()
            && self.identities.is_empty()
            && self.rejects.is_empty()
            && self.backfilled.is_empty()
    }
}

/// One step of a batch's write plan, applied in order.
#[derive(Debug)]
pub(crate) enum Step<'a> {
    /// Per-key changes reduced to their net effect.
    Group(Group<'a>),
    /// `DeleteRepoRecords`: every record of the repo goes.
    ClearRepo(&'a str),
    /// `Account { status: Deleted }`: the status is set and the account's records, repo
    /// state and backfill entry go.
    DeleteAccount(&'a str),
}

/// Splits `changes` at the changes that touch many keys and reduces each run in between.
pub(crate) fn steps(changes: &[Change]) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, change) in changes.iter().enumerate() {
        let barrier = match change {
            Change::DeleteRepoRecords { did } => Step::ClearRepo(did),
            Change::Account {
                did,
                status: OperatorStatus::Deleted,
            } => Step::DeleteAccount(did),
            _ => continue,
        };
        push_group(&mut out, &changes[start..i]);
        out.push(barrier);
        start = i + 1;
    }
    push_group(&mut out, &changes[start..]);
    out
}

fn push_group<'a>(out: &mut Vec<Step<'a>>, run: &'a [Change]) {
    let g = reduce(run);
    if !g.is_empty() {
        out.push(Step::Group(g));
    }
}

/// Net effect of a run without barriers: the last change per key wins.
fn reduce(run: &[Change]) -> Group<'_> {
    let mut last_record: HashMap<&str, usize> = HashMap::new();
    let mut last_repo: HashMap<&str, usize> = HashMap::new();
    let mut last_account: HashMap<&str, usize> = HashMap::new();
    let mut last_identity: HashMap<&str, usize> = HashMap::new();
    for (i, change) in run.iter().enumerate() {
        let (map, key) = match change {
            Change::UpsertRecord(r, _) => (&mut last_record, r.uri.as_str()),
            Change::DeleteRecord { uri } => (&mut last_record, uri.as_str()),
            Change::SetRepo(r) => (&mut last_repo, r.did.as_str()),
            Change::Account { did, .. } => (&mut last_account, did.as_str()),
            Change::Identity { did, .. } => (&mut last_identity, did.as_str()),
            Change::DeleteRepoRecords { .. } | Change::Reject(_) | Change::BackfillDone { .. } => {
                continue;
            }
        };
        map.insert(key, i);
    }
    let is_last = |map: &HashMap<&str, usize>, key: &str, i: usize| map.get(key) == Some(&i);
    let mut g = Group::default();
    let mut backfilled: HashSet<&str> = HashSet::new();
    for (i, change) in run.iter().enumerate() {
        match change {
            Change::UpsertRecord(r, idx) if is_last(&last_record, &r.uri, i) => {
                g.upserts.push((r, idx.as_ref()));
            }
            Change::DeleteRecord { uri } if is_last(&last_record, uri, i) => g.deletes.push(uri),
            Change::SetRepo(r) if is_last(&last_repo, &r.did, i) => g.repos.push(r),
            Change::Account { did, status } if is_last(&last_account, did, i) => {
                g.accounts.push((did, *status));
            }
            Change::Identity {
                did,
                handle,
                verified,
            } if is_last(&last_identity, did, i) => {
                g.identities.push((did, handle.as_deref(), *verified));
            }
            Change::Reject(r) => g.rejects.push(r),
            Change::BackfillDone { did } if backfilled.insert(did) => g.backfilled.push(did),
            _ => {}
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RepoStatus;

    fn upsert(uri: &str, cid: &str) -> Change {
        Change::UpsertRecord(
            RecordRow {
                uri: uri.into(),
                did: "did:plc:a".into(),
                collection: "dev.guildhall.service".into(),
                rkey: uri.rsplit('/').next().unwrap_or_default().into(),
                cid: cid.into(),
                bytes: Vec::new(),
            },
            None,
        )
    }

    fn delete(uri: &str) -> Change {
        Change::DeleteRecord { uri: uri.into() }
    }

    fn repo(did: &str, rev: &str) -> Change {
        Change::SetRepo(RepoRow {
            did: did.into(),
            rev: Some(rev.into()),
            data_cid: None,
            status: RepoStatus::Synced,
        })
    }

    fn group<'s, 'a>(step: &'s Step<'a>) -> &'s Group<'a> {
        match step {
            Step::Group(g) => g,
            other => panic!("expected a group, got {other:?}"),
        }
    }

    #[test]
    fn last_change_per_key_wins() {
        let changes = vec![
            upsert("at://a/c/1", "x1"),
            upsert("at://a/c/2", "x2"),
            delete("at://a/c/1"),
            repo("did:plc:a", "r1"),
            upsert("at://a/c/3", "x3"),
            delete("at://a/c/2"),
            upsert("at://a/c/2", "y2"),
            repo("did:plc:a", "r2"),
            Change::BackfillDone {
                did: "did:plc:a".into(),
            },
            Change::BackfillDone {
                did: "did:plc:a".into(),
            },
        ];
        let steps = steps(&changes);
        assert_eq!(steps.len(), 1);
        let g = group(&steps[0]);
        assert_eq!(g.deletes, ["at://a/c/1"]);
        let upserts: Vec<(&str, &str)> = g
            .upserts
            .iter()
            .map(|(r, _)| (r.uri.as_str(), r.cid.as_str()))
            .collect();
        assert_eq!(upserts, [("at://a/c/3", "x3"), ("at://a/c/2", "y2")]);
        assert_eq!(g.repos.len(), 1);
        assert_eq!(g.repos[0].rev.as_deref(), Some("r2"));
        assert_eq!(g.backfilled, ["did:plc:a"]);
    }

    #[test]
    fn many_key_changes_split_the_batch_in_order() {
        let changes = vec![
            upsert("at://a/c/1", "x1"),
            Change::DeleteRepoRecords {
                did: "did:plc:a".into(),
            },
            upsert("at://a/c/1", "x2"),
            Change::Account {
                did: "did:plc:a".into(),
                status: OperatorStatus::Deleted,
            },
            Change::Account {
                did: "did:plc:b".into(),
                status: OperatorStatus::Takendown,
            },
        ];
        let steps = steps(&changes);
        assert_eq!(steps.len(), 5, "{steps:?}");
        assert_eq!(group(&steps[0]).upserts[0].0.cid, "x1");
        assert!(matches!(steps[1], Step::ClearRepo("did:plc:a")));
        assert_eq!(group(&steps[2]).upserts[0].0.cid, "x2");
        assert!(matches!(steps[3], Step::DeleteAccount("did:plc:a")));
        assert_eq!(
            group(&steps[4]).accounts,
            [("did:plc:b", OperatorStatus::Takendown)]
        );
    }

    #[test]
    fn empty_runs_make_no_steps() {
        assert!(steps(&[]).is_empty());
        let only = [Change::DeleteRepoRecords {
            did: "did:plc:a".into(),
        }];
        assert!(matches!(steps(&only)[..], [Step::ClearRepo("did:plc:a")]));
    }
}
