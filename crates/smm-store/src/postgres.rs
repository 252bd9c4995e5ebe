//! PostgreSQL, for deployments where several gateway processes share one database: its
//! connections and its words of SQL. Every rule and every statement is in [`crate::sql`], whose
//! module docs give the concurrency model (row locks at READ COMMITTED, `SKIP LOCKED` claims).

use std::time::Duration;

use sqlx::Postgres;
use sqlx::postgres::PgPoolOptions;

use crate::sql::{Dialect, SqlStore};
use crate::{Backend, StoreError, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

const MAX_CONNECTIONS: u32 = 16;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The store on a PostgreSQL database.
pub type PostgresStore = SqlStore<Postgres>;

impl Dialect for Postgres {
    const BACKEND: Backend = Backend::Postgres;
    const BEGIN: &'static str = "BEGIN";

    fn word(name: &str, param: &str) -> String {
        match name {
            "for_update" => " FOR UPDATE".to_owned(),
            "skip_locked" => " FOR UPDATE SKIP LOCKED".to_owned(),
            "int_list" => {
                format!("(SELECT value::BIGINT FROM json_array_elements_text({param}::JSON))")
            }
            "text_list" => format!("(SELECT value FROM json_array_elements_text({param}::JSON))"),
            "poll_index" => String::new(),
            // An unknown word stays in the text, so the statement fails to prepare.
            other => format!("{{{other}}}"),
        }
    }
}

impl SqlStore<Postgres> {
    /// Connects (a pool of up to 16 connections) and runs the migrations. Several processes may
    /// do this at once on one database: the migrator serialises them with an advisory lock.
    pub async fn connect(url: &str) -> StoreResult<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| match e {
                sqlx::Error::Configuration(e) => {
                    StoreError::Invalid(format!("bad PostgreSQL URL: {e}"))
                }
                other => other.into(),
            })?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrations failed: {e}")))?;
        Ok(SqlStore {
            writer: pool.clone(),
            reader: pool,
        })
    }
}
