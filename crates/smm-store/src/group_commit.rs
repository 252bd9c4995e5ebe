//! Group commit for placements and forwarding outcomes (issue #16).
//!
//! A durable commit costs one `fdatasync` (about 0.3 ms on the project's disk), so placing
//! orders one transaction each tops out at the disk's commit rate. [`GroupCommit`] queues the
//! placements that arrive while a commit is under way and places them together with
//! [`Store::place_orders`]: one transaction, one commit, each placement still checked and
//! answered on its own. The forwarder's outcomes go the same way ([`Store::finish_attempts`]). Nothing waits for a group to fill: a lane takes whatever is queued when
//! it is free, so one placement alone goes at once and a burst shares its commits.
//!
//! A placement's answer is sent only after the commit holding it has returned, so an answered
//! order is durable. A placement whose caller has gone (the client hung up) is still placed
//! once if it was queued: it is then an unanswered order, placed once or not at all, like a
//! placement interrupted by a crash.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{
    AttemptStart, ForwardOutcome, ForwardState, NewOrder, Order, OrderId, Placed, PlacementClaim,
    Store, StoreError, StoreResult, Timestamp,
};

/// The most placements one transaction holds: large enough to share a commit among many
/// concurrent clients, small enough that one transaction stays short (a few milliseconds).
pub const MAX_GROUP: usize = 64;

/// Placements waiting for a lane; a caller waits (back-pressure) when this many are queued.
const QUEUE: usize = 4096;

/// The queues in front of [`Store::place_orders`] and [`Store::finish_attempts`]. Cheap to
/// clone; the lanes stop when the last clone is dropped.
#[derive(Clone)]
pub struct GroupCommit {
    placements: Queue<(NewOrder, Timestamp), StoreResult<Placed>>,
    outcomes: Queue<(OrderId, ForwardOutcome, Timestamp), StoreResult<Order>>,
    claims: Arc<ClaimsSlot>,
    /// How many lanes take placements.
    lanes: usize,
}

/// Claims new orders for forwarding in the transaction that places them (issue #16): the
/// forwarder, which would otherwise claim them from the queue with a transaction and a commit
/// of its own. See [`Store::place_orders_claiming`].
pub trait ClaimOnPlacement: Send + Sync {
    /// The worker the orders are claimed for.
    fn worker(&self) -> &str;

    /// Inside a group's transaction, before its commit: the first attempts of those of the
    /// group's new `orders` to claim now (as [`Store::claim_and_begin`]'s `first_attempts`).
    fn first_attempts(&self, orders: &[Order]) -> Vec<AttemptStart>;

    /// After the group, committed or not: of the orders `picked` (every order the group's
    /// `first_attempts` answered for), `claimed` are committed claimed, `sending` with their
    /// first attempt noted, and are the caller's to forward. The others were not claimed (the
    /// group failed, or was placed one by one): nothing may be sent for them.
    fn settle(&self, picked: &[OrderId], claimed: Vec<Order>);
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts `lanes` tasks per queue on `store` (at least one). On SQLite, one lane: its
    /// single writer commits one transaction at a time anyway. On PostgreSQL more lanes overlap
    /// one group's commit with the next group's statements; groups lock their rows in id
    /// order, so lanes never deadlock each other. Must be called inside a tokio runtime.
    pub fn start(store: Arc<dyn Store>, lanes: usize) -> GroupCommit {
        let placing = Arc::clone(&store);
        let finishing = store;
        let claims: Arc<ClaimsSlot> = Arc::default();
        let claiming = Arc::clone(&claims);
        GroupCommit {
            placements: Queue::start(lanes, move |batch| {
                let store = Arc::clone(&placing);
                let claims = current(&claiming);
                async move { write(&*store, batch, claims.as_deref(), Vec::new()).await.0 }
            }),
            outcomes: Queue::start(lanes, move |batch| {
                let store = Arc::clone(&finishing);
                async move { store.finish_attempts(batch).await }
            }),
            claims,
            lanes: lanes.max(1),
        }
    }

    /// `lanes` lanes (at least one) for placements and outcomes both, on `store`: what is
    /// queued of each when a lane is free goes into one transaction and one commit
    /// ([`Store::place_and_finish`]), where separate queues would commit a group of placements
    /// and a group of the forwarder's outcomes one after the other. Must be called inside a
    /// tokio runtime.
    pub fn start_together(store: Arc<dyn Store>, lanes: usize) -> GroupCommit {
        let (placements, placing) = Queue::channel();
        let (outcomes, finishing) = Queue::channel();
        let claims: Arc<ClaimsSlot> = Arc::default();
        let queues = Arc::new(Mutex::new((placing, finishing)));
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane_together(
                Arc::clone(&store),
                Arc::clone(&claims),
                Arc::clone(&queues),
                [Arc::clone(&placements.counts), Arc::clone(&outcomes.counts)],
            ));
        }
        GroupCommit {
            placements,
            outcomes,
            claims,
            lanes: lanes.max(1),
        }
    }

    /// From now on, each group's new orders are shown to `claims`, which claims those it can
    /// forward at once in the group's own transaction (the forwarder, while it runs); `None`
    /// stops that. A group already under way keeps the claims it started with.
    ///
    /// One lane only: [`ClaimOnPlacement::settle`] is told of orders by id, and on SQLite a
    /// rolled-back group's ids are handed out again, so with two lanes one group's settling
    /// could take another's order. With more lanes this refuses (returns false, claims
    /// nothing at placement).
    pub fn claim_on_placement(&self, claims: Option<Arc<dyn ClaimOnPlacement>>) -> bool {
        if claims.is_some() && self.lanes > 1 {
            tracing::warn!(
                lanes = self.lanes,
                "claims at placement need a single lane; orders are claimed from the queue"
            );
            return false;
        }
        match self.claims.write() {
            Ok(mut slot) => *slot = claims,
            Err(poisoned) => *poisoned.into_inner() = claims,
        }
        true
    }

    /// The groups written so far and what they held.
    pub fn counts(&self) -> GroupCounts {
        let read = |c: &Counts| {
            (
                c.groups.load(Ordering::Relaxed),
                c.items.load(Ordering::Relaxed),
            )
        };
        let (placement_groups, placements) = read(&self.placements.counts);
        let (outcome_groups, outcomes) = read(&self.outcomes.counts);
        GroupCounts {
            placement_groups,
            placements,
            outcome_groups,
            outcomes,
        }
    }

    /// Places one order ([`Store::place_order`]'s rules), sharing its commit with the
    /// placements queued beside it. Answers once that commit has returned.
    pub async fn place(&self, new: NewOrder, now: Timestamp) -> StoreResult<Placed> {
        self.placements.submit((new, now)).await
    }

    /// Records one forwarding outcome ([`Store::finish_attempt`]'s rules), sharing its commit
    /// with the outcomes queued beside it. Answers once that commit has returned.
    pub async fn finish_attempt(
        &self,
        order: OrderId,
        outcome: ForwardOutcome,
        now: Timestamp,
    ) -> StoreResult<Order> {
        self.outcomes.submit((order, outcome, now)).await
    }
}

/// Where [`GroupCommit::claim_on_placement`] puts the claims its lanes read for each group.
type ClaimsSlot = RwLock<Option<Arc<dyn ClaimOnPlacement>>>;

fn current(claims: &ClaimsSlot) -> Option<Arc<dyn ClaimOnPlacement>> {
    claims
        .read()
        .map_or_else(|poisoned| poisoned.into_inner().clone(), |c| c.clone())
}

/// One group of placements and one of outcomes (either may be empty) written together
/// ([`Store::place_and_finish`]), the new orders shown to `claims` if any, and its claims
/// settled.
async fn write(
    store: &dyn Store,
    placements: Vec<(NewOrder, Timestamp)>,
    claims: Option<&dyn ClaimOnPlacement>,
    outcomes: Vec<(OrderId, ForwardOutcome, Timestamp)>,
) -> (Vec<StoreResult<Placed>>, Vec<StoreResult<Order>>) {
    let Some(claims) = claims else {
        return store.place_and_finish(placements, None, outcomes).await;
    };
    let mut picked: Vec<OrderId> = Vec::new();
    let mut first_attempts = |orders: &[Order]| {
        let attempts = claims.first_attempts(orders);
        picked.extend(attempts.iter().map(|a| a.order));
        attempts
    };
    let (placed, finished) = store
        .place_and_finish(
            placements,
            Some(PlacementClaim {
                worker: claims.worker(),
                first_attempts: &mut first_attempts,
            }),
            outcomes,
        )
        .await;
    let claimed = placed
        .iter()
        .filter_map(|result| match result {
            Ok(Placed::New(order)) if order.forward_state == ForwardState::Sending => {
                Some(order.clone())
            }
            _ => None,
        })
        .collect();
    claims.settle(&picked, claimed);
    (placed, finished)
}

/// [`GroupCommit::start_together`]'s queues: placements, outcomes.
type Together = (
    mpsc::Receiver<Job<(NewOrder, Timestamp), StoreResult<Placed>>>,
    mpsc::Receiver<Job<(OrderId, ForwardOutcome, Timestamp), StoreResult<Order>>>,
);

/// A lane of [`GroupCommit::start_together`].
async fn lane_together(
    store: Arc<dyn Store>,
    claims: Arc<ClaimsSlot>,
    queues: Arc<Mutex<Together>>,
    [placement_counts, outcome_counts]: [Arc<Counts>; 2],
) {
    loop {
        let mut placements = Vec::new();
        let mut outcomes = Vec::new();
        {
            let mut queues = queues.lock().await;
            let (placing, finishing) = &mut *queues;
            tokio::select! {
                job = placing.recv() => match job {
                    Some(job) => placements.push(job),
                    None => return,
                },
                job = finishing.recv() => match job {
                    Some(job) => outcomes.push(job),
                    None => return,
                },
            }
            take_queued(placing, &mut placements);
            take_queued(finishing, &mut outcomes);
        }
        let (placements, placed_answers): (Vec<_>, Vec<_>) = placements.into_iter().unzip();
        let (outcomes, finished_answers): (Vec<_>, Vec<_>) = outcomes.into_iter().unzip();
        placement_counts.count(placements.len());
        outcome_counts.count(outcomes.len());
        let claims = current(&claims);
        let (placed, finished) = write(&*store, placements, claims.as_deref(), outcomes).await;
        answer(placed_answers, placed);
        answer(finished_answers, finished);
    }
}

/// Adds what is queued, up to [`MAX_GROUP`] in all, to `group`.
fn take_queued<T>(queue: &mut mpsc::Receiver<T>, group: &mut Vec<T>) {
    while group.len() < MAX_GROUP {
        match queue.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
}

/// Sends each result to its caller. A caller that has gone is not waiting for the answer; what
/// it asked for stands.
fn answer<R>(answers: Vec<oneshot::Sender<R>>, results: Vec<R>) {
    for (answer, result) in answers.into_iter().zip(results) {
        let _ = answer.send(result);
    }
}

/// One queue and its lanes: each lane takes what is queued (up to [`MAX_GROUP`]), hands it to
/// `run` as one group, answers each item with its result, and again.
struct Queue<T, R> {
    jobs: mpsc::Sender<Job<T, R>>,
    counts: Arc<Counts>,
}

impl<T, R> Clone for Queue<T, R> {
    fn clone(&self) -> Self {
        Queue {
            jobs: self.jobs.clone(),
            counts: Arc::clone(&self.counts),
        }
    }
}

/// An item and where its answer goes.
type Job<T, R> = (T, oneshot::Sender<R>);

/// What a queue has done since it started.
#[derive(Default)]
struct Counts {
    groups: AtomicU64,
    items: AtomicU64,
}

impl Counts {
    /// One group of `items` written (none: nothing to count).
    fn count(&self, items: usize) {
        if items > 0 {
            self.groups.fetch_add(1, Ordering::Relaxed);
            self.items.fetch_add(items as u64, Ordering::Relaxed);
        }
    }
}

/// Groups written and the items they held, per queue, since the queues started (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounts {
    pub placement_groups: u64,
    pub placements: u64,
    pub outcome_groups: u64,
    pub outcomes: u64,
}

impl<T: Send + 'static, R: Send + 'static> Queue<T, StoreResult<R>> {
    fn start<F, Fut>(lanes: usize, run: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<StoreResult<R>>> + Send + 'static,
    {
        let (queue, jobs) = Queue::channel();
        let jobs = Arc::new(Mutex::new(jobs));
        let run = Arc::new(run);
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(
                Arc::clone(&jobs),
                Arc::clone(&run),
                Arc::clone(&queue.counts),
            ));
        }
        queue
    }

    /// The queue, and the receiving end its lanes take jobs from.
    fn channel() -> (Self, mpsc::Receiver<Job<T, StoreResult<R>>>) {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        (Queue { jobs, counts }, queue)
    }

    async fn submit(&self, item: T) -> StoreResult<R> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send((item, answer))
            .await
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Database("the group-commit queue has stopped".to_owned())
}

async fn lane<T, R, F, Fut>(
    queue: Arc<Mutex<mpsc::Receiver<Job<T, R>>>>,
    run: Arc<F>,
    counts: Arc<Counts>,
) where
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Vec<R>>,
{
    loop {
        let mut group = Vec::new();
        {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            group.push(first);
            take_queued(&mut queue, &mut group);
        }
        let (items, answers): (Vec<T>, Vec<_>) = group.into_iter().unzip();
        counts.count(items.len());
        let results = run(items).await;
        answer(answers, results);
    }
}
