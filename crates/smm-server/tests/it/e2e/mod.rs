//! End-to-end tests of smm-gateway: the real server on `127.0.0.1:0`, two simulated upstream
//! panels (`smm-panel-sim`), and a fresh database per test. Every case runs against SQLite and
//! against PostgreSQL.
//!
//! PostgreSQL needs `TEST_DATABASE_URL` (an admin URL; each test creates and drops its own
//! database). Outside CI a missing URL skips the PostgreSQL variant with a note; under `CI=true`
//! it fails. The harness is [`crate::support::gateway`].
//!
//! The cases follow the conformance list (section (f) of the team's v2 protocol reference):
//! 1–20, plus the seed shapes of `refill`, `refill_status` and `cancel`.

mod billing;
mod cancels;
mod forwarding;
mod operations;
mod orders;
mod protocol;
mod reconcile;
mod routing;

/// One test per backend for each case: `sqlite::case` and `postgres::case`.
macro_rules! e2e {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$module::$case(crate::support::Backend::Sqlite).await;
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
                    super::$module::$case(crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}

e2e!(
    // issue #15: routing policies
    routing::cheapest_sends_to_the_cheaper_route_at_the_same_price,
    routing::quality_learns_explores_demotes_and_promotes,
    routing::quality_demotes_a_route_whose_orders_stop_starting,
    // billing and refunds per order type (docs/billing.md)
    billing::subscriptions_refund_the_posts_not_served,
    billing::partials_without_remains_refund_by_the_upstream_charge,
    billing::old_posts_and_free_orders_are_refused,
    billing::unsettled_orders_wait_for_a_person,
    // (f) 1, 2, 3, 13 and the refill/cancel seed shapes
    protocol::balance_is_the_same_however_it_is_asked,
    protocol::errors_are_exact_and_http_200,
    protocol::services_are_typed_and_marked_up,
    protocol::services_are_gzipped_for_clients_that_accept_it,
    protocol::status_single_and_multi,
    protocol::status_is_at_most_a_second_stale_and_never_anothers,
    protocol::refill_and_refill_status_seed_shapes,
    protocol::cancel_seed_shapes,
    // (f) 4–9
    orders::add_default_charges_once_and_forwards,
    orders::quantity_bounds_are_local,
    orders::insufficient_funds_change_nothing,
    orders::concurrent_adds_spend_exactly_the_balance,
    orders::drip_feed_is_charged_per_run_and_forwarded,
    orders::comments_are_counted_and_packages_are_flat,
    orders::every_type_forwards_exactly_its_parameters,
    orders::idempotency_keys_name_one_request,
    // (f) 10–12, 16
    forwarding::dropped_connection_is_ambiguous_and_never_resent,
    forwarding::hanging_upstream_is_ambiguous_and_never_resent,
    forwarding::garbage_replies_are_ambiguous_without_an_upstream_id,
    forwarding::upstream_error_fails_over_to_the_next_route,
    forwarding::upstream_error_on_every_route_rejects_and_refunds,
    forwarding::raw_upstream_error_keys_reject_and_refund,
    forwarding::add_wait_answers_upstream_refusals_in_canonical_words,
    forwarding::same_upstream_id_at_two_providers_is_kept_apart,
    forwarding::canceled_orders_show_everything_remaining,
    // issue #12: transient refusals, rate-limit waits
    forwarding::transient_refusals_hold_the_order_until_they_clear,
    forwarding::briefly_disabled_service_holds_orders,
    forwarding::rate_limit_waits_never_make_orders_ambiguous,
    forwarding::orders_keep_the_routes_and_flags_they_were_placed_with,
    forwarding::exposure_ids_never_collide_with_explicit_ids,
    // (f) 14, 15, 16, 17–20: the reconciler
    reconcile::many_orders_reach_terminal_states_with_exact_refunds,
    reconcile::equal_upstream_ids_never_cross,
    reconcile::polling_faults_change_nothing_and_recover,
    reconcile::spelled_statuses_are_normalised,
    reconcile::unknown_statuses_stay_watched,
    reconcile::partial_refunds_are_paid_once,
    reconcile::refill_round_trip,
    reconcile::finished_refills_do_not_starve_new_ones,
    reconcile::cancel_round_trip,
    reconcile::vanished_upstream_service_is_disabled_not_free,
    // issue #6: the admin API and hot reload
    operations::admin_api_keeps_exact_books,
    operations::admin_api_finds_and_resolves_orders,
    operations::reload_changes_prices_or_nothing,
    operations::customers_are_created_in_the_servers_currency_only,
    operations::customer_prices_are_their_own,
    operations::comment_packages_refund_undelivered_lines,
    // issue #12: cancels, refills and status under races
    cancels::cancel_is_decided_by_the_flag_whatever_the_state,
    cancels::cancel_while_sending_is_delivered_after_the_send,
    cancels::refills_are_one_open_per_order,
    cancels::subscription_status_shows_no_upstream_child_ids,
    cancels::unsent_cancel_calls_are_queued_again,
);
