//! The two migration sets must not drift: same versions, and after migrating, the same tables,
//! columns and indexes on both databases.

use std::collections::BTreeSet;
use std::path::Path;

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
