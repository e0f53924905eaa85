//! The indexer's resync schedule reads: repos not in sync, paged in DID order, and counted.

use guildhall_store::*;

use crate::harness::{Ctx, both};

both!(unsynced_repos_are_listed_and_counted);

fn repo(did: &str, status: RepoStatus) -> Change {
    Change::SetRepo(RepoRow {
        did: did.to_owned(),
        rev: Some("3l2aaaaaaaa22".to_owned()),
        data_cid: None,
        status,
    })
}

async fn unsynced_repos_are_listed_and_counted(ctx: Ctx) {
    let store = ctx.store;
    assert_eq!(store.unsynced_count().await.expect("count"), 0);
    assert!(store.unsynced_repos("", 10).await.expect("list").is_empty());
    store
        .apply(&Batch {
            cursors: Vec::new(),
            changes: vec![
                repo("did:plc:a", RepoStatus::Synced),
                repo("did:plc:b", RepoStatus::Desynchronized),
                repo("did:plc:c", RepoStatus::Resyncing),
                repo("did:plc:d", RepoStatus::Desynchronized),
                repo("did:plc:e", RepoStatus::Synced),
            ],
        })
        .await
        .expect("apply");
    assert_eq!(store.unsynced_count().await.expect("count"), 3);
    let first = store.unsynced_repos("", 2).await.expect("page");
    assert_eq!(first, vec!["did:plc:b", "did:plc:c"]);
    let rest = store.unsynced_repos(&first[1], 2).await.expect("page");
    assert_eq!(rest, vec!["did:plc:d"]);
    // Synced again: no longer listed.
    store
        .apply(&Batch {
            cursors: Vec::new(),
            changes: vec![repo("did:plc:c", RepoStatus::Synced)],
        })
        .await
        .expect("apply");
    assert_eq!(
        store.unsynced_repos("", 10).await.expect("list"),
        vec!["did:plc:b", "did:plc:d"]
    );
    assert_eq!(store.unsynced_count().await.expect("count"), 2);
}
