//! SQLite, the embedded default: its connections and its words of SQL. Every rule and every
//! statement is in [`crate::sql`].
//!
//! # Connections
//!
//! SQLite serialises writers. Instead of letting several connections race for the write lock
//! (and sleep in busy handlers), the store keeps **one writer connection**, fed by the pool's
//! fair queue, for every transaction that writes, and a small pool of reader connections for
//! pure reads (WAL lets them run beside the writer). Every write transaction starts with
//! `BEGIN IMMEDIATE`, so the write lock is taken up front: another process writing the same
//! file (the CLI) makes us wait in the busy handler instead of failing a snapshot upgrade
//! half-way through. With one writer holding the lock, row locks are not needed. An in-memory
//! database has a single connection for everything.
//!
//! Durability: WAL with `synchronous = FULL`, so a committed order survives a power loss.

#[cfg(test)]
mod tests;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite};

use crate::sql::{Dialect, SqlStore};
use crate::{Backend, CustomerEvent, StoreError, StoreResult};

const READERS: u32 = 4;
/// Each reader's page cache, in KiB (SQLite's default is 2,000 per connection). The readers
/// look up scattered orders (`status` of 100 ids, the console's pages) whose pages the
/// operating system's cache holds anyway. At the default, bench/run.sh's `status` rounds grew
/// the gateway by 5 MB of such copies; at 500 KiB by 1 MB, at the same `status` rate
/// (issue #16's peak RSS target, 50 MB). The writer keeps the default: its pages are the ones
/// it changes.
const READER_CACHE: &str = "-500";
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller may queue for the writer (or a reader) before `Database("pool timed out")`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The embedded store: one SQLite file (WAL), a single writer connection and a few readers.
pub type SqliteStore = SqlStore<Sqlite>;

impl Dialect for Sqlite {
    const BACKEND: Backend = Backend::Sqlite;
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    /// The one writer's triggers update the totals directly (migration 0010).
    const COMPACT_AGGREGATES: &'static [&'static str] = &[];
    const VACUUM_AGGREGATES: &'static [&'static str] = &[];

    fn word(name: &str, param: &str) -> String {
        match name {
            // The write lock, held from BEGIN IMMEDIATE, covers every row.
            "for_update" | "for_no_key_update" | "skip_locked" => String::new(),
            "int_list" | "text_list" => format!("(SELECT value FROM json_each({param}))"),
            "json_rows" => format!("(SELECT key AS n, value AS r FROM json_each({param})) AS j"),
            // A bare parameter as LIMIT is read by the planner, so SQLite marks the statement
            // to be compiled again whenever a new value is bound. The claims bind a limit that
            // changes from call to call, and compiling an UPDATE of `orders` compiles its
            // triggers: 28 % of the writer's CPU under an `add` burst (issue #16). An
            // expression is not read, so the statement stays prepared.
            "limit" => format!("LIMIT CAST({param} AS INTEGER)"),
            // The next order ids, one per element of the JSON list `param` (1, 2, ... n): the
            // write lock is held, so nobody else takes them before the group inserts them
            // (AUTOINCREMENT keeps `sqlite_sequence` at the largest id ever used).
            "new_order_ids" => format!(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'orders'), 0) \
                 + value FROM json_each({param})"
            ),
            // Left to itself the planner picked `orders_forward` (dropped in 0018) and scanned
            // every finished `sent` order (0.3 s per claim with a million of them, 3 ms on the
            // partial poll index, which leads with the provider since 0015).
            "poll_index" => " INDEXED BY orders_poll".to_owned(),
            // Asked for a batch of upstream ids in id order, the planner walks `orders_provider`
            // to skip the sort and reads every order of the provider (75 ms per 1,000-id batch
            // with a million orders, 3 ms on the unique upstream index).
            "upstream_index" => " INDEXED BY orders_upstream".to_owned(),
            // The triggers compiled into the statement keep the aggregates, the timeline,
            // webhook events and scorecards; they cost a fraction of PostgreSQL's PL/pgSQL.
            "orders_batch_open" | "orders_batch_close" => String::new(),
            // An unknown word stays in the text, so the statement fails to prepare.
            other => format!("{{{other}}}"),
        }
    }
    // One process writes the file at a time, but the CLI is another process and SQLite cannot
    // tell a connection about another's commit: caches rely on their lifetime
    // (`server.key_cache_ttl_secs`, at most 60 s).
    const NOTIFY_CUSTOMER: Option<&'static str> = None;
    const ORDERS_BATCH: Option<(&'static str, &'static str)> = None;

    fn customer_events(_: &Pool<Sqlite>) -> Option<tokio::sync::mpsc::Receiver<CustomerEvent>> {
        None
    }
}

impl SqlStore<Sqlite> {
    /// Opens (creating it and its directory if needed) the database at `url`
    /// (`sqlite://data/smm-gateway.db`, `sqlite::memory:`) and runs the migrations.
    pub async fn connect(url: &str) -> StoreResult<SqliteStore> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("not a usable SQLite URL: {e}")))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Full)
            .pragma("temp_store", "MEMORY");
        // WAL is a property of the file: the writer sets it once, readers inherit it.
        let writer_options = if in_memory {
            options.clone()
        } else {
            create_parent_dir(options.get_filename())?;
            options.clone().journal_mode(SqliteJournalMode::Wal)
        };

        // Never let the pool close the writer: for an in-memory database it *is* the database.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(writer_options)
            .await?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Database(format!("migrating the SQLite database: {e}")))?;

        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READERS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .test_before_acquire(false)
                .connect_with(options.pragma("cache_size", READER_CACHE))
                .await?
        };
        Ok(SqlStore { writer, reader })
    }
}

fn create_parent_dir(file: &Path) -> StoreResult<()> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::create_dir_all(dir)
            .map_err(|e| {
                StoreError::Database(format!("cannot create directory {}: {e}", dir.display()))
            }),
        _ => Ok(()),
    }
}
