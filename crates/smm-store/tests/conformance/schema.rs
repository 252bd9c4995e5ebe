//! The two migration sets must not drift: same versions, and after migrating, the same tables,
//! columns and indexes on both databases.

use std::collections::BTreeSet;
use std::path::Path;

use smm_store::StoreError;
use sqlx::Connection;

fn migration_files(dir: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../migrations")
        .join(dir);
    std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .collect()
}

#[test]
fn migration_versions_match() {
    let sqlite = migration_files("sqlite");
    let postgres = migration_files("postgres");
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite, postgres,
        "migrations/sqlite and migrations/postgres drifted"
    );
}

type Columns = BTreeSet<(String, String)>;

async fn sqlite_schema(url: &str) -> (Columns, BTreeSet<String>) {
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("columns");
    let indexes: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
            .fetch_all(&mut conn)
            .await
            .expect("indexes");
    (
        columns.into_iter().collect(),
        indexes.into_iter().map(|(n,)| n).collect(),
    )
}

async fn postgres_schema(url: &str) -> (Columns, BTreeSet<String>) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("columns");
    // Explicitly created indexes only (not those behind primary keys and UNIQUE constraints).
    let indexes: Vec<(String,)> = sqlx::query_as(
        "SELECT i.indexname::text FROM pg_indexes i WHERE i.schemaname = 'public' \
         AND i.tablename NOT LIKE '\\_sqlx%' \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
    )
    .fetch_all(&mut conn)
    .await
    .expect("indexes");
    (
        columns.into_iter().collect(),
        indexes.into_iter().map(|(n,)| n).collect(),
    )
}

#[tokio::test]
async fn migrated_schemas_match() {
    let Some(pg) = crate::harness::postgres().await else {
        return;
    };
    let lite = crate::harness::sqlite().await;
    let (lite_columns, lite_indexes) = sqlite_schema(&lite.url()).await;
    let (pg_columns, pg_indexes) = postgres_schema(&pg.url()).await;
    assert!(lite_columns.len() > 20);
    assert_eq!(
        lite_columns
            .symmetric_difference(&pg_columns)
            .collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "columns differ between the SQLite and PostgreSQL schemas"
    );
    assert_eq!(
        lite_indexes
            .symmetric_difference(&pg_indexes)
            .collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "indexes differ between the SQLite and PostgreSQL schemas"
    );
}

/// Driver errors become the same domain errors on both databases: a foreign-key refusal is
/// `Invalid`, a unique refusal a worded `Conflict` (never a raw constraint name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_errors_map_alike_on_both_databases() {
    const ORPHAN_RATE: &str =
        "INSERT INTO customer_rates (customer_id, service_id, rate) VALUES (424242, 1, '1')";
    const TWIN_SERVICE: &str =
        "INSERT INTO service_ids (provider, upstream_service) VALUES ('p', 's')";
    let check = |fk: sqlx::Error, unique: sqlx::Error| {
        assert!(
            matches!(StoreError::from(fk), StoreError::Invalid(_)),
            "a foreign-key refusal is Invalid"
        );
        match StoreError::from(unique) {
            StoreError::Conflict(message) => {
                assert!(
                    message.starts_with("a uniqueness rule refused it"),
                    "{message}"
                )
            }
            other => panic!("a unique refusal is a Conflict, not {other:?}"),
        }
    };

    let db = crate::harness::sqlite().await;
    let mut conn = sqlx::SqliteConnection::connect(&db.url())
        .await
        .expect("connect");
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut conn)
        .await
        .expect("pragma");
    let fk = sqlx::query(ORPHAN_RATE)
        .execute(&mut conn)
        .await
        .expect_err("fk");
    sqlx::query(TWIN_SERVICE)
        .execute(&mut conn)
        .await
        .expect("first");
    let unique = sqlx::query(TWIN_SERVICE)
        .execute(&mut conn)
        .await
        .expect_err("twin");
    check(fk, unique);

    let Some(db) = crate::harness::postgres().await else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&db.url())
        .await
        .expect("connect");
    let fk = sqlx::query(ORPHAN_RATE)
        .execute(&mut conn)
        .await
        .expect_err("fk");
    sqlx::query(TWIN_SERVICE)
        .execute(&mut conn)
        .await
        .expect("first");
    let unique = sqlx::query(TWIN_SERVICE)
        .execute(&mut conn)
        .await
        .expect_err("twin");
    check(fk, unique);
}
