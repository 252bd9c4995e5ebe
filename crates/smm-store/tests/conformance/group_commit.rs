//! Group commit (issue #16): placements sharing one transaction are each answered as they would
//! be alone, and a burst spends balances exactly.

use std::collections::HashSet;
use std::sync::Arc;

use smm_store::*;
use smm_wire::Money;

use crate::cases::{Db, T0, assert_books_balance, customer, funded, money, new_order};

fn keyed(customer: CustomerId, key: &str, charge: &str) -> NewOrder {
    NewOrder {
        idempotency_key: Some(key.into()),
        ..new_order(customer, charge)
    }
}

/// A first attempt for `order` through alpha's service `svc-1`.
fn to_alpha(order: &Order) -> AttemptStart {
    AttemptStart {
        order: order.id,
        provider: "alpha".into(),
        upstream_service: "svc-1".into(),
        why: None,
    }
}

fn new_one(result: &StoreResult<Placed>) -> Order {
    match result {
        Ok(Placed::New(order)) => order.clone(),
        other => panic!("expected a new order, got {other:?}"),
    }
}

/// One group mixing every answer a placement can get: each is the answer it would get alone,
/// in the order given, and the books balance after.
pub async fn grouped_placements_answer_each_alone(db: Db) {
    let ann = funded(&db, "ann", "3").await;
    let bob = funded(&db, "bob", "5").await;
    db.set_customer_status(bob.id, CustomerStatus::Suspended, "admin", T0)
        .await
        .expect("suspend");
    let cat = funded(&db, "cat", "1").await;
    let broke = customer(&db, "broke").await;
    let before = match db.place_order(keyed(cat.id, "old", "0.5"), T0).await {
        Ok(Placed::New(order)) => order,
        other => panic!("{other:?}"),
    };

    let group = vec![
        new_order(ann.id, "1"),              // 0: new, ann 3 -> 2
        new_order(bob.id, "1"),              // 1: suspended
        new_order(ann.id, "1"),              // 2: new, ann 2 -> 1
        new_order(CustomerId(987_654), "1"), // 3: no such customer
        new_order(cat.id, "2"),              // 4: cat has 0.5 left
        keyed(ann.id, "k", "1"),             // 5: new, ann 1 -> 0
        keyed(ann.id, "k", "1"),             // 6: the order of 5
        new_order(ann.id, "0.00001"),        // 7: ann has nothing left
        keyed(cat.id, "old", "0.5"),         // 8: the order placed before
        new_order(cat.id, "0.5"),            // 9: new, cat 0.5 -> 0
        new_order(ann.id, "0"),              // 10: no charge: invalid
        new_order(broke.id, "0.00001"),      // 11: nothing to spend
    ];
    let results = db
        .place_orders(group.into_iter().map(|o| (o, T0 + 7)).collect())
        .await;
    assert_eq!(results.len(), 12);
    let first = new_one(&results[0]);
    let second = new_one(&results[2]);
    let keyed_new = new_one(&results[5]);
    let cats = new_one(&results[9]);
    assert_eq!(results[1], Err(StoreError::CustomerSuspended));
    assert_eq!(results[3], Err(StoreError::NotFound("customer")));
    assert_eq!(results[4], Err(StoreError::InsufficientFunds));
    assert_eq!(results[6], Ok(Placed::Existing(keyed_new.clone())));
    assert_eq!(results[7], Err(StoreError::InsufficientFunds));
    assert_eq!(results[8], Ok(Placed::Existing(before.clone())));
    assert!(matches!(results[10], Err(StoreError::Invalid(_))));
    assert_eq!(results[11], Err(StoreError::InsufficientFunds));

    // Ids in the order given; each order as stored, queued and Pending, at its own time.
    assert!(first.id < second.id && second.id < keyed_new.id && keyed_new.id < cats.id);
    for order in [&first, &second, &keyed_new, &cats] {
        assert_eq!(db.order(order.id).await.expect("order"), *order);
        assert_eq!(order.forward_state, ForwardState::Queued);
        assert_eq!(order.status, smm_wire::OrderStatus::Pending);
        assert_eq!(order.created_at, T0 + 7);
    }
    assert_eq!(keyed_new.idempotency_key.as_deref(), Some("k"));

    // Each debit is its own ledger row, with the balance right after it.
    let ledger = db.ledger(ann.id, None, 10).await.expect("ledger");
    let charges: Vec<(Money, Money, Option<OrderId>)> = ledger
        .iter()
        .rev()
        .filter(|e| e.kind == LedgerKind::Charge)
        .map(|e| (e.amount, e.balance_after, e.order_id))
        .collect();
    assert_eq!(
        charges,
        vec![
            (money("-1"), money("2"), Some(first.id)),
            (money("-1"), money("1"), Some(second.id)),
            (money("-1"), money("0"), Some(keyed_new.id)),
        ]
    );
    for (who, balance) in [(ann.id, "0"), (bob.id, "5"), (cat.id, "0"), (broke.id, "0")] {
        assert_eq!(db.customer(who).await.expect("get").balance, money(balance));
        assert_books_balance(&db, who).await;
    }
    // The key placed in the group answers with its order afterwards too.
    assert_eq!(
        db.place_order(keyed(ann.id, "k", "1"), T0 + 9).await,
        Ok(Placed::Existing(keyed_new))
    );
}

/// A burst through [`GroupCommit`] from two queues (two gateway instances on one database),
/// several lanes each: a balance covering exactly 100 orders places exactly 100 of 200, and
/// one idempotency key sent 40 times places one order.
pub async fn group_commit_bursts_spend_exactly_the_balance(db: Db) {
    let customers = [
        funded(&db, "dora", "27.81900").await,
        funded(&db, "eve", "27.81900").await,
    ];
    let queues = [
        GroupCommit::start(Arc::clone(&db), 2),
        GroupCommit::start(Arc::clone(&db), 2),
    ];
    let mut tasks = Vec::new();
    for i in 0..400 {
        let queue = queues[i % 2].clone();
        let who = customers[(i / 2) % 2].id;
        let order = if i % 10 == 0 {
            keyed(who, "burst", "0.27819")
        } else {
            new_order(who, "0.27819")
        };
        tasks.push(tokio::spawn(async move { queue.place(order, T0).await }));
    }
    let mut placed = [0, 0];
    let mut refused = 0;
    let mut keyed_orders = HashSet::new();
    for task in tasks {
        match task.await.expect("join") {
            Ok(Placed::New(order)) => {
                placed[usize::from(order.customer_id == customers[1].id)] += 1;
                if order.idempotency_key.is_some() {
                    keyed_orders.insert(order.id);
                }
            }
            Ok(Placed::Existing(order)) => {
                keyed_orders.insert(order.id);
            }
            Err(StoreError::InsufficientFunds) => refused += 1,
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(placed, [100, 100]);
    assert!(refused > 0);
    // Each customer's key placed at most one order (a key placed after the balance ran out is
    // refused instead, and may be tried again).
    let per_customer: HashSet<CustomerId> = owners(&db, &keyed_orders).await;
    assert_eq!(per_customer.len(), keyed_orders.len());
    for c in &customers {
        assert_eq!(db.customer(c.id).await.expect("get").balance, Money::ZERO);
        assert_books_balance(&db, c.id).await;
    }
}

async fn owners(db: &Db, ids: &HashSet<OrderId>) -> HashSet<CustomerId> {
    let mut owners = HashSet::new();
    for id in ids {
        owners.insert(db.order(*id).await.expect("order").customer_id);
    }
    owners
}

/// Outcomes recorded as a group: each as `finish_attempt` would record it alone; a clash of
/// upstream ids inside the group sets that one order aside and records the others; an order
/// with no attempt in flight gets its own error.
pub async fn grouped_outcomes_are_recorded_each_alone(db: Db) {
    let c = funded(&db, "fay", "10").await;
    let holder = crate::cases::sent_order(&db, c.id, "1", "alpha", "900").await;
    let orders: Vec<Order> = {
        let mut placed = Vec::new();
        for _ in 0..5 {
            placed.push(crate::cases::place(&db, c.id, "1").await);
        }
        placed
    };
    db.claim_for_forwarding("w", 10, T0).await.expect("claim");
    let starts: Vec<AttemptStart> = orders[..4].iter().map(to_alpha).collect();
    db.begin_attempts(&starts, T0).await.expect("begin");
    let sent = |id: &str| ForwardOutcome::Sent {
        upstream_order_id: id.into(),
        upstream_cost: None,
        next_poll_at: T0 + 1_000,
    };
    let results = db
        .finish_attempts(vec![
            (orders[3].id, sent("903"), T0 + 1),
            (orders[0].id, sent("901"), T0 + 1),
            (
                orders[1].id,
                ForwardOutcome::Ambiguous {
                    detail: "alpha: timed out".into(),
                },
                T0 + 1,
            ),
            (orders[2].id, sent("900"), T0 + 1), // the holder's upstream id
            (orders[4].id, sent("904"), T0 + 1), // no attempt in flight
        ])
        .await;
    assert_eq!(results.len(), 5);
    let first = results[1].as_ref().expect("sent");
    assert_eq!(first.id, orders[0].id);
    assert_eq!(first.forward_state, ForwardState::Sent);
    assert_eq!(first.upstream_order_id.as_deref(), Some("901"));
    assert_eq!(
        results[0]
            .as_ref()
            .expect("sent")
            .upstream_order_id
            .as_deref(),
        Some("903")
    );
    assert_eq!(
        results[2].as_ref().expect("ambiguous").forward_state,
        ForwardState::Ambiguous
    );
    assert!(
        matches!(results[3], Err(StoreError::Conflict(_))),
        "{:?}",
        results[3]
    );
    assert_eq!(
        db.order(orders[2].id).await.expect("get").forward_state,
        ForwardState::Ambiguous
    );
    assert!(
        matches!(results[4], Err(StoreError::InvalidState(_))),
        "{:?}",
        results[4]
    );
    assert_eq!(
        db.order(orders[4].id).await.expect("get").forward_state,
        ForwardState::Sending
    );
    for (i, order) in orders[..2].iter().enumerate() {
        assert_eq!(
            db.order(order.id).await.expect("get"),
            *results[i + 1].as_ref().expect("recorded")
        );
    }
    assert_eq!(
        db.order(holder.id)
            .await
            .expect("get")
            .upstream_order_id
            .as_deref(),
        Some("900")
    );

    // Without a clash the group goes in one transaction, each as alone.
    let more: Vec<Order> = {
        let mut placed = Vec::new();
        for _ in 0..3 {
            placed.push(crate::cases::place(&db, c.id, "1").await);
        }
        placed
    };
    let claimed = db.claim_for_forwarding("w", 10, T0).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    let starts: Vec<AttemptStart> = more
        .iter()
        .map(|o| AttemptStart {
            order: o.id,
            provider: "beta".into(),
            upstream_service: "svc-2".into(),
            why: None,
        })
        .collect();
    db.begin_attempts(&starts, T0).await.expect("begin");
    let results = db
        .finish_attempts(vec![
            (more[2].id, sent("952"), T0 + 2),
            (
                more[0].id,
                ForwardOutcome::Ambiguous {
                    detail: "beta: HTTP 500".into(),
                },
                T0 + 2,
            ),
            (
                more[1].id,
                ForwardOutcome::Failed {
                    not_sent: false,
                    detail: "beta: Incorrect link".into(),
                },
                T0 + 2,
            ),
        ])
        .await;
    let recorded: Vec<Order> = results.into_iter().map(|r| r.expect("recorded")).collect();
    assert_eq!(
        recorded.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![more[2].id, more[0].id, more[1].id]
    );
    for order in &recorded {
        assert_eq!(*order, db.order(order.id).await.expect("get"));
    }
    let [sent_one, ambiguous, failed] = &recorded[..] else {
        unreachable!()
    };
    assert_eq!(sent_one.forward_state, ForwardState::Sent);
    assert_eq!(sent_one.provider.as_deref(), Some("beta"));
    assert_eq!(sent_one.upstream_service.as_deref(), Some("svc-2"));
    assert_eq!(sent_one.upstream_order_id.as_deref(), Some("952"));
    assert_eq!(sent_one.forward_error, None);
    assert_eq!(ambiguous.forward_state, ForwardState::Ambiguous);
    assert_eq!(ambiguous.forward_error.as_deref(), Some("beta: HTTP 500"));
    assert_eq!(ambiguous.upstream_order_id, None);
    // A refusal leaves the order `sending`, for its next route.
    assert_eq!(failed.forward_state, ForwardState::Sending);
    assert_eq!(
        failed.forward_error.as_deref(),
        Some("beta: Incorrect link")
    );
    for (order, outcome, detail) in [
        (sent_one, "sent", None),
        (ambiguous, "ambiguous", Some("beta: HTTP 500")),
        (failed, "rejected", Some("beta: Incorrect link")),
    ] {
        let attempts = db.attempts(order.id).await.expect("attempts");
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome, outcome);
        assert_eq!(attempts[0].detail.as_deref(), detail);
        assert_eq!(attempts[0].finished_at, Some(T0 + 2));
    }
    assert_books_balance(&db, c.id).await;
}

/// Orders claimed in the transaction that places them (`place_orders_claiming`) are left as
/// `claim_and_begin` would leave queued orders it claimed with the same first attempts: the
/// same state, attempt, timeline and counts, without a queued version in between. The claim is
/// shown the orders with the ids they get; an order it does not pick stays queued; a claim
/// naming an order outside the group claims nothing and the group is still placed.
pub async fn placements_claimed_as_placed_match_a_claim(db: Db) {
    let ref_customer = funded(&db, "ref", "10").await;
    let c = funded(&db, "new", "10").await;
    let start = |order: OrderId, provider: &str| AttemptStart {
        order,
        provider: provider.into(),
        upstream_service: "svc-7".into(),
        why: Some("cheapest".into()),
    };

    // The reference: placed queued, then claimed with first attempts.
    let reference = db
        .place_orders(
            (0..2)
                .map(|_| (new_order(ref_customer.id, "1"), T0 + 7))
                .collect(),
        )
        .await
        .iter()
        .map(new_one)
        .collect::<Vec<_>>();
    let claimed = db
        .claim_and_begin("w", 2, T0 + 7, &mut |orders: &[Order]| {
            vec![start(orders[0].id, "alpha"), start(orders[1].id, "beta")]
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);

    // Claimed as placed: the first and the third, the second left queued.
    let mut shown: Vec<Order> = Vec::new();
    let placed = db
        .place_orders_claiming(
            (0..3).map(|_| (new_order(c.id, "1"), T0 + 7)).collect(),
            PlacementClaim {
                worker: "w",
                first_attempts: &mut |orders: &[Order]| {
                    shown = orders.to_vec();
                    vec![start(orders[2].id, "beta"), start(orders[0].id, "alpha")]
                },
            },
        )
        .await;
    let placed: Vec<Order> = placed.iter().map(new_one).collect();
    assert_eq!(
        shown.iter().map(|o| o.id).collect::<Vec<_>>(),
        placed.iter().map(|o| o.id).collect::<Vec<_>>(),
        "the claim is shown the ids the orders get"
    );
    assert!(placed[0].id > reference[1].id && placed[0].id < placed[1].id);
    assert!(placed[1].id < placed[2].id);
    for (seen, order) in shown.iter().zip(&placed) {
        assert_eq!(seen.forward_state, ForwardState::Queued);
        assert_eq!(seen.forward_attempts, 0);
        assert_eq!(
            (seen.charge, seen.customer_id),
            (order.charge, order.customer_id)
        );
        assert_eq!(
            (&seen.params, seen.created_at),
            (&order.params, order.created_at)
        );
    }
    for order in &placed {
        assert_eq!(
            db.order(order.id).await.expect("order"),
            *order,
            "answered as stored"
        );
    }
    assert_eq!(placed[1].forward_state, ForwardState::Queued);
    assert!(
        db.attempts(placed[1].id)
            .await
            .expect("attempts")
            .is_empty()
    );

    let fields = |o: &Order| {
        (
            o.forward_state,
            o.forward_attempts,
            o.claimed_by.clone(),
            o.claimed_at,
            o.provider.clone(),
            o.upstream_service.clone(),
            o.status.clone(),
            o.updated_at,
        )
    };
    for (new, old) in [(&placed[0], &reference[0]), (&placed[2], &reference[1])] {
        let old = db.order(old.id).await.expect("order");
        assert_eq!(fields(new), fields(&old), "order {}", new.id);
        let strip = |attempts: Vec<ForwardAttempt>| {
            attempts
                .into_iter()
                .map(|a| {
                    (
                        a.provider,
                        a.upstream_service,
                        a.outcome,
                        a.started_at,
                        a.why,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            strip(db.attempts(new.id).await.expect("attempts")),
            strip(db.attempts(old.id).await.expect("attempts"))
        );
        let steps = |t: OrderTimeline| {
            t.events
                .into_iter()
                .map(|e| (e.at, e.status, e.forward_state))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            steps(db.order_timeline(new.id).await.expect("timeline")),
            steps(db.order_timeline(old.id).await.expect("timeline"))
        );
    }
    let counts: Vec<(ForwardState, i64)> = db.count_by_forward_state().await.expect("counts");
    let count = |state| {
        counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(
        (count(ForwardState::Queued), count(ForwardState::Sending)),
        (1, 4)
    );

    // A claim naming an order outside the group: nothing is claimed, every order placed.
    let refused = db
        .place_orders_claiming(
            vec![
                (new_order(c.id, "1"), T0 + 8),
                (new_order(c.id, "1"), T0 + 8),
            ],
            PlacementClaim {
                worker: "w",
                first_attempts: &mut |_: &[Order]| vec![start(reference[0].id, "alpha")],
            },
        )
        .await;
    for order in refused.iter().map(new_one) {
        assert_eq!(order.forward_state, ForwardState::Queued);
        assert!(db.attempts(order.id).await.expect("attempts").is_empty());
    }
    // ... and nothing was written for the order it named.
    assert_eq!(
        db.attempts(reference[0].id).await.expect("attempts").len(),
        1
    );
    assert_eq!(
        db.order_timeline(reference[0].id)
            .await
            .expect("timeline")
            .events
            .len(),
        1
    );
    // The claimed orders are not claimed again from the queue; the queued ones are.
    let from_queue = db
        .claim_for_forwarding("w", 10, T0 + 9)
        .await
        .expect("claim");
    let mut expected = vec![placed[1].id];
    expected.extend(refused.iter().map(|r| new_one(r).id));
    assert_eq!(
        from_queue.iter().map(|o| o.id).collect::<Vec<_>>(),
        expected
    );
    // A placement after them takes the next id.
    let next = crate::cases::place(&db, c.id, "1").await;
    assert!(next.id > new_one(&refused[1]).id);
    for who in [ref_customer.id, c.id] {
        assert_books_balance(&db, who).await;
    }
}

/// `place_and_finish` writes placements and outcomes with one commit, each answered as its own
/// call would answer it; an outcome the group cannot take (its order not `sending`) sends both
/// their own ways, with the same answers.
pub async fn placements_and_outcomes_commit_together(db: Db) {
    let c = funded(&db, "gus", "10").await;
    let first = crate::cases::place(&db, c.id, "1").await;
    let second = crate::cases::place(&db, c.id, "1").await;
    db.claim_and_begin("w", 2, T0, &mut |orders: &[Order]| {
        orders.iter().map(to_alpha).collect()
    })
    .await
    .expect("claim");
    let sent = |id: &str| ForwardOutcome::Sent {
        upstream_order_id: id.into(),
        upstream_cost: None,
        next_poll_at: T0 + 1_000,
    };
    let (placed, finished) = db
        .place_and_finish(
            vec![
                (new_order(c.id, "1"), T0 + 5),
                (new_order(c.id, "20"), T0 + 5),
            ],
            None,
            vec![(first.id, sent("u-1"), T0 + 5)],
        )
        .await;
    let new = new_one(&placed[0]);
    assert_eq!(new.forward_state, ForwardState::Queued);
    assert_eq!(placed[1], Err(StoreError::InsufficientFunds));
    let recorded = finished[0].clone().expect("recorded");
    assert_eq!(recorded.forward_state, ForwardState::Sent);
    assert_eq!(recorded.upstream_order_id.as_deref(), Some("u-1"));
    assert_eq!(db.order(first.id).await.expect("order"), recorded);

    // The queued order cannot take an outcome: the group splits, each gets its own answer.
    let (placed, finished) = db
        .place_and_finish(
            vec![(new_order(c.id, "1"), T0 + 6)],
            None,
            vec![
                (second.id, sent("u-2"), T0 + 6),
                (new.id, sent("u-3"), T0 + 6),
            ],
        )
        .await;
    assert_eq!(new_one(&placed[0]).forward_state, ForwardState::Queued);
    assert_eq!(
        finished[0].as_ref().map(|o| o.upstream_order_id.clone()),
        Ok(Some("u-2".to_owned()))
    );
    assert!(
        matches!(finished[1], Err(StoreError::InvalidState(_))),
        "{:?}",
        finished[1]
    );
    assert_eq!(
        db.order(new.id).await.expect("order").forward_state,
        ForwardState::Queued
    );
    assert_eq!(db.customer(c.id).await.expect("get").balance, money("6"));
    assert_books_balance(&db, c.id).await;
}
