//! Ingestion counters, exposed in the Prometheus text format at `/metrics`.
//!
//! A handful of atomics and small label maps: no metrics framework, so the hot path pays one
//! relaxed increment and the exposition is easy to read and test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters shared by every ingestion task.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Frames received, by message type.
    frames: LabelCounter,
    /// Frames that did not decode, by error.
    frame_errors: LabelCounter,
    /// Commits that passed full verification.
    pub commits_verified: AtomicU64,
    /// Commits of untracked repos dropped after routing.
    pub commits_skipped: AtomicU64,
    /// Verification failures, by `VerifyError::kind`.
    verify_failures: LabelCounter,
    /// Records written to the index.
    pub records_indexed: AtomicU64,
    /// Records deleted from the index.
    pub records_deleted: AtomicU64,
    /// Records refused by lexicon validation.
    pub records_rejected: AtomicU64,
    /// Repos resynced from `getRepo`, and failures of that.
    pub resyncs: AtomicU64,
    /// Resyncs that failed.
    pub resync_failures: AtomicU64,
    /// Tracked repos compared with their host's head because events may have been missed.
    pub rechecks: AtomicU64,
    /// Firehose (re)connections.
    pub connects: AtomicU64,
    /// Error frames and `#info` messages from servers, by name.
    server_messages: LabelCounter,
    /// Batches committed to the store.
    pub batches: AtomicU64,
    /// Identity lookups that failed.
    pub identity_failures: AtomicU64,
    /// `#account` events from a source other than the account's host, whose status the host
    /// confirmed with `getRepoStatus` (its answer was applied).
    pub account_confirmed: AtomicU64,
    /// `#account` events ignored: the account's host could not be resolved or asked.
    pub account_unconfirmed: AtomicU64,
    /// Last committed cursor, by source.
    cursors: Mutex<BTreeMap<String, i64>>,
    /// Events waiting between the socket and the writer.
    pub queued: AtomicI64,
    /// Repos handed to the background resync queue.
    pub resyncs_queued: AtomicU64,
    /// Background tasks started again after a failure.
    pub resync_retries: AtomicU64,
    /// Background tasks given up after their last attempt (left to the sweep).
    pub resync_given_up: AtomicU64,
    /// Commits refused and dropped without a resync (forged or broken, but the chain fits).
    pub commits_refused: AtomicU64,
    /// Frames parked behind their repo's background task.
    pub parked: AtomicU64,
    /// Frames dropped because their repo's parking space was full, or its resync failed.
    pub parked_dropped: AtomicU64,
    /// Store reads retried after an error.
    pub store_retries: AtomicU64,
    /// Background tasks waiting to start (gauge).
    pub resync_queued: AtomicI64,
    /// Background tasks running (gauge).
    pub resync_running: AtomicI64,
    /// Hosts whose circuit breaker is open or who asked us to wait (gauge).
    pub hosts_blocked: AtomicI64,
    /// DIDs whose last resolution failed, waiting for a retry (gauge).
    pub dids_unresolvable: AtomicI64,
    /// Tracked repos not in sync, as of the last sweep (gauge).
    pub repos_unsynced: AtomicI64,
}

#[derive(Debug, Default)]
struct LabelCounter(Mutex<BTreeMap<String, u64>>);

impl LabelCounter {
    fn inc(&self, label: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(label.to_owned()).or_default() += 1;
        }
    }
    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Metrics {
    /// Counts a frame of type `kind`.
    pub fn frame(&self, kind: &str) {
        self.frames.inc(kind);
    }
    /// Counts a frame that failed to decode.
    pub fn frame_error(&self, kind: &str) {
        self.frame_errors.inc(kind);
    }
    /// Counts a verification failure.
    pub fn verify_failure(&self, kind: &str) {
        self.verify_failures.inc(kind);
    }
    /// Counts an error frame or info message from a server.
    pub fn server_message(&self, name: &str) {
        self.server_messages.inc(name);
    }
    /// Records the committed cursor of a source.
    pub fn set_cursor(&self, source: &str, seq: i64) {
        if let Ok(mut m) = self.cursors.lock() {
            m.insert(source.to_owned(), seq);
        }
    }
    /// Verification failures so far, by kind.
    pub fn verify_failures(&self) -> BTreeMap<String, u64> {
        self.verify_failures.snapshot()
    }

    /// The resync queue's gauges, for `/status`: repos not in sync, DIDs that do not resolve,
    /// tasks queued and running, hosts blocked.
    pub fn resync_status(&self) -> BTreeMap<&'static str, i64> {
        let g = |a: &AtomicI64| a.load(Ordering::Relaxed);
        BTreeMap::from([
            ("reposUnsynced", g(&self.repos_unsynced)),
            ("didsUnresolvable", g(&self.dids_unresolvable)),
            ("queued", g(&self.resync_queued)),
            ("running", g(&self.resync_running)),
            ("hostsBlocked", g(&self.hosts_blocked)),
        ])
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            "guildhall_commits_verified_total",
            "Commits that passed signature, continuity and MST proof checks.",
            g(&self.commits_verified),
        );
        counter(
            "guildhall_commits_skipped_total",
            "Commits of untracked repos dropped after routing.",
            g(&self.commits_skipped),
        );
        counter(
            "guildhall_account_events_confirmed_total",
            "#account events from another source than the account's host, confirmed with the host's getRepoStatus.",
            g(&self.account_confirmed),
        );
        counter(
            "guildhall_account_events_unconfirmed_total",
            "#account events ignored because the account's host could not confirm them.",
            g(&self.account_unconfirmed),
        );
        counter(
            "guildhall_records_indexed_total",
            "Records written to the index.",
            g(&self.records_indexed),
        );
        counter(
            "guildhall_records_deleted_total",
            "Records removed from the index.",
            g(&self.records_deleted),
        );
        counter(
            "guildhall_records_rejected_total",
            "Records refused by lexicon validation.",
            g(&self.records_rejected),
        );
        counter(
            "guildhall_resyncs_total",
            "Repos resynced from getRepo.",
            g(&self.resyncs),
        );
        counter(
            "guildhall_resync_failures_total",
            "Resyncs that failed.",
            g(&self.resync_failures),
        );
        counter(
            "guildhall_rechecks_total",
            "Tracked repos compared with their host's head after events may have been missed.",
            g(&self.rechecks),
        );
        counter(
            "guildhall_firehose_connects_total",
            "Firehose connections opened.",
            g(&self.connects),
        );
        counter(
            "guildhall_batches_total",
            "Batches committed to the store.",
            g(&self.batches),
        );
        counter(
            "guildhall_identity_failures_total",
            "DID resolutions that failed.",
            g(&self.identity_failures),
        );
        counter(
            "guildhall_resyncs_queued_total",
            "Repos handed to the background resync queue.",
            g(&self.resyncs_queued),
        );
        counter(
            "guildhall_resync_retries_total",
            "Background resyncs and host queries started again after a failure.",
            g(&self.resync_retries),
        );
        counter(
            "guildhall_resync_given_up_total",
            "Background resyncs and host queries given up after their last attempt.",
            g(&self.resync_given_up),
        );
        counter(
            "guildhall_commits_refused_total",
            "Commits refused and dropped without a resync: forged or broken, while the chain fits.",
            g(&self.commits_refused),
        );
        counter(
            "guildhall_frames_parked_total",
            "Frames held behind their repo's background task.",
            g(&self.parked),
        );
        counter(
            "guildhall_frames_parked_dropped_total",
            "Parked frames dropped: the repo's parking space was full or its resync failed.",
            g(&self.parked_dropped),
        );
        counter(
            "guildhall_store_retries_total",
            "Store reads retried after an error.",
            g(&self.store_retries),
        );
        let mut labelled = |name: &str, help: &str, label: &str, c: &LabelCounter| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (k, v) in c.snapshot() {
                let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", escape(&k));
            }
        };
        labelled(
            "guildhall_frames_total",
            "Frames received, by type.",
            "type",
            &self.frames,
        );
        labelled(
            "guildhall_frame_errors_total",
            "Frames that did not decode, by error.",
            "error",
            &self.frame_errors,
        );
        labelled(
            "guildhall_verify_failures_total",
            "Commits refused by verification, by reason.",
            "reason",
            &self.verify_failures,
        );
        labelled(
            "guildhall_server_messages_total",
            "Error frames and info messages from firehose servers.",
            "name",
            &self.server_messages,
        );
        let _ = writeln!(
            out,
            "# HELP guildhall_queued_events Events between the socket and the store.\n# TYPE guildhall_queued_events gauge\nguildhall_queued_events {}",
            self.queued.load(Ordering::Relaxed)
        );
        let gauges: [(&str, &str, &AtomicI64); 5] = [
            (
                "guildhall_resync_queue_waiting",
                "Background resyncs and host queries waiting to start.",
                &self.resync_queued,
            ),
            (
                "guildhall_resync_queue_running",
                "Background resyncs and host queries running.",
                &self.resync_running,
            ),
            (
                "guildhall_hosts_blocked",
                "Hosts whose circuit breaker is open or who asked us to wait.",
                &self.hosts_blocked,
            ),
            (
                "guildhall_dids_unresolvable",
                "DIDs whose last resolution failed, waiting for a retry.",
                &self.dids_unresolvable,
            ),
            (
                "guildhall_repos_unsynced",
                "Tracked repos not in sync (desynchronized or resyncing), as of the last sweep.",
                &self.repos_unsynced,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP guildhall_cursor Last committed firehose sequence number.\n# TYPE guildhall_cursor gauge"
        );
        if let Ok(m) = self.cursors.lock() {
            for (k, v) in m.iter() {
                let _ = writeln!(out, "guildhall_cursor{{source=\"{}\"}} {v}", escape(k));
            }
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters_escaped() {
        let m = Metrics::default();
        m.verify_failure("high_s");
        m.verify_failure("high_s");
        m.frame("#commit");
        m.set_cursor("ws://x/\"y\"", 42);
        m.commits_verified.fetch_add(3, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("guildhall_verify_failures_total{reason=\"high_s\"} 2"));
        assert!(text.contains("guildhall_frames_total{type=\"#commit\"} 1"));
        assert!(text.contains("guildhall_commits_verified_total 3"));
        assert!(text.contains("guildhall_cursor{source=\"ws://x/\\\"y\\\"\"} 42"));
    }
}
