//! Signed-in sessions this server has checked lately, so that a page or a server function does
//! not read the session and its user from the database on every request.
//!
//! An entry is trusted for at most the cache's lifetime (`SESSION_CACHE_SECS`), and only
//! until its session's end reaches this server: every way a session ends (sign-out, password
//! change or reset, account deletion) writes a live event in the same transaction, and the hub
//! drops the entries it names as it passes the event on, on every instance. A session ended on
//! this instance is dropped at once. So a session ended anywhere is refused everywhere as soon
//! as its event arrives (milliseconds), and at the latest after the lifetime when the event
//! cannot travel (the bus is down).
//!
//! The cache holds what the page needs (the user as [`CurrentUser`]) and the session's clocks;
//! it never lets a session outlive its idle or absolute timeout, and leaves the periodic touch
//! of the idle clock to the full check.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::ssr::SessionTimes;
use super::CurrentUser;
use crate::memo::{Memo, Ticket};

#[derive(Clone, Debug)]
struct Entry {
    user: CurrentUser,
    /// [`crate::live::ssr::session_hash`] of the session id, as session-end events name it.
    hash: i64,
    times: SessionTimes,
}

/// Signed-in sessions by id.
#[derive(Debug, Default)]
pub struct SessionCache(Memo<String, Entry>);

impl SessionCache {
    /// A cache whose entries are trusted for `lifetime`; zero turns it off.
    pub fn new(lifetime: Duration) -> Self {
        SessionCache(Memo::new(lifetime))
    }

    /// The user and clocks of session `id` if this server checked it less than the lifetime
    /// ago and has heard of no end of it since.
    pub fn get(&self, id: &str, now: Instant) -> Option<(CurrentUser, SessionTimes)> {
        self.0
            .get(&id.to_owned(), now)
            .map(|entry| (entry.user, entry.times))
    }

    /// Taken before the session is read from the database.
    pub fn ticket(&self) -> Ticket {
        self.0.ticket()
    }

    /// Keeps a session as checked at `now`, unless a session ended since `ticket` was taken
    /// (the end may be this one's, and its event may already have passed).
    pub fn put(
        &self,
        ticket: Ticket,
        id: &str,
        user: CurrentUser,
        times: SessionTimes,
        now: Instant,
    ) {
        let hash = crate::live::ssr::session_hash(id);
        self.0
            .put(ticket, id.to_owned(), Entry { user, hash, times }, now);
    }

    /// Session `id` ended here (signed out, or replaced at sign-in).
    pub fn forget(&self, id: &str) {
        self.0.prune(|key, _| key == id);
    }

    /// A session of `user` ended somewhere: the one whose id hashes to `session`, or all of
    /// them (`None`). Also for a change to the account, which the entries copy.
    pub fn ended(&self, user: Uuid, session: Option<i64>) {
        self.0
            .prune(|_, e| e.user.id == user && session.is_none_or(|s| s == e.hash));
    }

    /// How many sessions are held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn user(id: u128) -> CurrentUser {
        CurrentUser {
            id: Uuid::from_u128(id),
            role: Role::Client,
            username: format!("u{id}"),
            display_name: format!("User {id}"),
        }
    }

    const TIMES: SessionTimes = SessionTimes {
        auth_at: 100,
        seen_at: 100,
    };

    /// FNV-1a over the bytes, written out again here as the oracle for the hash events carry.
    fn fnv(id: &str) -> i64 {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in id.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        (h >> 1) as i64
    }

    #[test]
    fn an_entry_is_trusted_for_its_lifetime_only() {
        let cache = SessionCache::new(Duration::from_secs(5));
        let t0 = Instant::now();
        cache.put(cache.ticket(), "s1", user(1), TIMES, t0);
        assert_eq!(
            cache
                .get("s1", t0 + Duration::from_millis(4_999))
                .map(|(u, _)| u),
            Some(user(1))
        );
        assert!(cache.get("s1", t0 + Duration::from_secs(5)).is_none());
        assert!(cache.is_empty(), "an expired entry is dropped when met");
    }

    #[test]
    fn a_zero_lifetime_keeps_nothing() {
        let cache = SessionCache::new(Duration::ZERO);
        let t0 = Instant::now();
        cache.put(cache.ticket(), "s1", user(1), TIMES, t0);
        assert!(cache.get("s1", t0).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn an_end_drops_the_named_session_or_all_of_the_users() {
        let cache = SessionCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for (id, u) in [("a1", 1), ("a2", 1), ("b1", 2)] {
            cache.put(cache.ticket(), id, user(u), TIMES, t0);
        }
        cache.ended(Uuid::from_u128(1), Some(fnv("a2")));
        assert!(cache.get("a2", t0).is_none());
        assert!(cache.get("a1", t0).is_some());
        // A hash of another user's session does not touch this user's.
        cache.ended(Uuid::from_u128(2), Some(fnv("a1")));
        assert!(cache.get("a1", t0).is_some());
        assert!(cache.get("b1", t0).is_some());
        cache.ended(Uuid::from_u128(1), None);
        assert!(cache.get("a1", t0).is_none());
        assert!(cache.get("b1", t0).is_some());
        cache.forget("b1");
        assert!(cache.is_empty());
    }

    #[test]
    fn a_check_that_straddles_an_end_is_not_kept() {
        let cache = SessionCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let before = cache.ticket();
        // The session was read; then an end (of any session) passed before the read was kept.
        cache.ended(Uuid::from_u128(1), Some(fnv("s1")));
        cache.put(before, "s1", user(1), TIMES, t0);
        assert!(cache.get("s1", t0).is_none());
        // A check begun after the end is kept.
        cache.put(cache.ticket(), "s1", user(1), TIMES, t0);
        assert!(cache.get("s1", t0).is_some());
    }
}
