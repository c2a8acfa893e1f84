//! Slows down password guessing without letting a guesser lock the owner out.
//!
//! Three budgets, each a number of free failures and then a wait that doubles with every
//! further failure:
//! - per account and client address: a guesser is slowed down on the account they guess at;
//! - per client address, over all accounts: one address cannot spray many accounts;
//! - per account, over all addresses, larger and with a short cap: many addresses together
//!   cannot guess fast, yet the owner signing in from elsewhere waits a minute at most.
//!
//! Checking and counting are one step under one lock: an attempt that passes the check is
//! counted as a failure at once, and given back when its password turns out right. So
//! concurrent guesses cannot all pass the check before any of them is counted.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Free failures, then `base` doubling up to `max`; failures are forgotten after `window`
/// without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub free: u32,
    pub base: Duration,
    pub max: Duration,
    pub window: Duration,
}

impl Budget {
    pub const fn new(free: u32, base: Duration, max: Duration) -> Self {
        let quarter_hour = Duration::from_secs(15 * 60);
        Budget {
            free,
            base,
            max,
            window: if max.as_secs() > quarter_hour.as_secs() {
                max
            } else {
                quarter_hour
            },
        }
    }

    fn delay_after(&self, count: u32) -> Duration {
        if count < self.free {
            return Duration::ZERO;
        }
        let doublings = (count - self.free).min(20);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    /// How long `failures` must still wait at `now`.
    fn wait(&self, failures: Option<&Failures>, now: Instant) -> Duration {
        match failures {
            Some(f) if now.saturating_duration_since(f.last) < self.window => {
                (f.last + self.delay_after(f.count)).saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Most keys a table remembers; past this, forgotten entries are swept out first.
const MAX_ENTRIES: usize = 100_000;

fn record<K: Hash + Eq>(table: &mut HashMap<K, Failures>, key: K, budget: &Budget, now: Instant) {
    if table.len() >= MAX_ENTRIES && !table.contains_key(&key) {
        table.retain(|_, f| now.saturating_duration_since(f.last) < budget.window);
        // Still full of recent keys (a flood of made-up names or addresses): forget the older
        // half, so that the table stays bounded and the sweep stays rare.
        if table.len() >= MAX_ENTRIES {
            let mut lasts: Vec<Instant> = table.values().map(|f| f.last).collect();
            let (_, median, _) = lasts.select_nth_unstable(MAX_ENTRIES / 2);
            let median = *median;
            table.retain(|_, f| f.last > median);
        }
    }
    let entry = table.entry(key).or_insert(Failures {
        count: 0,
        last: now,
    });
    if now.saturating_duration_since(entry.last) >= budget.window {
        entry.count = 0;
    }
    entry.count = entry.count.saturating_add(1);
    entry.last = now;
}

fn give_back<K: Hash + Eq>(table: &mut HashMap<K, Failures>, key: &K) {
    if let Some(f) = table.get_mut(key) {
        f.count = f.count.saturating_sub(1);
    }
}

#[derive(Debug, Default)]
struct Tables {
    pair: HashMap<(String, String), Failures>,
    address: HashMap<String, Failures>,
    account: HashMap<String, Failures>,
}

/// The budgets a sign-in goes through.
#[derive(Debug)]
pub struct LoginThrottle {
    pub pair: Budget,
    pub address: Budget,
    pub account: Budget,
    tables: Mutex<Tables>,
}

impl Default for LoginThrottle {
    /// 5 free failures per account and address, 20 per address, 100 per account from
    /// anywhere; then 1 s doubling, up to 15 minutes for the first two and 1 minute for the
    /// third.
    fn default() -> Self {
        let second = Duration::from_secs(1);
        let quarter_hour = Duration::from_secs(15 * 60);
        Self::new(
            Budget::new(5, second, quarter_hour),
            Budget::new(20, second, quarter_hour),
            Budget::new(100, second, Duration::from_secs(60)),
        )
    }
}

impl LoginThrottle {
    pub fn new(pair: Budget, address: Budget, account: Budget) -> Self {
        LoginThrottle {
            pair,
            address,
            account,
            tables: Mutex::new(Tables::default()),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(wait)` when the attempt must wait; otherwise the attempt is let through to the
    /// password check and counted as a failure until [`LoginThrottle::succeeded`].
    pub fn begin(&self, account: &str, address: &str, now: Instant) -> Result<(), Duration> {
        let mut tables = self.tables();
        let pair_key = (account.to_owned(), address.to_owned());
        let wait = self
            .pair
            .wait(tables.pair.get(&pair_key), now)
            .max(self.address.wait(tables.address.get(address), now))
            .max(self.account.wait(tables.account.get(account), now));
        if !wait.is_zero() {
            return Err(wait);
        }
        record(&mut tables.pair, pair_key, &self.pair, now);
        record(&mut tables.address, address.to_owned(), &self.address, now);
        record(&mut tables.account, account.to_owned(), &self.account, now);
        Ok(())
    }

    /// The password was wrong: the wait runs from now, when the answer is given, not from
    /// when the attempt began (hashing takes a while, longer under load).
    pub fn failed(&self, account: &str, address: &str, now: Instant) {
        let mut guard = self.tables();
        let tables = &mut *guard;
        let pair_key = (account.to_owned(), address.to_owned());
        for last in [
            tables.pair.get_mut(&pair_key).map(|f| &mut f.last),
            tables.address.get_mut(address).map(|f| &mut f.last),
            tables.account.get_mut(account).map(|f| &mut f.last),
        ]
        .into_iter()
        .flatten()
        {
            *last = (*last).max(now);
        }
    }

    /// The password was right: the pair starts afresh, and the attempt is taken back from the
    /// address's and the account's counts (one good password does not wipe out a guessing run
    /// against other accounts from the same address).
    pub fn succeeded(&self, account: &str, address: &str) {
        let mut tables = self.tables();
        tables
            .pair
            .remove(&(account.to_owned(), address.to_owned()));
        give_back(&mut tables.address, &address.to_owned());
        give_back(&mut tables.account, &account.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn fail_n(throttle: &LoginThrottle, account: &str, address: &str, n: usize, now: Instant) {
        for i in 0..n {
            assert!(
                throttle.begin(account, address, now).is_ok(),
                "attempt {i} of {account}@{address} refused"
            );
        }
    }

    #[test]
    fn free_failures_then_doubling_waits() {
        let budget = Budget::new(3, S, Duration::from_secs(10));
        let waits: Vec<_> = (0..8).map(|n| budget.delay_after(n)).collect();
        let z = Duration::ZERO;
        assert_eq!(waits, [z, z, z, S, 2 * S, 4 * S, 8 * S, 10 * S]);
    }

    #[test]
    fn a_guesser_is_slowed_on_the_account_but_the_owner_elsewhere_is_not() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        fail_n(&throttle, "alice", "10.0.0.66", 5, t0);
        assert_eq!(throttle.begin("alice", "10.0.0.66", t0), Err(S));
        // The owner, from another address, goes straight through, and their success does
        // not free the guesser.
        assert_eq!(throttle.begin("alice", "192.0.2.1", t0), Ok(()));
        throttle.succeeded("alice", "192.0.2.1");
        assert_eq!(throttle.begin("alice", "10.0.0.66", t0), Err(S));
        // After the wait, one more guess; then twice as long.
        fail_n(&throttle, "alice", "10.0.0.66", 1, t0 + S);
        assert_eq!(throttle.begin("alice", "10.0.0.66", t0 + S), Err(2 * S));
    }

    #[test]
    fn the_wait_runs_from_the_answer() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        fail_n(&throttle, "bob", "10.0.0.1", 5, t0);
        // The fifth check took two seconds to answer.
        throttle.failed("bob", "10.0.0.1", t0 + 2 * S);
        assert_eq!(throttle.begin("bob", "10.0.0.1", t0 + 2 * S), Err(S));
        assert_eq!(throttle.begin("bob", "10.0.0.1", t0 + 3 * S), Ok(()));
    }

    #[test]
    fn one_address_cannot_spray_many_accounts() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for i in 0..20 {
            fail_n(&throttle, &format!("user{i}"), "10.0.0.66", 1, t0);
        }
        assert_eq!(throttle.begin("user99", "10.0.0.66", t0), Err(S));
        assert_eq!(throttle.begin("user99", "10.0.0.67", t0), Ok(()));
    }

    #[test]
    fn many_addresses_together_meet_the_accounts_budget_capped_at_a_minute() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for i in 0..100 {
            fail_n(&throttle, "alice", &format!("10.1.0.{i}"), 1, t0);
        }
        assert_eq!(throttle.begin("alice", "192.0.2.1", t0), Err(S));
        // 30 more guesses, a minute apart, from new addresses: each gets through.
        for i in 0..30 {
            let at = t0 + Duration::from_secs(60) * (i + 1);
            fail_n(&throttle, "alice", &format!("10.2.0.{i}"), 1, at);
        }
        // However many failures, the owner waits at most a minute.
        let later = t0 + Duration::from_secs(30 * 60 + 1);
        assert_eq!(
            throttle.begin("alice", "192.0.2.1", later),
            Err(Duration::from_secs(59))
        );
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_window() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        fail_n(&throttle, "bob", "10.0.0.1", 5, t0);
        assert!(throttle.begin("bob", "10.0.0.1", t0).is_err());
        let later = t0 + Duration::from_secs(15 * 60);
        fail_n(&throttle, "bob", "10.0.0.1", 5, later);
        assert!(throttle.begin("bob", "10.0.0.1", later).is_err());
    }

    #[test]
    fn a_right_password_is_not_counted_against_the_address() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        // 40 people behind one address sign in correctly, one after the other.
        for i in 0..40 {
            let account = format!("user{i}");
            assert_eq!(throttle.begin(&account, "10.0.0.1", t0), Ok(()));
            throttle.succeeded(&account, "10.0.0.1");
        }
        fail_n(&throttle, "mallory", "10.0.0.1", 5, t0);
    }

    #[test]
    fn concurrent_guesses_get_only_the_free_ones_through() {
        let throttle = std::sync::Arc::new(LoginThrottle::default());
        let t0 = Instant::now();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(50));
        let passed: usize = (0..50)
            .map(|_| {
                let (throttle, barrier) = (throttle.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    throttle.begin("alice", "10.0.0.66", t0).is_ok() as usize
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(passed, 5);
    }
}
