//! The shared `EventStore` conformance suite, one test per check, each on a
//! store of its own (retention and the commit hook act store-wide).

use streambus_core::EventStore;
use streambus_core::testsuite::store as suite;

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            let (store, _dir) = crate::temp_store().await;
            suite::$check(&store).await;
            store.close().await;
        }
    )*};
}

conformance!(
    offsets_increase_in_batch_order,
    supplied_id_is_stored_once,
    server_made_ids_never_collide,
    duplicate_within_batch_returns_first,
    tenants_are_isolated,
    query_filters_match,
    query_time_range_is_start_inclusive_end_exclusive,
    pagination_visits_every_record_once,
    streams_auto_create_and_keep_state,
    prune_by_count_keeps_newest_and_sets_pruned_through,
    prune_by_age_drops_old_events,
    commit_hook_sees_new_records_in_order,
    event_types_are_stored_per_tenant,
    templates_are_stored_per_tenant,
    subscriptions_are_stored_per_overlay,
    animation_status_rows_follow_the_lifecycle,
    event_status_is_kept_in_the_stored_body,
    run_all,
);
