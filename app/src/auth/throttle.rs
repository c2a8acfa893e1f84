//! Slows down password guessing: after a number of free failures, each further failure doubles
//! the wait before the next attempt is even checked, per account and per client address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One limiter over a family of keys (account names, or client addresses).
#[derive(Debug)]
pub struct Limiter {
    free_failures: u32,
    base_delay: Duration,
    max_delay: Duration,
    /// Failures older than this are forgotten.
    window: Duration,
    entries: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Most keys a limiter remembers; past this, forgotten entries are swept out first.
const MAX_ENTRIES: usize = 100_000;

impl Limiter {
    pub fn new(free_failures: u32, base_delay: Duration, max_delay: Duration) -> Self {
        Self {
            free_failures,
            base_delay,
            max_delay,
            window: Duration::from_secs(15 * 60).max(max_delay),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn delay_after(&self, count: u32) -> Duration {
        if count < self.free_failures {
            return Duration::ZERO;
        }
        let doublings = (count - self.free_failures).min(20);
        self.base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }

    /// `Err(wait)` while `key` must wait before its next attempt.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(failures) = entries.get(key) else {
            return Ok(());
        };
        let ready_at = failures.last + self.delay_after(failures.count);
        if now < ready_at {
            Err(ready_at - now)
        } else {
            Ok(())
        }
    }

    pub fn record_failure(&self, key: &str, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let window = self.window;
            entries.retain(|_, f| now.duration_since(f.last) < window);
        }
        let entry = entries.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) >= self.window {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    pub fn clear(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The two limiters a login goes through.
#[derive(Debug)]
pub struct LoginThrottle {
    pub per_account: Limiter,
    pub per_address: Limiter,
}

impl Default for LoginThrottle {
    /// 5 free failures per account and 20 per address, then 1 s doubling up to 15 minutes.
    fn default() -> Self {
        Self {
            per_account: Limiter::new(5, Duration::from_secs(1), Duration::from_secs(15 * 60)),
            per_address: Limiter::new(20, Duration::from_secs(1), Duration::from_secs(15 * 60)),
        }
    }
}

impl LoginThrottle {
    /// `Err(wait)` if either the account or the address must wait.
    pub fn check(&self, account: &str, address: &str, now: Instant) -> Result<(), Duration> {
        let a = self.per_account.check(account, now);
        let b = self.per_address.check(address, now);
        match (a, b) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(x), Ok(())) | (Ok(()), Err(x)) => Err(x),
            (Err(x), Err(y)) => Err(x.max(y)),
        }
    }

    pub fn record_failure(&self, account: &str, address: &str, now: Instant) {
        self.per_account.record_failure(account, now);
        self.per_address.record_failure(address, now);
    }

    /// A successful login clears the account's failures (not the address's: one good password
    /// must not reset a guessing run against other accounts).
    pub fn record_success(&self, account: &str) {
        self.per_account.clear(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_failures_then_doubling_waits() {
        let limiter = Limiter::new(3, Duration::from_secs(1), Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..2 {
            limiter.record_failure("bob", t0);
        }
        assert!(limiter.check("bob", t0).is_ok());
        limiter.record_failure("bob", t0);
        assert_eq!(limiter.check("bob", t0), Err(Duration::from_secs(1)));
        assert!(limiter.check("bob", t0 + Duration::from_secs(1)).is_ok());
        limiter.record_failure("bob", t0);
        assert_eq!(limiter.check("bob", t0), Err(Duration::from_secs(2)));
        for _ in 0..10 {
            limiter.record_failure("bob", t0);
        }
        assert_eq!(limiter.check("bob", t0), Err(Duration::from_secs(10)));
        assert!(limiter.check("alice", t0).is_ok());
        limiter.clear("bob");
        assert!(limiter.check("bob", t0).is_ok());
    }

    #[test]
    fn old_failures_are_forgotten() {
        let limiter = Limiter::new(1, Duration::from_secs(1), Duration::from_secs(10));
        let t0 = Instant::now();
        limiter.record_failure("k", t0);
        let later = t0 + Duration::from_secs(16 * 60);
        limiter.record_failure("k", later);
        assert_eq!(limiter.check("k", later), Err(Duration::from_secs(1)));
    }

    #[test]
    fn success_clears_account_but_not_address() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..25 {
            throttle.record_failure("alice", "10.0.0.1", t0);
        }
        throttle.record_success("alice");
        assert!(throttle.per_account.check("alice", t0).is_ok());
        assert!(throttle.check("alice", "10.0.0.1", t0).is_err());
    }
}
