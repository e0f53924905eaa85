//! Reads for the indexer's resync schedule: the repos whose copy is not known to follow
//! their host (desynchronized, or a resync was started and not finished).

use crate::{Backend, Store, StoreError};

const UNSYNCED: &str =
    "SELECT did FROM repos WHERE status <> 'synced' AND did > $1 ORDER BY did LIMIT $2";
const UNSYNCED_COUNT: &str = "SELECT COUNT(*) FROM repos WHERE status <> 'synced'";

impl Store {
    /// Up to `limit` repos not in sync, in DID order after `after` (`""` for the first page).
    pub async fn unsynced_repos(&self, after: &str, limit: u32) -> Result<Vec<String>, StoreError> {
        let limit = i64::from(limit);
        match &self.backend {
            Backend::Sqlite(p) => {
                sqlx::query_scalar::<_, String>(UNSYNCED)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&p.read)
                    .await
            }
            Backend::Postgres(p) => {
                sqlx::query_scalar::<_, String>(UNSYNCED)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(p)
                    .await
            }
        }
        .map_err(StoreError::Query)
    }

    /// How many repos are not in sync.
    pub async fn unsynced_count(&self) -> Result<u64, StoreError> {
        let n = match &self.backend {
            Backend::Sqlite(p) => {
                sqlx::query_scalar::<_, i64>(UNSYNCED_COUNT)
                    .fetch_one(&p.read)
                    .await
            }
            Backend::Postgres(p) => {
                sqlx::query_scalar::<_, i64>(UNSYNCED_COUNT)
                    .fetch_one(p)
                    .await
            }
        }
        .map_err(StoreError::Query)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
