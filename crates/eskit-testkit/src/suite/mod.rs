//! The conformance suite: one set of tests, written once against the core traits, that
//! every backend runs through its [`Harness`](crate::Harness).
//!
//! Each test is a `pub async fn name<H: Harness>(h: &H)` that panics on failure. A
//! backend runs them all, each as its own test, with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! // crates/eskit-sqlite/tests/conformance.rs
//! struct SqliteHarness { /* temp dir */ }
//! #[async_trait::async_trait]
//! impl eskit_testkit::Harness for SqliteHarness { /* open, reopen, app_write, app_row_exists */ }
//!
//! eskit_testkit::conformance_tests!(SqliteHarness::new());
//! ```
//!
//! The expression is evaluated inside each (async) test, so it may `.await`. The
//! backend's test crate needs `tokio` (the generated tests use `#[tokio::test]`).
//! Tests use short relay timings and poll with deadlines; none depends on timing
//! beyond generous deadlines.

mod atomicity;
mod bad_input;
mod dead_letters;
mod outbox;
mod relay;
mod routes;
mod store;
pub mod support;
#[cfg(feature = "webhook")]
mod webhook;

pub use atomicity::*;
pub use bad_input::*;
pub use dead_letters::*;
pub use outbox::*;
pub use relay::*;
pub use routes::*;
pub use store::*;
#[cfg(feature = "webhook")]
pub use webhook::*;

/// Upper bound on one conformance test, so a hang fails instead of blocking the run.
pub const TEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Expands to one `#[tokio::test]` per conformance test (multi-threaded runtime, two
/// workers), each building its harness with the given expression (evaluated in the
/// async test body, so `.await` is allowed) and running the suite function with a
/// [`TEST_TIMEOUT`](crate::suite::TEST_TIMEOUT).
///
/// ```ignore
/// eskit_testkit::conformance_tests!(MyHarness::new().await);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::__conformance_tests! { $make;
            // Event store.
            append_and_read_stream,
            read_all_in_position_order,
            stream_version_follows_appends,
            expected_version_semantics,
            concurrent_appends_to_one_stream,
            large_append_keeps_order,
            idempotent_append_is_noop,
            idempotent_append_conflicts_on_different_content,
            validation_rejects_bad_input,
            outbox_message_validation,
            bad_input_corpus,
            // Atomicity.
            rollback_leaves_nothing,
            drop_without_commit_leaves_nothing,
            commit_keeps_everything,
            conflict_in_transaction_writes_nothing,
            // Routes and entries.
            routes_select_events,
            entry_fields,
            // Outbox contract.
            leases_are_exclusive_and_fenced,
            fetch_pending_and_record_results,
            status_counts,
            purge_delivered_removes_old_deliveries,
            purge_delivered_runs_in_batches,
            dead_letter_queue_operations,
            dead_letter_bulk_operations_run_in_batches,
            list_dead_agrees_with_the_reference_filter,
            replay_and_discard_touch_only_the_matches,
            commit_wakes_the_relay,
            destinations_disable_and_enable,
            relay_heartbeats,
            // Relay.
            relay_delivers_in_order_under_random_failures,
            retries_follow_the_policy,
            retry_after_wins_over_backoff,
            dead_letter_after_max_attempts,
            dead_letter_at_once_on_permanent_error,
            failing_stream_does_not_block_others,
            replayed_entries_are_delivered,
            restart_without_loss,
            lease_takeover_after_abort,
            two_relays_share_the_work,
            graceful_shutdown_loses_nothing,
            messages_and_events_share_stream_order,
            rolled_back_entries_are_never_delivered,
            gone_disables_the_destination,
        }
        $crate::__conformance_webhook_tests! { $make }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $make;
                let run = $crate::suite::$name(&harness);
                if ::tokio::time::timeout($crate::suite::TEST_TIMEOUT, run).await.is_err() {
                    panic!("conformance test {} timed out", stringify!($name));
                }
            }
        )*
    };
}

#[cfg(feature = "webhook")]
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_webhook_tests {
    ($make:expr) => {
        $crate::__conformance_tests! { $make;
            webhook_relay_in_order_under_faults,
        }
    };
}

#[cfg(not(feature = "webhook"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_webhook_tests {
    ($make:expr) => {};
}

#[cfg(test)]
mod tests {
    /// Every public suite function is listed in `conformance_tests!`.
    #[test]
    fn macro_lists_every_test() {
        let this = include_str!("mod.rs");
        let files = [
            include_str!("store.rs"),
            include_str!("atomicity.rs"),
            include_str!("bad_input.rs"),
            include_str!("routes.rs"),
            include_str!("outbox.rs"),
            include_str!("dead_letters.rs"),
            include_str!("relay.rs"),
        ];
        let mut n = 0;
        for file in files {
            for line in file.lines() {
                if let Some(rest) = line.strip_prefix("pub async fn ") {
                    let name = rest.split('<').next().unwrap_or_default();
                    assert!(
                        this.contains(&format!("            {name},")),
                        "{name} missing from conformance_tests!"
                    );
                    n += 1;
                }
            }
        }
        assert!(n >= 30, "found {n} suite functions");
    }
}
