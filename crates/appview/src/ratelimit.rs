//! A per-IP token bucket: each address may burst up to a minute's budget, refilled evenly.
//!
//! Buckets live in one mutex-guarded map; a request costs one short critical section. Idle
//! buckets (full again) are dropped when the map grows, so memory stays bounded by the
//! number of addresses active within about a minute.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Map size past which full (idle) buckets are swept.
const SWEEP_AT: usize = 50_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by client address.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// `per_minute` requests per address per minute; 0 disables limiting.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip` at `now`; `false` when the bucket is empty.
    pub fn check_at(&self, ip: IpAddr, now: Instant) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let cap = f64::from(self.per_minute);
        let rate = cap / 60.0;
        let mut map = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= SWEEP_AT {
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < cap
            });
        }
        let b = map.entry(ip).or_insert(Bucket {
            tokens: cap,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(cap);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// [`check_at`](Self::check_at) now.
    pub fn check(&self, ip: IpAddr) -> bool {
        self.check_at(ip, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_then_refills() {
        let rl = RateLimiter::new(60);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(rl.check_at(a, t0));
        }
        assert!(!rl.check_at(a, t0), "budget spent");
        assert!(rl.check_at(b, t0), "other addresses have their own bucket");
        assert!(!rl.check_at(a, t0 + Duration::from_millis(500)));
        assert!(
            rl.check_at(a, t0 + Duration::from_millis(1100)),
            "one token a second"
        );
        assert!(RateLimiter::new(0).check_at(a, t0));
    }
}
