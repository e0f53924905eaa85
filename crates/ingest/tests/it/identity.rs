//! The resolver against a PLC-shaped server: did:plc documents by `GET <plc>/<did>`, handles
//! checked both ways (through an XRPC resolver, or DNS TXT records), unknown DIDs reported as
//! such.

use std::collections::BTreeMap;

use guildhall_ingest::identity::{ResolveError, Resolver, ResolverConfig};
use guildhall_proto::syntax::{Did, Handle};
use guildhall_testkit::dns::TxtServer;
use url::Url;

use crate::forged::Account;
use crate::net::Net;

fn resolver(net: &Net) -> Resolver {
    let base = Url::parse(&net.http).expect("url");
    Resolver::new(ResolverConfig {
        plc: base.clone(),
        handle_resolver: Some(base),
        dns: None,
        capacity: 16,
        timeout: std::time::Duration::from_secs(5),
        policy: guildhall_ingest::net::FetchPolicy {
            allow_private: true,
        },
    })
    .expect("resolver")
}

#[tokio::test]
async fn resolves_did_plc_from_the_directory() {
    let net = Net::start().await.expect("servers");
    let alice = Account::new("alice", 1);
    net.add_account(alice.did.as_str(), &alice.handle, &alice.key());
    let r = resolver(&net);

    let id = r.resolve(&alice.did).await.expect("resolves");
    assert_eq!(id.key, alice.key());
    assert_eq!(id.pds.as_deref(), Some(net.http.trim_end_matches('/')));
    let handle = Handle::parse(&alice.handle).expect("handle");
    assert_eq!(id.declared_handle.as_ref(), Some(&handle));
    assert!(r.verify_handle(&alice.did, &handle).await);
    let other = Handle::parse("mallory.test").expect("handle");
    assert!(!r.verify_handle(&alice.did, &other).await);

    let ghost = Did::parse("did:plc:ghostaaaaaaaaaaaaaaaaaaa").expect("did");
    assert_eq!(r.resolve(&ghost).await, Err(ResolveError::NotFound(ghost)));
}

/// No XRPC resolver: handles are checked in DNS (`_atproto.<handle>` TXT), and only a record
/// naming the DID that claims the handle verifies it.
#[tokio::test]
async fn handles_published_in_dns_verify_both_ways() {
    let net = Net::start().await.expect("servers");
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 2);
    let carol = Account::new("carol", 3);
    for a in [&alice, &bob, &carol] {
        net.add_account(a.did.as_str(), &a.handle, &a.key());
    }
    let dns = TxtServer::start(BTreeMap::from([
        (
            format!("_atproto.{}", alice.handle),
            format!("did={}", alice.did),
        ),
        // bob's domain points at alice: bob's document claims a handle that is not his.
        (
            format!("_atproto.{}", bob.handle),
            format!("did={}", alice.did),
        ),
    ]))
    .await
    .expect("dns");
    let r = Resolver::new(ResolverConfig {
        plc: Url::parse(&net.http).expect("url"),
        handle_resolver: None,
        dns: Some(dns.addr),
        capacity: 16,
        timeout: std::time::Duration::from_secs(2),
        policy: guildhall_ingest::net::FetchPolicy {
            allow_private: true,
        },
    })
    .expect("resolver");

    let handle = |a: &Account| Handle::parse(&a.handle).expect("handle");
    assert_eq!(
        r.resolve_handle(&handle(&alice)).await,
        Some(alice.did.clone())
    );
    assert!(r.verify_handle(&alice.did, &handle(&alice)).await);
    assert!(!r.verify_handle(&bob.did, &handle(&bob)).await);
    // No TXT record, and https://carol.test/.well-known/atproto-did does not answer.
    assert_eq!(r.resolve_handle(&handle(&carol)).await, None);
    assert!(!r.verify_handle(&carol.did, &handle(&carol)).await);
}
