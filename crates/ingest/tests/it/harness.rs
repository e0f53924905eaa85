//! A fresh database per test (SQLite file or PostgreSQL database) and the `both!` macro that runs
//! one test body on each backend.

use std::future::Future;

use guildhall_store::Store;
use guildhall_testkit::db::TestDb;

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
