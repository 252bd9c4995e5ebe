//! Fresh databases for tests — the one place in the workspace that creates, names and drops them.
//! Only dev-dependencies (tests, benches, examples) depend on this crate.
//!
//! * [`SqliteDb`]: a database file in a temporary directory of its own ([`tempfile::TempDir`]);
//!   the directory (with the `-wal`/`-shm` files) is removed when the guard is dropped.
//! * [`PgDb`]: a new, uniquely named database on the PostgreSQL server named by
//!   `TEST_DATABASE_URL` (an admin URL: any database the user may `CREATE DATABASE` from). It
//!   is dropped (`DROP DATABASE … WITH (FORCE)`, so leftover connections do not block it) when
//!   the guard is dropped, also when the test panics: `Drop` cannot await, so it runs the drop
//!   on a thread of its own with its own current-thread runtime and joins it. That works from
//!   any tokio runtime flavour, and from outside one. A database whose test process was killed
//!   is left behind for the throwaway server (`scripts/with-postgres.sh`) to take with it.
//!
//! Without `TEST_DATABASE_URL`, PostgreSQL tests are skipped with a note ([`admin_url`] and
//! [`PgDb::create`] return `None`) — except under `CI` (`CI=true`, as CI runs
//! `scripts/test.sh`), where they panic: no PostgreSQL test may pass silently there.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;
pub use tempfile::TempDir;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `"sqlite"` or `"postgres"`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether this runs in CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// The PostgreSQL admin URL from `TEST_DATABASE_URL`, or `None` (with a note on stderr) when it
/// is not set.
///
/// # Panics
/// When it is not set in CI ([`in_ci`]): the PostgreSQL variant of a test must never be
/// skipped there.
pub fn admin_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                !in_ci(),
                "TEST_DATABASE_URL is not set in CI: PostgreSQL tests must run, not pass \
                 silently (run them through scripts/test.sh or scripts/with-postgres.sh)"
            );
            eprintln!("note: skipping a PostgreSQL test: TEST_DATABASE_URL is not set");
            None
        }
    }
}

/// `postgres://user@host:port/db?params` with the database replaced by `name` (the user,
/// host, port and parameters kept).
pub fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// A database name unique on the server: `smm_<label>_<pid>_<counter>_<nanos>` (lower case; a
/// label's characters other than ASCII letters and digits become `_`).
pub fn unique_name(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "smm_{label}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `CREATE DATABASE name` on the server of `admin_url`; returns the new database's URL.
/// `name` must be a plain identifier (as [`unique_name`] makes).
pub async fn create_database(admin_url: &str, name: &str) -> Result<String, sqlx::Error> {
    assert!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "not a plain database name: {name:?}"
    );
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    created?;
    Ok(with_database(admin_url, name))
}

/// `DROP DATABASE IF EXISTS name WITH (FORCE)` on the server of `admin_url` (its open
/// connections are terminated).
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    assert!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "not a plain database name: {name:?}"
    );
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let dropped = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await;
    let _ = conn.close().await;
    dropped.map(|_| ())
}

/// A fresh PostgreSQL database for one test, dropped with the guard (see the crate docs).
#[derive(Debug)]
pub struct PgDb {
    url: String,
    admin_url: String,
    name: String,
}

impl PgDb {
    /// A new database named after `label` on the `TEST_DATABASE_URL` server; `None` when that
    /// is not set (see [`admin_url`]: a panic in CI).
    ///
    /// # Panics
    /// When the server cannot be reached or refuses to create the database.
    pub async fn create(label: &str) -> Option<PgDb> {
        let admin_url = admin_url()?;
        let name = unique_name(label);
        let url = create_database(&admin_url, &name)
            .await
            .unwrap_or_else(|e| panic!("create the test database {name} (TEST_DATABASE_URL): {e}"));
        Some(PgDb {
            url,
            admin_url,
            name,
        })
    }

    /// The database's connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await, and may run inside a runtime: a thread with its own, joined.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            if let Err(e) = runtime.block_on(drop_database(&admin_url, &name)) {
                eprintln!("note: could not drop the test database {name}: {e}");
            }
        })
        .join();
    }
}

/// A fresh SQLite database file in a temporary directory of its own, removed with the guard.
#[derive(Debug)]
pub struct SqliteDb {
    dir: TempDir,
    url: String,
}

impl SqliteDb {
    /// `sqlite://<new temp dir>/gateway.db` (the file does not exist yet).
    ///
    /// # Panics
    /// When no temporary directory can be made.
    pub fn new() -> SqliteDb {
        let dir = temp_dir();
        let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
        SqliteDb { dir, url }
    }

    /// The database's connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory the file lives in (the test may put more files there).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Default for SqliteDb {
    fn default() -> Self {
        SqliteDb::new()
    }
}

/// A new temporary directory (`smm-test-…` under the system temp dir), removed when dropped.
///
/// # Panics
/// When it cannot be made.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("smm-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// A fresh database of either backend, kept while this lives.
#[derive(Debug)]
pub enum TestDb {
    Sqlite(SqliteDb),
    Postgres(PgDb),
}

impl TestDb {
    /// A fresh database on `backend`; `label` names a PostgreSQL database. `None` only for
    /// PostgreSQL without `TEST_DATABASE_URL` outside CI (see [`admin_url`]).
    pub async fn create(backend: Backend, label: &str) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(TestDb::Sqlite(SqliteDb::new())),
            Backend::Postgres => PgDb::create(label).await.map(TestDb::Postgres),
        }
    }

    /// The database's connection URL.
    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite(db) => db.url(),
            TestDb::Postgres(db) => db.url(),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            TestDb::Sqlite(_) => Backend::Sqlite,
            TestDb::Postgres(_) => Backend::Postgres,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_swap_only_the_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(
            with_database("postgres://h:1?a=b", "x"),
            "postgres://h:1/x?a=b"
        );
    }

    #[test]
    fn names_are_unique_plain_identifiers() {
        let a = unique_name("Crash-Test");
        let b = unique_name("Crash-Test");
        assert_ne!(a, b);
        assert!(a.starts_with("smm_crash_test_"), "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }

    #[test]
    fn sqlite_dirs_are_separate_and_removed() {
        let (a, b) = (SqliteDb::new(), SqliteDb::new());
        assert_ne!(a.url(), b.url());
        let dir = a.dir().to_owned();
        assert!(dir.is_dir());
        drop(a);
        assert!(!dir.exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_databases_are_created_and_dropped() {
        let Some(db) = PgDb::create("self_test").await else {
            return;
        };
        let mut conn = sqlx::PgConnection::connect(db.url())
            .await
            .expect("connect");
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .expect("query");
        assert_eq!(one, 1);
        let (admin, name) = (admin_url().expect("admin url"), db.name().to_owned());
        drop(db); // with `conn` still open: FORCE ends it
        let mut admin = sqlx::PgConnection::connect(&admin).await.expect("admin");
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .expect("query");
        assert_eq!(left, 0, "{name} was dropped");
    }
}
