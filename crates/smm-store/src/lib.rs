//! Persistence for smm-gateway: customers, an exact-money ledger, orders and their upstream
//! mapping, refills, cancel requests, stable local service ids and an audit log.
//!
//! One [`Store`] trait, two implementations: [`SqliteStore`] (the embedded default: a file under
//! `./data`, WAL, foreign keys, a busy timeout) and [`PostgresStore`] (for deployments that run
//! several gateways on one database). Both pass the same conformance suite
//! (`tests/conformance`). Pick one with [`connect`], which reads the URL scheme.
//!
//! Every operation is one transaction in domain words: [`Store::place_order`] checks the balance,
//! debits it, writes the ledger row and the order and queues it, all or nothing. Callers never
//! see SQL or sqlx errors: they are translated into [`StoreError`] at this boundary.
//!
//! # Money rules
//!
//! * Amounts are [`Money`]: integer units of 0.00001, stored as 64-bit integers.
//! * A customer's `balance` column always equals the sum of their ledger rows, and never goes
//!   below zero (a `CHECK` constraint backs the code).
//! * Charges are computed by the caller and frozen on the order; they round up
//!   ([`Money::from_decimal_round_up`]).
//! * Refunds round down and never exceed the charge ([`refund_due`]). An order has at most one
//!   refund row, enforced by a unique index, so two pollers, a repeated reply or a crash between
//!   reply and write can never pay twice.

mod group_commit;
mod model;
mod notify;
#[macro_use]
mod rows;
mod postgres;
mod rules;
mod scorecard;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use smm_wire::Money;

pub use group_commit::{ClaimOnPlacement, GroupCommit, GroupCounts};
pub use model::*;
pub use notify::*;
pub use postgres::PostgresStore;
pub use rules::refund_due;
pub use scorecard::*;
pub use sql::{Dialect, SqlStore};
pub use sqlite::SqliteStore;

/// Why a store operation failed, in domain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("not enough funds on balance")]
    InsufficientFunds,
    #[error("the customer is suspended")]
    CustomerSuspended,
    /// A uniqueness rule said no (the same upstream id twice at one provider, say).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The operation does not apply to the record's current state (resolving an order that is not
    /// ambiguous, say).
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// A value is out of range (an amount over [`Money::MAX`], a negative quantity, ...).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The database could not be reached or failed; the message is for logs.
    #[error("database error: {0}")]
    Database(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Opens the store named by `url` and runs its migrations: `sqlite:` URLs (`sqlite://data/x.db`,
/// `sqlite::memory:`) → [`SqliteStore`], `postgres:`/`postgresql:` → [`PostgresStore`]. Any
/// other scheme is an error.
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::Invalid(format!(
            "unsupported database URL scheme (use sqlite: or postgres:): {}",
            url.split(':').next().unwrap_or_default()
        )))
    }
}

/// The stored form of an API key: hex SHA-256. Keys are long random tokens, so a fast hash is
/// enough (nothing to brute-force), and it makes the lookup a single indexed equality.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The store. Implementations are cheap to share (`Arc<dyn Store>`); every method is one
/// transaction. `now` is passed in so tests and the reconciler control time.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    fn backend(&self) -> Backend;

    /// A trivial query: is the database reachable?
    async fn ping(&self) -> StoreResult<()>;

    // ---- customers and money -------------------------------------------------------------

    /// Creates a customer with a zero balance; audited.
    async fn create_customer(
        &self,
        new: NewCustomer,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer>;

    async fn customer(&self, id: CustomerId) -> StoreResult<Customer>;

    /// The customer whose key hashes to `key_hash`, whatever their status.
    async fn customer_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<Customer>>;

    async fn list_customers(&self) -> StoreResult<Vec<Customer>>;

    /// Suspends or reactivates; audited.
    async fn set_customer_status(
        &self,
        id: CustomerId,
        status: CustomerStatus,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer>;

    /// Replaces the key (hash and prefix); the old key stops working at once; audited.
    async fn rotate_key(
        &self,
        id: CustomerId,
        key_hash: &str,
        key_prefix: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer>;

    /// Sets or clears the customer's discount percent (0 < d < 100); audited.
    async fn set_discount(
        &self,
        id: CustomerId,
        discount: Option<Decimal>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Customer>;

    /// Sets (or with `None` removes) a custom rate for one service; audited.
    async fn set_customer_rate(
        &self,
        id: CustomerId,
        service: ServiceId,
        rate: Option<Decimal>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()>;

    async fn customer_rates(&self, id: CustomerId) -> StoreResult<Vec<(ServiceId, Decimal)>>;

    /// Credits (positive) or debits (negative) a balance with a reason: a ledger row of `kind`
    /// (`Deposit` or `Adjustment` only) and an audit row. A debit below zero is
    /// `InsufficientFunds`; a zero amount is `Invalid`.
    async fn adjust_balance(
        &self,
        id: CustomerId,
        kind: LedgerKind,
        amount: Money,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<LedgerEntry>;

    /// Newest first; `before` pages backwards.
    async fn ledger(
        &self,
        id: CustomerId,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<LedgerEntry>>;

    /// The sum of the customer's ledger rows (for consistency checks).
    async fn ledger_sum(&self, id: CustomerId) -> StoreResult<Money>;

    // ---- orders ----------------------------------------------------------------------------

    /// Places an order in one transaction: an active customer, a balance covering the charge,
    /// the debit, the `charge` ledger row, the order (`queued`, status `Pending`). With an
    /// idempotency key already used by this customer, returns the first order and changes
    /// nothing. `InsufficientFunds` and `CustomerSuspended` change nothing.
    async fn place_order(&self, new: NewOrder, now: Timestamp) -> StoreResult<Placed>;

    /// Places several orders in one transaction (group commit), each by the rules of
    /// [`Store::place_order`]: each answered as it would be alone (its own key, status and
    /// balance checks; refusals change nothing), the balances moving in the order given, and
    /// all the new orders made durable by one commit. The results are in the order given.
    /// A failed commit fails every placement of the group, and none is then retried.
    async fn place_orders(&self, batch: Vec<(NewOrder, Timestamp)>) -> Vec<StoreResult<Placed>>;

    /// [`Store::place_orders`], claiming for forwarding in the same transaction the new orders
    /// that `claim.first_attempts` gives a first attempt (issue #16). It is shown the group's
    /// new orders as they would stand in the queue, ids included, sorted by id, and answers as
    /// it would for [`Store::claim_and_begin`]. Each order it picks is written as that claim
    /// would leave it (`sending`, claimed by `claim.worker`, one attempt, its first route set,
    /// a `sending` step in its timeline) with that attempt pending, and is answered as
    /// [`Placed::New`] in that state; the others are placed queued. No queued version of a
    /// claimed order is ever written, so it costs no claim of its own. If the group is placed
    /// one by one instead (a statement failed before its commit), nothing is claimed.
    async fn place_orders_claiming(
        &self,
        batch: Vec<(NewOrder, Timestamp)>,
        claim: PlacementClaim<'_>,
    ) -> Vec<StoreResult<Placed>>;

    /// [`Store::place_orders_claiming`] (or [`Store::place_orders`] without `claim`) and
    /// [`Store::finish_attempts`] in one transaction and one commit (issue #16: SQLite's one
    /// writer commits placements and the forwarder's outcomes together). Each placement and
    /// each outcome is answered as it would be by its own call; should either part fail before
    /// the commit, both are rolled back and each is written by its own call instead. A failed
    /// commit fails them all, none retried.
    async fn place_and_finish(
        &self,
        placements: Vec<(NewOrder, Timestamp)>,
        claim: Option<PlacementClaim<'_>>,
        outcomes: Vec<(OrderId, ForwardOutcome, Timestamp)>,
    ) -> (Vec<StoreResult<Placed>>, Vec<StoreResult<Order>>);

    /// The customer's order placed with idempotency key `key`, with the request fingerprint
    /// it was placed with ([`NewOrder::request_fingerprint`]), if any.
    async fn order_by_idempotency_key(
        &self,
        customer: CustomerId,
        key: &str,
    ) -> StoreResult<Option<KeyedOrder>>;

    async fn order(&self, id: OrderId) -> StoreResult<Order>;

    /// The customer's orders among `ids` (others' and unknown ids are simply absent).
    async fn customer_orders(
        &self,
        customer: CustomerId,
        ids: &[OrderId],
    ) -> StoreResult<Vec<Order>>;

    /// [`Store::customer_orders`] for `status`: the same orders, only the columns the reply
    /// shows, ascending by id.
    async fn customer_order_statuses(
        &self,
        customer: CustomerId,
        ids: &[OrderId],
    ) -> StoreResult<Vec<OrderStatusView>>;

    /// Newest first.
    async fn list_orders(&self, filter: &OrderFilter) -> StoreResult<Vec<Order>>;

    /// Counts by forwarding state (for metrics and the admin view).
    async fn count_by_forward_state(&self) -> StoreResult<Vec<(ForwardState, i64)>>;

    /// Counts by order status (`Pending`, `In progress`, ..., unknown upstream statuses as
    /// `Unknown`), only the statuses that occur; for metrics.
    async fn count_by_status(&self) -> StoreResult<Vec<(String, i64)>>;

    /// Claims up to `limit` queued orders whose `forward_after` has passed, oldest first, and
    /// marks them `sending` by `worker` (attempts + 1). Two workers never get the same order.
    async fn claim_for_forwarding(
        &self,
        worker: &str,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<Order>>;

    /// [`Store::claim_for_forwarding`] and [`Store::begin_attempts`] with one commit: the due
    /// queued orders are picked, `first_attempts` is shown them as they stand in the queue
    /// (sorted by id) and says which go at once and where (attempts for orders of this claim
    /// only, each at most once), then they are claimed (returned as claimed, with the routes
    /// of those attempts) and the attempts noted. All or nothing: on any error nothing is
    /// claimed and nothing noted.
    async fn claim_and_begin(
        &self,
        worker: &str,
        limit: u32,
        now: Timestamp,
        first_attempts: &mut (dyn for<'o> FnMut(&'o [Order]) -> Vec<AttemptStart> + Send),
    ) -> StoreResult<Vec<Order>>;

    /// Durably notes that `order` is about to be sent to `provider` (a `pending` attempt row, the
    /// order's provider and upstream service set) — committed before the call leaves. Renews the
    /// claim (`claimed_at = now`), so the lease measured by [`Store::recover_sending`] covers
    /// each attempt, not the whole batch.
    async fn begin_attempt(
        &self,
        order: OrderId,
        provider: &str,
        upstream_service: &str,
        now: Timestamp,
    ) -> StoreResult<()>;

    /// Renews the claim of an order `worker` holds in `sending` with no attempt pending
    /// (`claimed_at = now`), while it waits for its provider's rate limit before the attempt is
    /// noted: a wait is not a call in flight, so it never counts against the lease. False when
    /// the claim is no longer `worker`'s (recovered, or finished): then nothing may be sent.
    async fn renew_claim(&self, order: OrderId, worker: &str, now: Timestamp) -> StoreResult<bool>;

    /// [`Store::begin_attempt`] for several orders in one transaction (the forwarder notes the
    /// first route of a whole claimed batch with one commit). All or nothing: on any error no
    /// attempt is noted and nothing may be sent.
    async fn begin_attempts(&self, attempts: &[AttemptStart], now: Timestamp) -> StoreResult<()>;

    /// Records the outcome of the pending attempt. `Sent` → `sent` with the upstream id (unique
    /// per provider: a clash is `Conflict` and the order becomes `ambiguous`);
    /// `Ambiguous` → `ambiguous`; `Failed` → the order stays `sending` for the next route.
    async fn finish_attempt(
        &self,
        order: OrderId,
        outcome: ForwardOutcome,
        now: Timestamp,
    ) -> StoreResult<Order>;

    /// [`Store::finish_attempt`] for several outcomes, in one transaction when all go through
    /// (group commit; the forwarder records a round's outcomes together). Each gets the answer
    /// it would get alone, in the order given: should one fail (an upstream id clash, an order
    /// no longer `sending`), the outcomes are recorded one by one. A failed commit fails them
    /// all, none retried.
    async fn finish_attempts(
        &self,
        outcomes: Vec<(OrderId, ForwardOutcome, Timestamp)>,
    ) -> Vec<StoreResult<Order>>;

    /// Every route failed without the request leaving: back to `queued`, not before
    /// `not_before`. `InvalidState` unless the order is `sending` with no attempt pending: a
    /// pending attempt may have reached the upstream, and queuing it again could send it twice.
    async fn requeue(
        &self,
        order: OrderId,
        not_before: Timestamp,
        detail: &str,
        now: Timestamp,
    ) -> StoreResult<()>;

    /// Every route definitively rejected: `rejected`, status `Canceled`, full refund (once).
    /// `InvalidState` unless the order is `queued` or `sending` with no attempt pending (an
    /// attempt in flight may yet be accepted upstream: finish it first).
    async fn reject_order(
        &self,
        order: OrderId,
        detail: &str,
        now: Timestamp,
    ) -> StoreResult<Money>;

    /// Orders left in `sending` by a worker that claimed them before `claimed_before` (a crash,
    /// an expired lease) become `ambiguous`. Returns their ids.
    async fn recover_sending(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<OrderId>>;

    async fn attempts(&self, order: OrderId) -> StoreResult<Vec<ForwardAttempt>>;

    /// Admin: an ambiguous order was found upstream under `upstream_order_id` at `provider`: it
    /// becomes `sent` and is polled like any other. Audited.
    async fn attach_upstream_order(
        &self,
        order: OrderId,
        provider: &str,
        upstream_order_id: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Order>;

    /// Admin: an ambiguous order is given up: `rejected`, status `Canceled`, full refund.
    /// Audited.
    async fn cancel_ambiguous(
        &self,
        order: OrderId,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Money>;

    /// Orders on the attention list (ended upstream, refund unknown), oldest first.
    async fn attention_orders(&self, limit: u32) -> StoreResult<Vec<Order>>;

    /// Every customer's order count and spend (charges less refunds), kept with each ledger
    /// posting: no scan of the orders.
    async fn customer_totals(&self) -> StoreResult<Vec<CustomerTotals>>;

    /// How many orders are on the attention list.
    async fn attention_count(&self) -> StoreResult<i64>;

    /// Settles an order on the attention list: `refund` (at most what is left of its charge;
    /// zero for none) paid as its one refund row with `reason`, the order taken off the list,
    /// audited. Returns the refund.
    async fn settle_attention(
        &self,
        order: OrderId,
        refund: Money,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Money>;

    // ---- polling ---------------------------------------------------------------------------

    /// Claims up to `limit` sent, non-terminal orders due for a poll (at `provider` if given),
    /// oldest due first, each leased until `lease_until` so that no other poller takes it
    /// meanwhile. The lease ends early when the order's status is applied or its poll deferred;
    /// the order's own `next_poll_at` is left as it was.
    async fn claim_polls(
        &self,
        provider: Option<&str>,
        limit: u32,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<PollItem>>;

    /// Applies an upstream status to the order known as `upstream_order_id` at `provider`, and
    /// pays the refund it owes ([`refund_due`] less what was refunded) at most once. A terminal
    /// order is never changed again. `Ok(None)` when no order has that upstream id there.
    async fn apply_status(
        &self,
        provider: &str,
        upstream_order_id: &str,
        update: StatusUpdate,
        now: Timestamp,
    ) -> StoreResult<Option<StatusApplied>>;

    /// [`Store::apply_status`] for many orders of one provider, in the order given, in one
    /// transaction: the statuses that owe nothing in one statement, then the refunds owed
    /// (customers in id order), then those orders' statuses in one statement. A later report of
    /// an order in the batch replaces an earlier one, which answers as the later did without
    /// its refund. Should a refund fail (the index refusing a second one, say), the batch is
    /// rolled back and applied order by order through [`Store::apply_status`]: only the
    /// failing order's status is left unapplied (`None` for an error, logged).
    async fn apply_statuses(
        &self,
        provider: &str,
        updates: Vec<(String, StatusUpdate)>,
        now: Timestamp,
    ) -> StoreResult<Vec<Option<StatusApplied>>>;

    /// Moves the next poll of `orders` to `next_poll_at`, and ends their poll leases, without
    /// touching anything else (the upstream failed; back off).
    async fn defer_polls(&self, orders: &[OrderId], next_poll_at: Timestamp) -> StoreResult<()>;

    // ---- refills and cancels ---------------------------------------------------------------

    /// Records a customer's refill request for their order (`queued`), or returns the order's
    /// open refill (`queued`, `sending` or `sent` and not Completed, Rejected or Canceled) if it
    /// has one: one open refill per order, however many ask at once.
    async fn create_refill(
        &self,
        customer: CustomerId,
        order: OrderId,
        now: Timestamp,
    ) -> StoreResult<Refill>;

    /// Records what forwarding or polling a refill learned.
    async fn update_refill(
        &self,
        id: RefillId,
        update: RefillUpdate,
        now: Timestamp,
    ) -> StoreResult<Refill>;

    /// The customer's refills among `ids`.
    async fn customer_refills(
        &self,
        customer: CustomerId,
        ids: &[RefillId],
    ) -> StoreResult<Vec<Refill>>;

    /// Refills in `state`, oldest first.
    async fn refills_in_state(&self, state: ForwardState, limit: u32) -> StoreResult<Vec<Refill>>;

    /// Refills that are upstream (`sent`) and not finished (not Completed, Rejected or
    /// Canceled), oldest first: the ones worth polling. A plain listing: polling only reads
    /// upstream, so two pollers asking about one refill cost a request, never a second refill.
    async fn unfinished_refills(&self, limit: u32) -> StoreResult<Vec<Refill>>;

    /// Claims up to `limit` queued refills, oldest first, and marks them `sending` by `worker`
    /// (committed before the call leaves). Two workers, in one process or several, never get
    /// the same refill. The claimer records the outcome with [`Store::update_refill`]; a
    /// refill it cannot forward now goes back with `forward_state: Some(Queued)`.
    async fn claim_refills(
        &self,
        worker: &str,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<Refill>>;

    /// Refills left in `sending` by a worker that claimed them before `claimed_before` (it died,
    /// or its lease expired mid-call) become `ambiguous`, with the claimer named in `error`.
    /// The upstream may have received the refill, so it is never sent again automatically
    /// (as for orders, see [`Store::recover_sending`]). Returns their ids, ascending.
    async fn recover_sending_refills(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<RefillId>>;

    /// A customer asks to cancel their order. Still `queued` locally → canceled and fully
    /// refunded at once; upstream and running, or on its way (`sending`, `ambiguous`) → a
    /// cancel request (one per order) is recorded, forwarded once the order is `sent`; asked
    /// again → that same request, whatever became of it (a `rejected` one carries the
    /// upstream's refusal); terminal (with no refused request) or `rejected` → `InvalidState`.
    /// Whether the service allows cancels is the caller's check.
    async fn request_cancel(
        &self,
        customer: CustomerId,
        order: OrderId,
        now: Timestamp,
    ) -> StoreResult<CancelOutcome>;

    /// Ends queued cancel requests (at most `limit`) whose order will not reach the upstream:
    /// every route refused it (`rejected`, already refunded in full) or it went back to the
    /// queue (canceled and refunded in full now). Each closed request becomes `rejected` with
    /// a note, never forwarded. Returns the orders, with the refund paid now if any.
    async fn close_unsendable_cancels(
        &self,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<(OrderId, Option<Money>)>>;

    async fn update_cancel(
        &self,
        id: i64,
        state: ForwardState,
        error: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<CancelRequest>;

    async fn cancels_in_state(
        &self,
        state: ForwardState,
        limit: u32,
    ) -> StoreResult<Vec<CancelRequest>>;

    /// Claims up to `limit` queued cancel requests of `sent` orders, oldest first, and marks
    /// them `sending` by `worker`: [`Store::claim_refills`] for cancels. The claimer records the outcome with
    /// [`Store::update_cancel`].
    async fn claim_cancels(
        &self,
        worker: &str,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<CancelRequest>>;

    /// Cancel requests left in `sending` by a claim older than `claimed_before` become
    /// `ambiguous`, never re-sent: [`Store::recover_sending_refills`] for cancels. Returns
    /// their ids, ascending.
    async fn recover_sending_cancels(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<i64>>;

    // ---- catalog and audit -----------------------------------------------------------------

    /// The stable local id of `(provider, upstream_service)`: assigned on first sight, the same
    /// forever after.
    async fn service_id(&self, provider: &str, upstream_service: &str) -> StoreResult<ServiceId>;

    /// Every assigned `(local id, provider, upstream service)`.
    async fn service_ids(&self) -> StoreResult<Vec<(ServiceId, String, String)>>;

    /// Appends an audit row for an action not recorded by another method (a config reload).
    async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        before: Option<&str>,
        after: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()>;

    /// Newest first.
    async fn audit_log(&self, limit: u32) -> StoreResult<Vec<AuditEntry>>;

    /// The entries `filter` lets through, newest first.
    async fn search_audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>>;

    /// The order's status changes, ledger rows, refills and cancel request (the console's
    /// timeline of an order).
    async fn order_timeline(&self, order: OrderId) -> StoreResult<OrderTimeline>;

    /// Orders still `queued` or `sending` that were placed before `before`: stuck on their way
    /// upstream (the console's attention list).
    async fn stuck_orders_count(&self, before: Timestamp) -> StoreResult<i64>;

    /// Every route's record over `window` (issue #15): the per-day aggregates of migration
    /// 0013 summed, by provider and upstream service. A few rows per route and day, never a
    /// scan of the orders.
    async fn route_records(&self, window: ScoreWindow) -> StoreResult<Vec<RouteRecord>>;

    /// The route's last attempts that can be judged ([`RecentQuery`]), newest first, with what
    /// became of their orders.
    async fn recent_attempts(
        &self,
        provider: &str,
        upstream_service: &str,
        recent: RecentQuery,
    ) -> StoreResult<Vec<RecentAttempt>>;

    /// Folds the order aggregates' pending deltas into their totals (PostgreSQL; nothing to do
    /// on SQLite). Readers add the deltas anyway: this only keeps them few. Run by the
    /// reconciler at most every 5 s.
    async fn compact_aggregates(&self) -> StoreResult<()>;

    /// What the orders placed since the UTC day holding `since` add up to, per day and per
    /// provider (the console's overview). Kept by the database as orders are written
    /// (migration 0010): a few rows per day, never a scan of the orders.
    async fn order_totals_since(&self, since: Timestamp) -> StoreResult<OrderTotals>;

    // ---- console users and sessions ---------------------------------------------------------

    /// Creates a console user (audited as `admin.create`). A taken username is `Conflict`.
    async fn create_admin(
        &self,
        new: NewAdmin,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<AdminUser>;

    /// Every console user, by username.
    async fn admins(&self) -> StoreResult<Vec<AdminUser>>;

    async fn admin_by_username(&self, username: &str) -> StoreResult<Option<AdminUser>>;

    /// Counts a failed login; the failure that reaches `lockout.max_failures` locks the
    /// account for `lockout.lock_ms` (audited as `admin.lock`). Returns the user as it now is.
    async fn login_failed(
        &self,
        user: i64,
        lockout: Lockout,
        now: Timestamp,
    ) -> StoreResult<AdminUser>;

    /// A successful login: clears the failure count, opens `session` (audited as
    /// `admin.login`), and drops the user's expired sessions. `InvalidState` when the account
    /// is locked at `now` (a concurrent failure locked it since the password was checked).
    async fn login_succeeded(
        &self,
        user: i64,
        session: NewSession,
        now: Timestamp,
    ) -> StoreResult<AdminSession>;

    /// The live session whose token hashes to `token_hash`; `None` when unknown or expired.
    async fn admin_session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<AdminSession>>;

    /// Ends a session (logout, audited as `admin.logout`). Ending an unknown one is a no-op.
    async fn end_admin_session(&self, token_hash: &str, now: Timestamp) -> StoreResult<()>;

    /// Keeps `provider`'s last good catalog (opaque JSON), replacing the previous one.
    async fn save_provider_catalog(
        &self,
        provider: &str,
        services_json: &str,
        now: Timestamp,
    ) -> StoreResult<()>;

    /// Every saved catalog: `(provider, services JSON, synced at)`.
    async fn provider_catalogs(&self) -> StoreResult<Vec<(String, String, Timestamp)>>;

    // ---- customer webhooks (issue #14) ----------------------------------------------------

    /// The customer's webhook settings and how many events wait.
    async fn webhook(&self, customer: CustomerId) -> StoreResult<WebhookSettings>;

    /// Points the customer's events at `url`, signed with `secret` (a new one each time), and
    /// lifts a pause; `None` removes the webhook and discards the events still waiting.
    /// Audited as `customer.webhook` with the URL, never the secret.
    async fn set_webhook(
        &self,
        customer: CustomerId,
        target: Option<(&str, &str)>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<WebhookSettings>;

    /// Sets or clears the balance under which a `balance.low` event is recorded (once per
    /// crossing). Audited as `customer.low_balance`.
    async fn set_low_balance_threshold(
        &self,
        customer: CustomerId,
        threshold: Option<Money>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<WebhookSettings>;

    /// Lifts the pause of a customer's deliveries: waiting events go out again, at once.
    /// Audited as `customer.webhook_resume`. `InvalidState` when not paused.
    async fn resume_webhook(
        &self,
        customer: CustomerId,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<WebhookSettings>;

    /// Claims up to `limit` events due at `now` until `lease_until`, oldest first, of customers
    /// with a webhook that is not paused, at most `per_customer` of any one customer and none
    /// of the customers in `skip` (the claimer's receivers already busy). An event is never
    /// claimed while an older event of the same order waits, so an order's events go out in
    /// order; two claimers never get the same event while its lease runs.
    async fn claim_webhook_events(
        &self,
        claim: WebhookClaim<'_>,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<WebhookJob>>;

    /// Records delivery attempts (the log) and what becomes of each event, in one
    /// transaction; a customer this pauses (not paused before) gets a `webhook.paused` alert
    /// to `alert_channels` in that same transaction. Returns the customers it paused.
    async fn finish_webhook_deliveries(
        &self,
        outcomes: &[DeliveryOutcome],
        alert_channels: &[String],
        now: Timestamp,
    ) -> StoreResult<Vec<CustomerId>>;

    /// The customer's events, newest first; `before` pages backwards by id.
    async fn webhook_events(
        &self,
        customer: CustomerId,
        limit: u32,
        before: Option<i64>,
    ) -> StoreResult<Vec<WebhookEvent>>;

    async fn webhook_event(&self, id: i64) -> StoreResult<WebhookEvent>;

    /// The customer's delivery log, newest first; `before` pages backwards by id.
    async fn webhook_deliveries(
        &self,
        customer: CustomerId,
        limit: u32,
        before: Option<i64>,
    ) -> StoreResult<Vec<WebhookDelivery>>;

    /// Queues an event again (delivered or not) to go out at once: the same event id, so a
    /// receiver that has it can tell. Audited as `webhook.resend`. `InvalidState` when the
    /// customer has no webhook now.
    async fn resend_webhook_event(
        &self,
        event: i64,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<WebhookEvent>;

    async fn webhook_backlog(&self) -> StoreResult<WebhookBacklog>;

    /// Deletes what notifications no longer need: webhook events delivered or discarded
    /// before `webhooks_before`, with their delivery log; alerts sent or given up, and
    /// conditions that are off (and one-off keys) unchanged, before `alerts_before`. Events
    /// still waiting and conditions still on are kept whatever their age. Returns how many
    /// rows went.
    async fn prune_notifications(
        &self,
        webhooks_before: Timestamp,
        alerts_before: Timestamp,
    ) -> StoreResult<u64>;

    /// Lets go of every claim on webhook events and alerts, for a process that knows no other
    /// delivers (SQLite's single instance, at start): what a killed process held goes out at
    /// once instead of after its lease. Returns how many were held.
    async fn release_notification_claims(&self) -> StoreResult<u64>;

    // ---- the reseller's alerts (issue #14) -------------------------------------------------

    /// Orders not started (status `Pending`, whether queued, on their way or upstream) that
    /// were placed before `placed_before`, oldest first, at most `limit`: the stuck-orders
    /// alert's candidates.
    async fn unstarted_orders(
        &self,
        placed_before: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(OrderId, ServiceId, Timestamp)>>;

    /// When the oldest order still waiting to be forwarded (`queued`) was placed.
    async fn oldest_queued_at(&self) -> StoreResult<Option<Timestamp>>;

    /// Moves condition `alert.key` to on (`active`) or off. Only the call that changes it
    /// (on any instance) writes the alert to the outbox, once per channel, and returns true.
    /// A start within `cooldown_ms` of the last alert sent for this key is held back: sent by
    /// the first call that finds it still on once the cooldown has passed; if it ends before,
    /// neither it nor its clear is sent.
    async fn alert_condition(
        &self,
        alert: &NewAlert<'_>,
        active: bool,
        cooldown_ms: i64,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// Writes a one-off alert to the outbox once per `alert.key`, ever: true when this call
    /// wrote it.
    async fn alert_event(&self, alert: &NewAlert<'_>, now: Timestamp) -> StoreResult<bool>;

    /// Conditions on now, by key.
    async fn active_alerts(&self) -> StoreResult<Vec<AlertCondition>>;

    /// Claims up to `limit` alerts due at `now` until `lease_until`, oldest first.
    async fn claim_alerts(
        &self,
        limit: u32,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<AlertMessage>>;

    async fn finish_alerts(&self, outcomes: &[AlertOutcome], now: Timestamp) -> StoreResult<()>;

    // ---- change notifications --------------------------------------------------------------

    /// Customer changes committed by any process on this database (a key rotation, a status,
    /// a discount or a custom rate), as they commit: on PostgreSQL each of those transactions
    /// sends a `NOTIFY` on [`CUSTOMER_CHANNEL`] and a background task (spawned here, on the
    /// current tokio runtime) listens; after the listening connection is (re)established it
    /// sends [`CustomerEvent::Resync`], since changes may have been missed meanwhile. `None`
    /// where the database cannot notify (SQLite): caches then rely on their lifetime alone.
    /// The task ends when the receiver is dropped.
    fn customer_events(&self) -> Option<tokio::sync::mpsc::Receiver<CustomerEvent>> {
        None
    }
}

/// The PostgreSQL channel customer changes are announced on (payload: the customer id).
pub const CUSTOMER_CHANNEL: &str = "smm_customer_changed";

/// A customer change announced by the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerEvent {
    /// This customer's key, status or prices changed.
    Changed(CustomerId),
    /// Changes may have been missed (the listener (re)connected): forget everything cached.
    Resync,
}

/// What forwarding or polling learned about a refill. `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefillUpdate {
    pub provider: Option<String>,
    pub upstream_refill_id: Option<String>,
    pub status: Option<smm_wire::RefillStatus>,
    pub forward_state: Option<ForwardState>,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use smm_wire::OrderStatus;

    #[test]
    fn refunds_follow_the_rules() {
        let charge = Money::from_units(27_819);
        assert_eq!(
            refund_due(&OrderStatus::Canceled, charge, 1000, None),
            charge
        );
        assert_eq!(
            refund_due(&OrderStatus::Refunded, charge, 1000, Some(3)),
            charge
        );
        assert_eq!(
            refund_due(&OrderStatus::Partial, charge, 1000, Some(157)),
            Money::from_units(4_367)
        );
        // Over-delivery and nonsense remains clamp.
        assert_eq!(
            refund_due(&OrderStatus::Partial, charge, 1000, Some(-5)),
            Money::ZERO
        );
        assert_eq!(
            refund_due(&OrderStatus::Partial, charge, 1000, Some(5000)),
            charge
        );
        assert_eq!(
            refund_due(&OrderStatus::Partial, charge, 1000, None),
            Money::ZERO
        );
        assert_eq!(
            refund_due(&OrderStatus::Completed, charge, 1000, Some(10)),
            Money::ZERO
        );
        assert_eq!(
            refund_due(&OrderStatus::Unknown("x".into()), charge, 1000, Some(10)),
            Money::ZERO
        );
    }

    #[test]
    fn key_hash_is_hex_sha256() {
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
