//! Fetches of URLs from other people's documents, against the reference PDS and PLC: a DID
//! document naming a PDS on loopback (as the peer's do) is refused unless the development
//! flag allows private addresses, and so is a `did:web` on a loopback host; the configured
//! PLC directory is fetched either way.

use std::sync::Arc;

use guildhall_ingest::identity::{ResolveError, Resolver};
use guildhall_ingest::metrics::Metrics;
use guildhall_ingest::net::NetError;
use guildhall_ingest::repo::{FetchError, RepoFetcher};
use guildhall_proto::syntax::Did;
use guildhall_testkit::{Peer, PeerOptions};
use url::Url;

fn resolver(peer: &Peer, allow_private: bool) -> Arc<Resolver> {
    crate::harness::resolver(&peer.info().plc_url, None, allow_private)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_urls_may_not_reach_private_addresses() {
    let peer = Peer::start(PeerOptions {
        accounts: 1,
        ..PeerOptions::default()
    })
    .await
    .expect("peer");
    let alice = Did::parse(&peer.accounts()[0].did).expect("did");

    // Guarded: the PLC (configured) answers, the PDS its document names (loopback) is refused
    // before any request is sent.
    let guarded = resolver(&peer, false);
    let id = guarded
        .resolve(&alice)
        .await
        .expect("the configured PLC is reachable");
    assert!(
        id.pds
            .as_deref()
            .is_some_and(|p| p.contains("127.0.0.1") || p.contains("localhost"))
    );
    let fetcher = RepoFetcher::new(guarded.clone(), Arc::new(Metrics::default()), 64 << 20);
    match fetcher.download(&alice).await {
        Err(FetchError::Refused(NetError::PrivateAddress { .. })) => {}
        other => panic!("getRepo from a loopback PDS was not refused: {other:?}"),
    }

    // A did:web whose host is this machine is refused as well.
    let port = Url::parse(&peer.pds().url)
        .expect("url")
        .port()
        .expect("port");
    let web = Did::parse(&format!("did:web:localhost%3A{port}")).expect("did:web");
    match guarded.resolve(&web).await {
        Err(ResolveError::Fetch { reason, .. }) => {
            assert!(reason.contains("refusing"), "{reason}")
        }
        other => panic!("did:web on loopback was not refused: {other:?}"),
    }

    // The development flag lifts the guard: the same export downloads.
    let open = resolver(&peer, true);
    let fetcher = RepoFetcher::new(open, Arc::new(Metrics::default()), 64 << 20);
    let car = fetcher
        .download(&alice)
        .await
        .expect("getRepo with the flag");
    assert!(!car.is_empty());
}
