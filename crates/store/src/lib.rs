//! Guildhall's storage: SQLite and PostgreSQL through sqlx, one schema, one test suite.
