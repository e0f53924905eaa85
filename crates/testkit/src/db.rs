//! Throwaway databases for tests: a fresh SQLite file, or a fresh database on the PostgreSQL
//! server named by `GUILDHALL_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/test`),
//! one per test, so test bodies run unchanged on both backends and in parallel.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow};
use sqlx::Connection as _;

/// The PostgreSQL server tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("GUILDHALL_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `prefix` made into a name no other test (in this process or another) is using.
pub fn unique(prefix: &str) -> String {
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

/// An empty database made for one test. Remove it with [`TestDb::cleanup`] (async) or
/// [`TestDb::remove_blocking`] (from `Drop`).
#[derive(Debug)]
pub struct TestDb {
    /// What `Store::open` and `--db` take: a file path or a `postgres://` URL.
    pub location: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Sqlite(PathBuf),
    Postgres(String),
}

impl TestDb {
    /// A new database named after `prefix`: a SQLite file in the temp directory, or a
    /// PostgreSQL database on [`pg_admin_url`].
    pub async fn create(postgres: bool, prefix: &str) -> anyhow::Result<TestDb> {
        let name = unique(prefix);
        if !postgres {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            return Ok(TestDb {
                location: path.to_string_lossy().into_owned(),
                kind: Kind::Sqlite(path),
            });
        }
        let admin = pg_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .with_context(|| format!("PostgreSQL at {admin} is needed for these tests"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .context("creating the test database")?;
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .ok_or_else(|| anyhow!("{admin} has no database path"))?;
        Ok(TestDb {
            location: format!("{base}/{name}"),
            kind: Kind::Postgres(name),
        })
    }

    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres(_))
    }

    /// Removes the database (best effort: a leftover only costs disk).
    pub async fn cleanup(self) {
        match &self.kind {
            Kind::Sqlite(path) => remove_sqlite(path),
            Kind::Postgres(name) => drop_pg(name).await,
        }
    }

    /// [`TestDb::cleanup`] for synchronous contexts such as `Drop`, which may run on a
    /// runtime thread or while unwinding: the async part runs on a thread of its own.
    pub fn remove_blocking(&self) {
        match &self.kind {
            Kind::Sqlite(path) => remove_sqlite(path),
            Kind::Postgres(name) => {
                let name = name.clone();
                let _ = std::thread::spawn(move || {
                    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        rt.block_on(drop_pg(&name));
                    }
                })
                .join();
            }
        }
    }
}

fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.to_path_buf().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

async fn drop_pg(name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}
