//! The background-work scheduler: which repo's resync (or host query) starts next, and when.
//!
//! A pure state machine, driven by events (`request`, `finished`) and the time passed in; it
//! does no I/O and reads no clock, so its rules are unit- and property-tested directly. The
//! driver in [`crate::resync`] turns its decisions into HTTP calls.
//!
//! Rules, each a bound on what one host or one DID can cost us:
//! - at most [`Limits::global`] tasks run at once, and at most [`Limits::per_host`] per host;
//! - a host that fails [`Limits::breaker_threshold`] times in a row is not called for a
//!   cool-down that doubles on each failed probe (circuit breaker); after it, one probe;
//! - a host's `Retry-After` pauses the host (capped at [`Limits::backoff_max`]);
//! - one DID starts at most once per [`Limits::per_did_interval`] (a forger who can make us
//!   want a resync cannot make us fetch more often than that);
//! - a failed task is retried with exponential backoff, at most [`Limits::max_attempts`]
//!   times; then it is given up and the caller retries on its slow schedule. The backoff
//!   streak of a DID survives a give-up and only resets on success.
//!
//! Invariant: a DID has at most one task queued or running; a second request coalesces.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// The bounds the scheduler enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most tasks running at once.
    pub global: usize,
    /// Most tasks running at once against one host.
    pub per_host: usize,
    /// Least time between two starts for one DID.
    pub per_did_interval: Duration,
    /// First retry delay; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// Longest retry delay, breaker cool-down or host pause.
    pub backoff_max: Duration,
    /// Attempts per request before it is given up.
    pub max_attempts: u32,
    /// Consecutive host failures that open its breaker.
    pub breaker_threshold: u32,
    /// First cool-down of an opened breaker; doubles on each failed probe.
    pub breaker_cooldown: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            global: 16,
            per_host: 2,
            per_did_interval: Duration::from_secs(10),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            max_attempts: 5,
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(10),
        }
    }
}

/// How a task ended, as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done, or a definitive answer (the repo is gone): no retry.
    Done,
    /// The host did not answer usefully (timeout, connection, 5xx): counts against the host.
    HostFailed,
    /// The host asked us to slow down (429), optionally saying for how long.
    RateLimited(Option<Duration>),
    /// This DID's own problem (it does not resolve, its export does not verify): retried,
    /// but the host is not blamed.
    Failed,
}

/// What the scheduler decided after a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Finished: hand the result to the caller.
    Finished,
    /// Queued again, to start no earlier than this.
    Retry(Instant),
    /// Out of attempts: the caller keeps the repo marked and retries on its own schedule.
    GaveUp,
}

/// A task the driver should start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The DID.
    pub did: String,
    /// Its host (the scheduling key for the per-host limits).
    pub host: String,
    /// 1 for the first attempt.
    pub attempt: u32,
}

#[derive(Debug, Clone)]
struct Task {
    host: String,
    attempts: u32,
    ready_at: Instant,
    running: bool,
    /// Tie-break in the ready queue: first come, first served.
    order: u64,
}

#[derive(Debug, Clone, Default)]
struct Host {
    running: usize,
    failures: u32,
    /// Breaker open (or host paused) until then.
    blocked_until: Option<Instant>,
    /// Cool-down the next failed probe starts.
    cooldown: Option<Duration>,
    /// The breaker is half-open and its one probe is running.
    probing: bool,
}

#[derive(Debug, Clone, Copy)]
struct DidInfo {
    /// Nothing of this DID starts before this (rate limit and backoff).
    not_before: Instant,
    /// Consecutive failures, across give-ups; reset on success.
    streak: u32,
}

/// The scheduler's state. See the module docs for its rules.
#[derive(Debug)]
pub struct Scheduler {
    limits: Limits,
    tasks: HashMap<String, Task>,
    /// Queued (not running) tasks by `(ready_at, order)`.
    ready: BTreeSet<(Instant, u64, String)>,
    hosts: HashMap<String, Host>,
    dids: HashMap<String, DidInfo>,
    running: usize,
    next_order: u64,
}

impl Scheduler {
    /// An idle scheduler.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            tasks: HashMap::new(),
            ready: BTreeSet::new(),
            hosts: HashMap::new(),
            dids: HashMap::new(),
            running: 0,
            next_order: 0,
        }
    }

    /// Asks for work on `did` at `host`. Returns false when the DID already has a task queued
    /// or running (the request is coalesced into it).
    pub fn request(&mut self, did: &str, host: &str, now: Instant) -> bool {
        if self.tasks.contains_key(did) {
            return false;
        }
        let ready_at = self.dids.get(did).map_or(now, |d| d.not_before.max(now));
        self.next_order += 1;
        let task = Task {
            host: host.to_owned(),
            attempts: 0,
            ready_at,
            running: false,
            order: self.next_order,
        };
        self.ready.insert((ready_at, task.order, did.to_owned()));
        self.tasks.insert(did.to_owned(), task);
        true
    }

    /// The next task allowed to start at `now`, marked running; `None` when nothing may.
    pub fn poll(&mut self, now: Instant) -> Option<Start> {
        if self.running >= self.limits.global {
            return None;
        }
        let mut chosen = None;
        for (ready_at, order, did) in &self.ready {
            if *ready_at > now {
                break;
            }
            let Some(task) = self.tasks.get(did) else {
                continue;
            };
            if self.host_admits(&task.host, now) {
                chosen = Some((*ready_at, *order, did.clone()));
                break;
            }
        }
        let key = chosen?;
        self.ready.remove(&key);
        let did = key.2;
        let task = self.tasks.get_mut(&did)?;
        task.running = true;
        task.attempts += 1;
        let host = self.hosts.entry(task.host.clone()).or_default();
        if host.blocked_until.is_some_and(|t| t <= now) {
            // The cool-down is over: this task is the breaker's one probe.
            host.blocked_until = None;
            host.probing = true;
        }
        host.running += 1;
        self.running += 1;
        let info = self.dids.entry(did.clone()).or_insert(DidInfo {
            not_before: now,
            streak: 0,
        });
        info.not_before = now + self.limits.per_did_interval;
        Some(Start {
            did,
            host: task.host.clone(),
            attempt: task.attempts,
        })
    }

    fn host_admits(&self, host: &str, now: Instant) -> bool {
        let Some(h) = self.hosts.get(host) else {
            return self.limits.per_host > 0;
        };
        if h.running >= self.limits.per_host || h.probing {
            return false;
        }
        h.blocked_until.is_none_or(|t| t <= now)
    }

    /// Records how the running task of `did` ended.
    pub fn finished(&mut self, did: &str, outcome: Outcome, now: Instant) -> Verdict {
        let Some(task) = self.tasks.get(did).filter(|t| t.running).cloned() else {
            // Not ours (a stale report): nothing to decide.
            return Verdict::Finished;
        };
        self.running = self.running.saturating_sub(1);
        let limits = self.limits.clone();
        let host = self.hosts.entry(task.host.clone()).or_default();
        host.running = host.running.saturating_sub(1);
        let was_probe = std::mem::take(&mut host.probing);
        match outcome {
            Outcome::Done | Outcome::Failed => {
                // The host answered: whatever was wrong was not the host.
                host.failures = 0;
                host.cooldown = None;
            }
            Outcome::HostFailed => {
                host.failures += 1;
                if was_probe || host.failures >= limits.breaker_threshold {
                    let cooldown = host
                        .cooldown
                        .map_or(limits.breaker_cooldown, |c| c * 2)
                        .min(limits.backoff_max);
                    host.cooldown = Some(cooldown);
                    // Never shorten a longer pause the host asked for.
                    let until = now + cooldown;
                    host.blocked_until = Some(host.blocked_until.map_or(until, |t| t.max(until)));
                }
            }
            Outcome::RateLimited(wait) => {
                let wait = wait.unwrap_or(limits.backoff_base).min(limits.backoff_max);
                let until = now + wait;
                host.blocked_until = Some(host.blocked_until.map_or(until, |t| t.max(until)));
            }
        }
        if host.running == 0 && host.failures == 0 && host.blocked_until.is_none() {
            self.hosts.remove(&task.host);
        }
        let info = self.dids.entry(did.to_owned()).or_insert(DidInfo {
            not_before: now,
            streak: 0,
        });
        if outcome == Outcome::Done {
            info.streak = 0;
            self.tasks.remove(did);
            self.forget_idle(did, now);
            return Verdict::Finished;
        }
        if !matches!(outcome, Outcome::RateLimited(_)) {
            info.streak = info.streak.saturating_add(1);
        }
        let delay = backoff(&limits, info.streak);
        info.not_before = info.not_before.max(now + delay);
        let retry_at = info.not_before;
        if task.attempts >= limits.max_attempts {
            self.tasks.remove(did);
            return Verdict::GaveUp;
        }
        if let Some(t) = self.tasks.get_mut(did) {
            t.running = false;
            t.ready_at = retry_at;
            self.ready.insert((retry_at, t.order, did.to_owned()));
        }
        Verdict::Retry(retry_at)
    }

    /// Drops what we remember of a DID once it no longer limits anything.
    fn forget_idle(&mut self, did: &str, now: Instant) {
        if self
            .dids
            .get(did)
            .is_some_and(|d| d.streak == 0 && d.not_before <= now)
        {
            self.dids.remove(did);
        }
        // Bound the memory of finished DIDs: entries whose limits have expired go.
        if self.dids.len() > 4 * self.tasks.len() + 1024 {
            self.dids.retain(|_, d| d.streak > 0 || d.not_before > now);
        }
    }

    /// When a queued task may next become startable (the caller polls again then); `None`
    /// when nothing is queued. Blocked hosts count with the end of their block.
    pub fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        self.ready
            .iter()
            .filter_map(|(at, _, did)| {
                let host = self.hosts.get(&self.tasks.get(did)?.host);
                let blocked = host.and_then(|h| h.blocked_until).unwrap_or(now);
                Some((*at).max(blocked))
            })
            .min()
    }

    /// Tasks waiting to start.
    pub fn queued(&self) -> usize {
        self.ready.len()
    }

    /// Tasks running.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Hosts whose breaker is open or who asked us to wait, at `now`.
    pub fn hosts_blocked(&self, now: Instant) -> usize {
        self.hosts
            .values()
            .filter(|h| h.blocked_until.is_some_and(|t| t > now))
            .count()
    }

    /// Whether `did` has a task queued or running.
    pub fn has(&self, did: &str) -> bool {
        self.tasks.contains_key(did)
    }
}

/// The delay after `streak` consecutive failures: `base · 2^(streak-1)`, at most `max`.
pub fn backoff(limits: &Limits, streak: u32) -> Duration {
    if streak == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (streak - 1).min(20);
    limits
        .backoff_base
        .saturating_mul(factor)
        .min(limits.backoff_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            global: 4,
            per_host: 2,
            per_did_interval: Duration::from_secs(10),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_attempts: 3,
            breaker_threshold: 2,
            breaker_cooldown: Duration::from_secs(5),
        }
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let l = limits();
        assert_eq!(backoff(&l, 0), Duration::ZERO);
        assert_eq!(backoff(&l, 1), s(1));
        assert_eq!(backoff(&l, 2), s(2));
        assert_eq!(backoff(&l, 4), s(8));
        assert_eq!(backoff(&l, 7), s(60));
        assert_eq!(backoff(&l, u32::MAX), s(60));
    }

    #[test]
    fn one_task_per_did_and_requests_coalesce() {
        let t0 = Instant::now();
        let mut sch = Scheduler::new(limits());
        assert!(sch.request("a", "h", t0));
        assert!(!sch.request("a", "h", t0), "queued: coalesced");
        let st = sch.poll(t0).expect("starts");
        assert_eq!((st.did.as_str(), st.attempt), ("a", 1));
        assert!(!sch.request("a", "h", t0), "running: coalesced");
        assert_eq!(sch.poll(t0), None);
        assert_eq!(sch.finished("a", Outcome::Done, t0), Verdict::Finished);
        assert!(!sch.has("a"));
    }

    #[test]
    fn per_host_and_global_limits_hold_and_other_hosts_proceed() {
        let t0 = Instant::now();
        let mut sch = Scheduler::new(limits());
        for d in ["s1", "s2", "s3", "s4"] {
            sch.request(d, "slow", t0);
        }
        sch.request("f1", "fast", t0);
        let started: Vec<String> = std::iter::from_fn(|| sch.poll(t0)).map(|s| s.did).collect();
        // Two of the slow host (its limit), then the other host's task jumps the queue.
        assert_eq!(started, vec!["s1", "s2", "f1"]);
        assert_eq!(sch.running(), 3);
        assert_eq!(sch.queued(), 2);
        sch.finished("s1", Outcome::Done, t0);
        assert_eq!(sch.poll(t0).map(|s| s.did), Some("s3".to_owned()));
        // Global cap: four running, whatever the host.
        sch.request("g1", "other", t0);
        sch.request("g2", "another", t0);
        assert_eq!(sch.poll(t0).map(|s| s.did), Some("g1".to_owned()));
        assert_eq!(sch.poll(t0), None);
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_probes_once() {
        let t0 = Instant::now();
        let mut sch = Scheduler::new(limits());
        for d in ["a", "b", "c"] {
            sch.request(d, "h", t0);
        }
        sch.poll(t0);
        sch.poll(t0);
        assert!(matches!(
            sch.finished("a", Outcome::HostFailed, t0),
            Verdict::Retry(_)
        ));
        assert_eq!(sch.hosts_blocked(t0), 0, "one failure does not open it");
        sch.finished("b", Outcome::HostFailed, t0);
        assert_eq!(sch.hosts_blocked(t0), 1, "threshold reached: open");
        // c is ready, but the host is open for the cool-down.
        assert_eq!(sch.poll(t0 + s(4)), None);
        assert_eq!(sch.next_wakeup(t0), Some(t0 + s(5)));
        // After it, exactly one probe.
        let probe = sch.poll(t0 + s(5)).expect("probe");
        assert_eq!(probe.did, "c");
        assert_eq!(sch.poll(t0 + s(12)), None, "only one probe while half-open");
        // The probe fails: open again, for twice as long.
        sch.finished("c", Outcome::HostFailed, t0 + s(12));
        assert_eq!(sch.hosts_blocked(t0 + s(12) + s(9)), 1);
        assert_eq!(sch.poll(t0 + s(12) + s(9)), None);
        let probe = sch.poll(t0 + s(12) + s(10)).expect("second probe");
        // It succeeds: closed, and the rest flow at the per-host limit again.
        sch.finished(&probe.did, Outcome::Done, t0 + s(23));
        assert_eq!(sch.hosts_blocked(t0 + s(23)), 0);
        assert!(sch.poll(t0 + s(40)).is_some());
        assert!(sch.poll(t0 + s(40)).is_some());
    }

    #[test]
    fn a_did_is_rate_limited_even_when_it_succeeds() {
        let t0 = Instant::now();
        let mut sch = Scheduler::new(limits());
        sch.request("a", "h", t0);
        sch.poll(t0);
        sch.finished("a", Outcome::Done, t0 + s(1));
        sch.request("a", "h", t0 + s(1));
        assert_eq!(sch.poll(t0 + s(9)), None, "within the per-DID interval");
        assert_eq!(sch.next_wakeup(t0 + s(1)), Some(t0 + s(10)));
        assert!(sch.poll(t0 + s(10)).is_some());
    }

    #[test]
    fn failures_back_off_then_give_up_and_the_streak_survives() {
        let t0 = Instant::now();
        let mut l = limits();
        l.per_did_interval = Duration::ZERO;
        let mut sch = Scheduler::new(l);
        sch.request("a", "h", t0);
        let mut now = t0;
        let mut delays = Vec::new();
        loop {
            let st = sch.poll(now).expect("start");
            match sch.finished(&st.did, Outcome::Failed, now) {
                Verdict::Retry(at) => {
                    delays.push(at - now);
                    assert_eq!(sch.poll(at - Duration::from_millis(1)), None);
                    now = at;
                }
                Verdict::GaveUp => break,
                Verdict::Finished => panic!("a failure is not finished"),
            }
        }
        assert_eq!(delays, vec![s(1), s(2)], "three attempts in all");
        assert!(!sch.has("a"));
        // Asked again right away: the backoff of the third failure still applies.
        sch.request("a", "h", now);
        assert_eq!(sch.poll(now + s(3)), None);
        assert!(sch.poll(now + s(4)).is_some());
        // Success resets the streak.
        sch.finished("a", Outcome::Done, now + s(4));
        sch.request("a", "h", now + s(4));
        assert!(sch.poll(now + s(4)).is_some());
    }

    #[test]
    fn did_failures_do_not_open_the_host_breaker() {
        let t0 = Instant::now();
        let mut sch = Scheduler::new(limits());
        for d in ["a", "b", "c"] {
            sch.request(d, "h", t0);
            let st = sch.poll(t0).expect("start");
            sch.finished(&st.did, Outcome::Failed, t0);
        }
        assert_eq!(sch.hosts_blocked(t0), 0);
    }

    #[test]
    fn retry_after_pauses_the_host() {
        let t0 = Instant::now();
        let mut sch = Scheduler::new(limits());
        sch.request("a", "h", t0);
        sch.request("b", "h", t0);
        sch.poll(t0);
        sch.finished("a", Outcome::RateLimited(Some(s(30))), t0);
        assert_eq!(
            sch.poll(t0 + s(29)),
            None,
            "b waits too: the host is paused"
        );
        assert!(sch.poll(t0 + s(30)).is_some());
        // An absurd Retry-After is capped.
        let mut sch = Scheduler::new(limits());
        sch.request("a", "h", t0);
        sch.poll(t0);
        sch.finished("a", Outcome::RateLimited(Some(s(86_400))), t0);
        assert_eq!(sch.next_wakeup(t0), Some(t0 + s(60)));
    }

    mod prop {
        use std::collections::HashMap;

        use proptest::prelude::*;

        use super::super::*;

        /// One step of a random run: a request, time passing, or a running task ending.
        #[derive(Debug, Clone)]
        enum Step {
            Request { did: u8, host: u8 },
            Wait(u64),
            Finish { pick: u8, outcome: u8 },
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (0u8..12, 0u8..3).prop_map(|(did, host)| Step::Request { did, host }),
                (0u64..4_000).prop_map(Step::Wait),
                (any::<u8>(), 0u8..4).prop_map(|(pick, outcome)| Step::Finish { pick, outcome }),
            ]
        }

        proptest! {
            /// Whatever happens, in any order: the global and per-host limits hold, a DID
            /// never runs twice at once nor starts twice within its interval, and no host
            /// gets a call while its breaker is open or it asked us to wait, except one
            /// probe at a time after the block ends.
            #[test]
            fn limits_hold_for_any_run(steps in proptest::collection::vec(step(), 1..300)) {
                let l = Limits {
                    global: 3,
                    per_host: 2,
                    per_did_interval: Duration::from_millis(500),
                    backoff_base: Duration::from_millis(100),
                    backoff_max: Duration::from_secs(5),
                    max_attempts: 3,
                    breaker_threshold: 2,
                    breaker_cooldown: Duration::from_millis(300),
                };
                let t0 = Instant::now();
                let mut now = t0;
                let mut sch = Scheduler::new(l.clone());
                // did -> host of its running task
                let mut running: HashMap<String, String> = HashMap::new();
                let mut last_start: HashMap<String, Instant> = HashMap::new();
                // host -> blocked until (from our own model of the outcomes)
                let mut blocked: HashMap<String, Instant> = HashMap::new();
                let mut failures: HashMap<String, u32> = HashMap::new();
                for st in steps {
                    match st {
                        Step::Request { did, host } => {
                            sch.request(&format!("d{did}"), &format!("h{host}"), now);
                        }
                        Step::Wait(ms) => now += Duration::from_millis(ms),
                        Step::Finish { pick, outcome } => {
                            if running.is_empty() {
                                continue;
                            }
                            let mut dids: Vec<&String> = running.keys().collect();
                            dids.sort();
                            let did = dids[usize::from(pick) % dids.len()].clone();
                            let host = running.remove(&did).unwrap_or_default();
                            let outcome = match outcome {
                                0 => Outcome::Done,
                                1 => Outcome::Failed,
                                2 => Outcome::HostFailed,
                                _ => Outcome::RateLimited(Some(Duration::from_millis(700))),
                            };
                            let f = failures.entry(host.clone()).or_default();
                            match outcome {
                                Outcome::Done | Outcome::Failed => *f = 0,
                                Outcome::HostFailed => {
                                    *f += 1;
                                    if *f >= l.breaker_threshold {
                                        // At least the first cool-down.
                                        let until = now + l.breaker_cooldown;
                                        let b = blocked.entry(host.clone()).or_insert(until);
                                        *b = (*b).max(until);
                                    }
                                }
                                Outcome::RateLimited(w) => {
                                    let until = now + w.unwrap_or(l.backoff_base);
                                    let b = blocked.entry(host.clone()).or_insert(until);
                                    *b = (*b).max(until);
                                }
                            }
                            sch.finished(&did, outcome, now);
                        }
                    }
                    while let Some(s) = sch.poll(now) {
                        prop_assert!(!running.contains_key(&s.did), "{} twice at once", s.did);
                        if let Some(prev) = last_start.get(&s.did) {
                            prop_assert!(now - *prev >= l.per_did_interval, "{} too soon", s.did);
                        }
                        if let Some(until) = blocked.get(&s.host) {
                            prop_assert!(now >= *until, "{} called while blocked", s.host);
                        }
                        last_start.insert(s.did.clone(), now);
                        running.insert(s.did.clone(), s.host.clone());
                        prop_assert!(running.len() <= l.global);
                        let on_host = running.values().filter(|h| **h == s.host).count();
                        prop_assert!(on_host <= l.per_host);
                    }
                    prop_assert_eq!(sch.running(), running.len());
                }
            }
        }
    }
}
