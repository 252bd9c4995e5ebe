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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{
    ForwardOutcome, NewOrder, Order, OrderId, Placed, Store, StoreError, StoreResult, Timestamp,
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
        GroupCommit {
            placements: Queue::start(lanes, move |batch| {
                let store = Arc::clone(&placing);
                async move { store.place_orders(batch).await }
            }),
            outcomes: Queue::start(lanes, move |batch| {
                let store = Arc::clone(&finishing);
                async move { store.finish_attempts(batch).await }
            }),
        }
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
        let (jobs, queue) = mpsc::channel(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        let run = Arc::new(run);
        let counts = Arc::new(Counts::default());
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(
                Arc::clone(&queue),
                Arc::clone(&run),
                Arc::clone(&counts),
            ));
        }
        Queue { jobs, counts }
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
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
        }
        let (items, answers): (Vec<T>, Vec<_>) = group.into_iter().unzip();
        counts.groups.fetch_add(1, Ordering::Relaxed);
        counts
            .items
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        let results = run(items).await;
        for (answer, result) in answers.into_iter().zip(results) {
            // A caller that has gone is not waiting for the answer; what it asked for stands.
            let _ = answer.send(result);
        }
    }
}
