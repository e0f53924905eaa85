//! The resolver against a PLC-shaped server: did:plc documents by `GET <plc>/<did>`, handles
//! checked both ways, unknown DIDs reported as such.

use guildhall_ingest::identity::{ResolveError, Resolver, ResolverConfig};
use guildhall_proto::syntax::{Did, Handle};
use url::Url;

use crate::forged::Account;
use crate::net::Net;

fn resolver(net: &Net) -> Resolver {
    let base = Url::parse(&net.http).expect("url");
    Resolver::new(ResolverConfig {
        plc: base.clone(),
        handle_resolver: Some(base),
        capacity: 16,
        timeout: std::time::Duration::from_secs(5),
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
