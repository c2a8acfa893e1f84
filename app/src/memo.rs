//! Values this server read from the database lately and may trust for a while: a map whose
//! entries last at most a lifetime, and that the live events prune. A reader takes a
//! [`Ticket`] before it reads the database; what it read is kept only if nothing was pruned in
//! between, so a read that raced with an event cannot bring back what the event removed.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Entries held at most; beyond it, new values are not kept until old ones expire.
const CAPACITY: usize = 100_000;

#[derive(Debug)]
struct Inner<K, V> {
    /// Counts the prunings: a read begun before one is not kept.
    prunings: u64,
    entries: HashMap<K, (V, Instant)>,
}

#[derive(Debug)]
pub struct Memo<K, V> {
    lifetime: Duration,
    inner: Mutex<Inner<K, V>>,
}

/// Taken before reading the database; see [`Memo::put`].
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

impl<K: Eq + Hash, V: Clone> Default for Memo<K, V> {
    fn default() -> Self {
        Memo::new(Duration::ZERO)
    }
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    /// A memo whose entries are trusted for `lifetime`; zero keeps nothing.
    pub fn new(lifetime: Duration) -> Self {
        Memo {
            lifetime,
            inner: Mutex::new(Inner {
                prunings: 0,
                entries: HashMap::new(),
            }),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner<K, V>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value kept for `key` less than the lifetime before `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let mut inner = self.inner();
        let (value, kept) = inner.entries.get(key)?;
        if now.saturating_duration_since(*kept) < self.lifetime {
            return Some(value.clone());
        }
        inner.entries.remove(key);
        None
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(self.inner().prunings)
    }

    /// Keeps `value` as read at `now`, unless something was pruned since `ticket` was taken.
    pub fn put(&self, ticket: Ticket, key: K, value: V, now: Instant) {
        if self.lifetime.is_zero() {
            return;
        }
        let mut inner = self.inner();
        if inner.prunings != ticket.0 {
            return;
        }
        if inner.entries.len() >= CAPACITY && !inner.entries.contains_key(&key) {
            let lifetime = self.lifetime;
            inner
                .entries
                .retain(|_, (_, kept)| now.saturating_duration_since(*kept) < lifetime);
            if inner.entries.len() >= CAPACITY {
                return;
            }
        }
        inner.entries.insert(key, (value, now));
    }

    /// Drops the entries `stale` picks; a read in flight is not kept either.
    pub fn prune(&self, mut stale: impl FnMut(&K, &V) -> bool) {
        let mut inner = self.inner();
        inner.prunings += 1;
        inner.entries.retain(|key, (value, _)| !stale(key, value));
    }

    pub fn len(&self) -> usize {
        self.inner().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lasts_its_lifetime_and_no_read_survives_a_pruning() {
        let memo = Memo::<u8, &str>::new(Duration::from_secs(5));
        let t0 = Instant::now();
        memo.put(memo.ticket(), 1, "one", t0);
        assert_eq!(memo.get(&1, t0 + Duration::from_millis(4_999)), Some("one"));
        assert_eq!(memo.get(&1, t0 + Duration::from_secs(5)), None);
        assert!(memo.is_empty(), "an expired entry is dropped when met");

        let before = memo.ticket();
        memo.prune(|_, _| false);
        memo.put(before, 2, "two", t0);
        assert_eq!(memo.get(&2, t0), None, "read across a pruning");
        memo.put(memo.ticket(), 2, "two", t0);
        memo.put(memo.ticket(), 3, "three", t0);
        memo.prune(|key, _| *key == 2);
        assert_eq!((memo.get(&2, t0), memo.get(&3, t0)), (None, Some("three")));

        let off = Memo::<u8, &str>::new(Duration::ZERO);
        off.put(off.ticket(), 1, "one", t0);
        assert_eq!(off.get(&1, t0), None);
    }
}
