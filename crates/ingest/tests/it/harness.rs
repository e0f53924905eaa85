//! A fresh database per test (SQLite file or PostgreSQL database) and the `both!` macro that runs
//! one test body on each backend.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use guildhall_ingest::identity::{Resolver, ResolverConfig};
use guildhall_ingest::indexer::Context;
use guildhall_ingest::metrics::Metrics;
use guildhall_ingest::net::FetchPolicy;
use guildhall_ingest::repo::RepoFetcher;
use guildhall_store::Store;
use guildhall_testkit::db::TestDb;
use tokio::sync::broadcast;
use url::Url;

/// A resolver for servers on loopback: DID documents from `plc`, handles through
/// `handle_resolver` (else DNS and well-knowns), document URLs guarded unless `allow_private`.
pub fn resolver(plc: &str, handle_resolver: Option<&str>, allow_private: bool) -> Arc<Resolver> {
    Arc::new(
        Resolver::new(ResolverConfig {
            plc: Url::parse(plc).expect("plc url"),
            handle_resolver: handle_resolver.map(|h| Url::parse(h).expect("handle resolver url")),
            dns: None,
            capacity: 1000,
            timeout: Duration::from_secs(10),
            policy: FetchPolicy { allow_private },
        })
        .expect("resolver"),
    )
}

/// A pipeline context over `store` and `resolver` (repos up to 64 MiB).
pub fn context(store: Store, resolver: Arc<Resolver>) -> Arc<Context> {
    let metrics = Arc::new(Metrics::default());
    let fetcher = RepoFetcher::new(resolver.clone(), metrics.clone(), 64 << 20);
    Arc::new(Context {
        store,
        resolver,
        metrics,
        fetcher,
        committed: broadcast::channel(64).0,
    })
}

/// Runs `body` with a store on a fresh database, cleaning up even when it panics.
pub async fn run<F, Fut>(pg: bool, body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = TestDb::create(pg, "gh_ingest")
        .await
        .expect("test database");
    let store = Store::open(&db.location).await.expect("open store");
    let outcome = tokio::spawn(body(store.clone())).await;
    store.close().await;
    db.cleanup().await;
    if let Err(e) = outcome {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// Like [`run`], but the body also gets the database's location, to reach it behind the
/// store's back (a test that breaks the schema for a while).
pub async fn run_at<F, Fut>(pg: bool, body: F)
where
    F: FnOnce(Store, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = TestDb::create(pg, "gh_ingest")
        .await
        .expect("test database");
    let store = Store::open(&db.location).await.expect("open store");
    let outcome = tokio::spawn(body(store.clone(), db.location.clone())).await;
    store.close().await;
    db.cleanup().await;
    if let Err(e) = outcome {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// `both!(name)` turns `async fn name(store: Store)` into `name::sqlite` and `name::postgres`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    crate::harness::run(false, super::$name).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    crate::harness::run(true, super::$name).await;
                }
            }
        )*
    };
}
pub(crate) use both;

/// `both_at!(name)`: like `both!`, for `async fn name(store: Store, location: String)`.
macro_rules! both_at {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    crate::harness::run_at(false, super::$name).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    crate::harness::run_at(true, super::$name).await;
                }
            }
        )*
    };
}
pub(crate) use both_at;
