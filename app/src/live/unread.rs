//! Unread alert counts this server computed lately, so that the header of every page does not
//! count them in the database. The hub drops a user's count as it passes on an event about
//! them (an alert raised, alerts read, a device moved or deleted), and every admin's count with
//! any event all admins hear; a count is trusted for at most the cache's lifetime
//! (`SESSION_CACHE_SECS`) in any case. A count read with the live position embedded in the page
//! thus reflects at least the events up to that position, as one read from the database does.

use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::memo::{Memo, Ticket};

/// Each user's count, and whether they are an admin (admins count every device's alerts).
#[derive(Debug, Default)]
pub struct UnreadCache(Memo<Uuid, (bool, i64)>);

impl UnreadCache {
    /// A cache whose counts are trusted for `lifetime`; zero turns it off.
    pub fn new(lifetime: Duration) -> Self {
        UnreadCache(Memo::new(lifetime))
    }

    pub fn get(&self, user: Uuid, now: Instant) -> Option<i64> {
        self.0.get(&user, now).map(|(_, count)| count)
    }

    /// Taken before counting; a count begun before an event is not kept.
    pub fn ticket(&self) -> Ticket {
        self.0.ticket()
    }

    pub fn put(&self, ticket: Ticket, user: Uuid, admin: bool, count: i64, now: Instant) {
        self.0.put(ticket, user, (admin, count), now);
    }

    /// An event about `user` passed; `private`: only they hear it, otherwise admins do too.
    pub fn changed(&self, user: Option<Uuid>, private: bool) {
        self.0
            .prune(|id, (admin, _)| Some(*id) == user || (*admin && !private));
    }

    /// Counts of users no event names changed (a deleted device takes its alerts along, also
    /// those of its earlier owners): every count is counted again.
    pub fn all_changed(&self) {
        self.0.prune(|_, _| true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_drop_the_counts_they_may_change() {
        let cache = UnreadCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let (alice, bob, admin) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let fill = |cache: &UnreadCache| {
            cache.put(cache.ticket(), alice, false, 4, t0);
            cache.put(cache.ticket(), bob, false, 5, t0);
            cache.put(cache.ticket(), admin, true, 9, t0);
        };
        fill(&cache);
        assert_eq!(
            [alice, bob, admin].map(|u| cache.get(u, t0)),
            [Some(4), Some(5), Some(9)]
        );
        // Alice read her alerts: hers alone.
        cache.changed(Some(alice), true);
        assert_eq!(
            [alice, bob, admin].map(|u| cache.get(u, t0)),
            [None, Some(5), Some(9)]
        );
        // An alert on Bob's device: Bob's and every admin's.
        fill(&cache);
        cache.changed(Some(bob), false);
        assert_eq!(
            [alice, bob, admin].map(|u| cache.get(u, t0)),
            [Some(4), None, None]
        );
        // An event about an unassigned device: the admins'.
        fill(&cache);
        cache.changed(None, false);
        assert_eq!(
            [alice, bob, admin].map(|u| cache.get(u, t0)),
            [Some(4), Some(5), None]
        );
    }
}
