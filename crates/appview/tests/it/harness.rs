//! Fresh databases per test and the `both!` macro that runs one body on both backends
//! (the same approach as the store's own suite).

use std::future::Future;

use guildhall_store::Store;
use guildhall_testkit::db::TestDb;

/// What a test body gets: an open store and where it lives (for a second handle).
pub struct Ctx {
    pub store: Store,
    pub location: String,
}

/// Runs `body` on a fresh database of the given kind, cleaning up even if it panics.
pub async fn run<F, Fut>(pg: bool, body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = TestDb::create(pg, "gh_appview")
        .await
        .expect("test database");
    let store = Store::open(&db.location).await.expect("open store");
    let ctx = Ctx {
        store: store.clone(),
        location: db.location.clone(),
    };
    let outcome = tokio::spawn(body(ctx)).await;
    store.close().await;
    db.cleanup().await;
    if let Err(e) = outcome {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// `both!(name)` turns `async fn name(ctx: Ctx)` into `name::sqlite` and `name::postgres` tests.
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
