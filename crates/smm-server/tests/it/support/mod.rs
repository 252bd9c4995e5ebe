//! The one support module of smm-server's integration tests.
//!
//! * Databases come from `smm-test-db` (the workspace's one test-database helper): a SQLite file
//!   in a temp dir of its own, or a fresh database on the PostgreSQL server named by
//!   `TEST_DATABASE_URL`, dropped at the end. Without that variable PostgreSQL variants are
//!   skipped with a note — and fail under `CI=true`.
//! * Every test gets its own temp dir ([`temp_dir`]), its own ports ([`free_port`], or
//!   `127.0.0.1:0`) and passes environment variables to the processes it starts only
//!   (`Command::env`): tests share nothing, so they run alike under nextest (a process per
//!   test) and plain `cargo test` (threads of one process).
//! * [`gateway`]: the in-process gateway with two simulated panels (the end-to-end harness).
//! * [`process`]: the real `smm-gateway` binary, started, SIGKILLed and restarted.
//! * [`browser`]: headless Chromium over WebDriver, for the web console's pages; skipped with
//!   a note without Chromium and ChromeDriver — and failing under `CI=true`.

/// One test per backend for each case, `sqlite::case` and `postgres::case`, calling
/// `case(Backend)` of the invoking module (the PostgreSQL one returns at once when no
/// `TEST_DATABASE_URL` is configured outside CI; see [`postgres_available`]).
macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(crate::support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if !crate::support::postgres_available() {
                        return;
                    }
                    super::$case(crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}

pub mod browser;
pub mod gateway;
pub mod process;
pub mod receiver;

use std::future::Future;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

pub use gateway::*;
pub use process::GatewayProcess;
pub use receiver::{Answer, Receiver, SmtpSink};
pub use smm_test_db::{Backend, TempDir, temp_dir};

use smm_provider_client::SecretKey;
use smm_routing::{RouteDef, ServiceDef};
use smm_server::Gateway;
use smm_server::config::{ProviderSettings, Settings};
use smm_store::{Customer, LedgerKind, NewCustomer, Store, hash_api_key};
use smm_wire::{Money, OrderStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A database for one test (see the module docs); removed or dropped when this goes out of
/// scope, also when the test fails.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    _db: smm_test_db::TestDb,
}

impl TestDb {
    /// A fresh database on `backend`; `label` names a PostgreSQL database (for whoever looks at
    /// the server). `None` for PostgreSQL without `TEST_DATABASE_URL`, outside CI only.
    pub async fn create(backend: Backend, label: &str) -> Option<TestDb> {
        let db = smm_test_db::TestDb::create(backend, label).await?;
        Some(TestDb {
            url: db.url().to_owned(),
            _db: db,
        })
    }
}

/// Whether the PostgreSQL variants run: `false` (with a note) without `TEST_DATABASE_URL`
/// outside CI; under `CI=true` a missing URL fails the test instead.
pub fn postgres_available() -> bool {
    smm_test_db::admin_url().is_some()
}

/// A port on 127.0.0.1 that was free a moment ago (for a child process that binds it itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `check` every 20 ms until it holds; whether it did within `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(timeout, Duration::from_millis(20), check).await
}

/// Polls `check` every `every` until it holds; whether it did within `timeout`.
pub async fn poll<F, Fut>(timeout: Duration, every: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
    true
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(lines).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Polls `check` every 20 ms until it holds; fails the test after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        eventually(timeout, check).await,
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// A process's stdout and stderr, as text.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A route to `provider`'s upstream service `service`.
pub fn route(provider: &str, service: u64) -> RouteDef {
    RouteDef {
        provider: provider.into(),
        service: service.to_string(),
    }
}

/// An enabled local service `id` with `routes` and no overrides.
pub fn service_def(id: u64, routes: Vec<RouteDef>) -> ServiceDef {
    ServiceDef {
        id,
        name: None,
        category: None,
        routes,
        min: None,
        max: None,
        markup: None,
        desc: None,
        enabled: true,
        policy: None,
        targets: Default::default(),
    }
}

/// The smallest gateway: the default settings on `database`, listening on `127.0.0.1:0`, with
/// one provider `alpha` at `sim_url` (the simulator's demo key) and one local service 1 on its
/// service 1.
pub fn one_service_settings(database: &str, sim_url: &str) -> Settings {
    let mut settings = Settings::defaults().expect("default settings load");
    settings.server.listen = "127.0.0.1:0".into();
    settings.database.url = database.to_owned();
    settings.providers = vec![ProviderSettings::new(
        "alpha",
        sim_url,
        SecretKey::new(smm_panel_sim::DEMO_KEY),
    )];
    settings.services = vec![service_def(1, vec![route("alpha", 1)])];
    settings
}

/// Starts the gateway in this process on `127.0.0.1:0`, with an admin listener (also on
/// `127.0.0.1:0`) when `admin` is set.
pub async fn start_gateway(settings: Settings, admin: bool) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let admin = if admin {
        Some(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0"),
        )
    } else {
        None
    };
    Gateway::start_with_admin(settings, listener, admin)
        .await
        .expect("the gateway starts")
}

/// A file in `dir` holding `contents`; its path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// A new customer in `store` owning `key` (its first 6 characters are the prefix), funded with
/// `deposit` (nothing when zero); `actor` and `now` go to the audit log and the ledger.
pub async fn funded_customer(
    store: &dyn Store,
    name: &str,
    key: &str,
    deposit: Money,
    actor: &str,
    now: i64,
) -> Customer {
    let customer = store
        .create_customer(
            NewCustomer {
                name: name.into(),
                currency: "USD".into(),
                key_hash: hash_api_key(key),
                key_prefix: key.chars().take(6).collect(),
            },
            actor,
            now,
        )
        .await
        .expect("create a customer");
    if deposit.is_positive() {
        store
            .adjust_balance(
                customer.id,
                LedgerKind::Deposit,
                deposit,
                "test deposit",
                actor,
                now,
            )
            .await
            .expect("fund the customer");
    }
    customer
}

/// The simulator's order status in the gateway's vocabulary.
pub fn wire_status(status: smm_panel_sim::OrderStatus) -> OrderStatus {
    use smm_panel_sim::OrderStatus as Sim;
    match status {
        Sim::Pending => OrderStatus::Pending,
        Sim::InProgress => OrderStatus::InProgress,
        Sim::Completed => OrderStatus::Completed,
        Sim::Partial => OrderStatus::Partial,
        Sim::Canceled => OrderStatus::Canceled,
        Sim::Active => OrderStatus::Active,
        Sim::Expired => OrderStatus::Expired,
    }
}

/// The refund `docs/billing.md`'s table owes for an order the simulator ended, worked out from
/// the simulator's own record of what it delivered (remains, runs done, posts served, its
/// refund to the reseller), not from what the gateway was told: an independent oracle.
pub fn owed_by_the_table(order: &smm_store::Order, upstream: &smm_panel_sim::SimOrder) -> Money {
    let share = |part: u64, whole: u64| {
        if whole == 0 {
            return Money::ZERO;
        }
        order
            .charge
            .mul_div_floor(part.min(whole), whole)
            .expect("a share of a charge fits")
    };
    let drip_runs = upstream.runs.filter(|_| upstream.service_type == "Default");
    let posts = (upstream.service_type == "Subscriptions")
        .then(|| upstream.params.get("posts")?.parse::<u64>().ok())
        .flatten();
    let by_upstream_charge = || {
        let units = |d: rust_decimal::Decimal| {
            u64::try_from(Money::from_decimal_round_down(d).expect("fits").units()).unwrap_or(0)
        };
        share(units(upstream.refunded), units(upstream.charge))
    };
    match wire_status(upstream.status) {
        OrderStatus::Refunded => order.charge,
        status if posts.is_some() => {
            let posts = posts.unwrap_or(0);
            let served = upstream.posts.unwrap_or(0);
            match status {
                OrderStatus::Completed | OrderStatus::Canceled | OrderStatus::Expired => {
                    share(posts.saturating_sub(served), posts)
                }
                _ => Money::ZERO,
            }
        }
        OrderStatus::Canceled => match (drip_runs, upstream.runs_done) {
            (Some(runs), Some(done)) if done > 0 => share(runs.saturating_sub(done), runs),
            _ => order.charge,
        },
        OrderStatus::Partial if order.units == 0 => by_upstream_charge(),
        OrderStatus::Partial => share(upstream.remains, order.units),
        _ => Money::ZERO,
    }
}

/// Sends `request` on a fresh TCP connection and reads until the server closes it or `limit`
/// passes: the bytes received, and whether the server closed the connection.
pub async fn send_raw(
    addr: std::net::SocketAddr,
    request: &[u8],
    limit: Duration,
) -> (Vec<u8>, bool) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    // Written while reading: the server may answer (and close) before taking it all.
    let request = request.to_vec();
    let write = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut received = Vec::new();
    let closed = tokio::time::timeout(limit, reader.read_to_end(&mut received))
        .await
        .is_ok();
    write.abort();
    (received, closed)
}

/// The status code of a raw HTTP reply (`HTTP/1.1 431 ...` → 431).
pub fn status_of(reply: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(reply);
    text.strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}
