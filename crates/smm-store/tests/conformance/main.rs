//! One conformance suite for every [`Store`] implementation: each case below runs against a
//! fresh SQLite database and a fresh PostgreSQL database.
//!
//! PostgreSQL needs `TEST_DATABASE_URL` (an admin URL; `scripts/test.sh` provisions a throwaway
//! server). In CI a missing server fails the PostgreSQL cases instead of skipping them.

mod cases;
mod group_commit;
mod harness;
mod notify;
mod props;
mod schema;
mod scorecard;

use cases::*;
use group_commit::*;
use notify::*;
use scorecard::*;

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = crate::harness::sqlite().await;
                    crate::$case(db.store()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = crate::harness::postgres().await else { return };
                    crate::$case(db.store()).await;
                }
            )*
        }
    };
}

conformance!(
    scorecards_are_exact,
    batched_statuses_score_as_one_by_one,
    customers_lifecycle,
    balance_adjustments,
    place_order_debits_and_queues,
    grouped_placements_answer_each_alone,
    group_commit_bursts_spend_exactly_the_balance,
    grouped_outcomes_are_recorded_each_alone,
    placements_claimed_as_placed_match_a_claim,
    placements_and_outcomes_commit_together,
    idempotency_keys,
    idempotency_fingerprints_are_kept,
    customer_changes_are_announced,
    concurrent_placements_spend_exactly_the_balance,
    concurrent_claims_take_each_order_once,
    forwarding_lifecycle,
    upstream_ids_are_unique_per_provider_only,
    requeue_and_reject,
    crash_recovery_and_ambiguous_resolution,
    polling_and_refunds,
    poll_leases_end_with_the_status_or_the_deferral,
    batched_statuses_pay_each_refund_once,
    batched_statuses_keep_every_field_exactly,
    claims_note_their_first_attempts,
    unchanged_statuses_write_only_their_counts,
    a_failed_refund_leaves_the_rest_of_the_batch_applied,
    batch_attempts_are_all_or_nothing,
    waiting_claims_are_renewed_not_recovered,
    orders_keep_what_they_were_placed_as,
    concurrent_partial_pays_one_refund,
    defer_polls_only_moves_the_schedule,
    refills,
    cancels,
    service_ids_are_stable,
    listing_and_counts,
    enormous_upstream_costs_never_fail_the_send,
    audit_log,
    provider_catalogs_are_kept,
    random_status_sequences_keep_the_books,
    concurrent_refill_claims_take_each_once,
    concurrent_cancel_claims_take_each_once,
    stale_refill_and_cancel_claims_become_ambiguous,
    requeue_and_reject_refuse_an_attempt_in_flight,
    concurrent_duplicate_keys_place_one_order,
    claims_respect_the_limit_and_recovery_spares_fresh_claims,
    ledger_reasons_are_the_same_everywhere,
    audit_json_is_the_same_everywhere,
    rotate_key_conflict_is_worded,
    customer_rates_refuse_negative_zero,
    finishing_closes_every_pending_attempt,
    subscriptions_refund_the_posts_not_served,
    drip_feed_refunds_follow_runs,
    partials_without_remains_use_the_charge_or_wait_for_a_person,
    free_orders_are_refused,
    cancels_of_orders_in_flight_wait_for_the_send,
    refills_are_one_open_per_order,
    admin_users_and_sessions,
    webhook_events_follow_every_change,
    batched_refunds_commit_with_their_statuses,
    webhook_claims_keep_each_orders_events_in_order,
    paused_webhooks_keep_their_events_until_resumed,
    low_balance_is_told_once_per_crossing,
    concurrent_webhook_claims_take_each_event_once,
    alert_conditions_alert_once_per_change,
    webhook_claims_share_out_receivers,
    notifications_are_pruned_once_done,
);
