//! Fresh databases per test and the `both!` macro that runs one body on both backends
//! (the same approach as the store's own suite).

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use guildhall_store::Store;
use sqlx::Connection;

/// What a test body gets: an open store and where it lives (for a second handle).
pub struct Ctx {
    pub store: Store,
    pub location: String,
}

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn admin_url() -> String {
    std::env::var("GUILDHALL_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh, empty database; dropped by [`Fresh::cleanup`].
pub enum Fresh {
    Sqlite(PathBuf),
    Postgres { name: String },
}

impl Fresh {
    pub async fn sqlite() -> (Fresh, String) {
        let path = std::env::temp_dir().join(format!("{}.db", unique("gh_appview")));
        let loc = path.to_string_lossy().into_owned();
        (Fresh::Sqlite(path), loc)
    }

    pub async fn postgres() -> (Fresh, String) {
        let name = unique("gh_appview");
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed for these tests: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b)
            .expect("admin url has a path");
        (
            Fresh::Postgres { name: name.clone() },
            format!("{base}/{name}"),
        )
    }

    pub async fn cleanup(self) {
        match self {
            Fresh::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Fresh::Postgres { name } => {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            }
        }
    }
}

/// Runs `body` on a fresh database of the given kind, cleaning up even if it panics.
pub async fn run<F, Fut>(pg: bool, body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (fresh, location) = if pg {
        Fresh::postgres().await
    } else {
        Fresh::sqlite().await
    };
    let store = Store::open(&location).await.expect("open store");
    let ctx = Ctx {
        store: store.clone(),
        location,
    };
    let outcome = tokio::spawn(body(ctx)).await;
    store.close().await;
    fresh.cleanup().await;
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
