//! The store's one error type: what went wrong, never the SQL or the data that caused it.

/// Errors of every store call. `Display` texts are safe to log and say nothing of SQL;
/// the `source()` chain carries the driver error for operators' logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The location passed to [`crate::Store::open`] is not a usable URL or path.
    #[error("invalid database location")]
    InvalidLocation(#[source] sqlx::Error),
    /// Could not reach or open the database.
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("schema migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A statement or transaction failed; the batch it belonged to was rolled back.
    #[error("database operation failed")]
    Query(#[source] sqlx::Error),
    /// A price amount is not a decimal string (digits, optionally '.' and up to 9 more digits).
    #[error("invalid price amount {0:?}")]
    InvalidAmount(String),
    /// A value read back from the database is not one the schema allows.
    #[error("unexpected {kind} value in the database")]
    Corrupt {
        /// Which column kind held the value.
        kind: &'static str,
    },
}

impl StoreError {
    /// Whether retrying the same call later can succeed (connection trouble, pool exhaustion,
    /// lock contention), as opposed to a bad input or a broken schema.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect(_) => true,
            StoreError::Query(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || is_busy(e)
            }
            _ => false,
        }
    }
}

impl StoreError {
    /// Whether a unique key refused a row (another writer inserted the same key first).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Query(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("23505" | "2067" | "1555"))
            }
            _ => false,
        }
    }
}

/// SQLite "database is locked/busy" and PostgreSQL serialization/deadlock failures.
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("5" | "6" | "517" | "40001" | "40P01")
        ),
        _ => false,
    }
}

/// Shorthand used on every driver call.
pub(crate) fn q(e: sqlx::Error) -> StoreError {
    StoreError::Query(e)
}
