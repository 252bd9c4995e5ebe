//! Fresh databases for each test, from `smm-test-db`: a SQLite file in a temp dir of its own, or
//! a new PostgreSQL database on the server named by `TEST_DATABASE_URL` (dropped when the test
//! ends).

use std::sync::Arc;

use smm_store::{PostgresStore, SqliteStore, Store};
use smm_test_db::{PgDb, SqliteDb};

pub struct TestDb {
    store: Arc<dyn Store>,
    url: String,
    /// Dropped after `store`: removes the file or drops the database.
    _db: smm_test_db::TestDb,
}

impl TestDb {
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// A raw connection URL, for the few checks that need SQL (schema drift).
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

pub async fn sqlite() -> TestDb {
    let db = SqliteDb::new();
    let store = SqliteStore::connect(db.url())
        .await
        .expect("sqlite store opens");
    TestDb {
        store: Arc::new(store),
        url: db.url().to_owned(),
        _db: smm_test_db::TestDb::Sqlite(db),
    }
}

/// `None` (with a note) when no PostgreSQL is configured, outside CI. In CI a missing server
/// is a failure, never a silent skip.
pub async fn postgres() -> Option<TestDb> {
    let db = PgDb::create("store").await?;
    let store = PostgresStore::connect(db.url())
        .await
        .expect("postgres store opens");
    Some(TestDb {
        store: Arc::new(store),
        url: db.url().to_owned(),
        _db: smm_test_db::TestDb::Postgres(db),
    })
}
