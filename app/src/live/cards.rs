//! Pages of device cards this server read lately, so that a dashboard shown again and again
//! (every sign-in, every reload, every tab) does not query the devices and their live state
//! each time. The hub drops what its events may change: every page when an outbox event that
//! is not private passes (a device added, changed, moved or deleted, an alert, an episode), and
//! the pages of a device's owner and the admins' views when a reading passes. A page is trusted
//! for at most the cache's lifetime (`SESSION_CACHE_SECS`) in any case, so a reading update the
//! bus dropped leaves a card behind for no longer than that (the socket brings the next one).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::dashboard::DeviceLive;
use crate::devices::OwnerFilter;
use crate::memo::{Memo, Ticket};
use crate::ui::Page;

/// A page of cards and the outbox position it was read at.
#[derive(Clone, Debug)]
pub struct Cards {
    pub seq: i64,
    pub page: Page<DeviceLive>,
}

/// Pages of cards by whose devices they show and page number.
#[derive(Debug, Default)]
pub struct CardCache(Memo<(OwnerFilter, i64), Cards>);

impl CardCache {
    /// A cache whose pages are trusted for `lifetime`; zero turns it off.
    pub fn new(lifetime: Duration) -> Self {
        CardCache(Memo::new(lifetime))
    }

    pub fn get(&self, filter: OwnerFilter, page: i64, now: Instant) -> Option<Cards> {
        self.0.get(&(filter, page), now)
    }

    /// Taken before reading; a page begun before an event is not kept.
    pub fn ticket(&self) -> Ticket {
        self.0.ticket()
    }

    /// Keeps a page, unless it is past the last one: an empty page after the first costs
    /// nothing to read again, and keeping them would let anyone fill the cache with page numbers.
    pub fn put(&self, ticket: Ticket, filter: OwnerFilter, page: i64, cards: Cards, now: Instant) {
        if page > 1 && cards.page.items.is_empty() {
            return;
        }
        self.0.put(ticket, (filter, page), cards, now);
    }

    /// Readings of these owners' devices (`None`: an unassigned device) arrived: their pages,
    /// the admins' view of every device, and (for `None`) of the unassigned ones are out of date.
    pub fn readings(&self, owners: &HashSet<Option<Uuid>>) {
        self.0.prune(|(filter, _), _| match filter {
            OwnerFilter::All => true,
            OwnerFilter::Unassigned => owners.contains(&None),
            OwnerFilter::Client(id) => owners.contains(&Some(*id)),
        });
    }

    /// An event that may change any card passed.
    pub fn all_changed(&self) {
        self.0.prune(|_, _| true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cards(seq: i64) -> Cards {
        Cards {
            seq,
            page: Page {
                items: Vec::new(),
                total: 0,
                page: 1,
                per_page: 24,
            },
        }
    }

    /// A page with one card on it.
    fn one_card(seq: i64) -> Cards {
        let device = crate::devices::Device {
            id: Uuid::from_u128(7),
            description: "Pump".into(),
            address: "1 Test Street".into(),
            max_power_kw: 3.5,
            owner: None,
            created_at: "2026-12-01T14:05:00Z".into(),
        };
        let mut cards = cards(seq);
        cards.page.items.push(DeviceLive {
            device,
            last: None,
            episode: None,
        });
        cards
    }

    #[test]
    fn a_reading_drops_its_owners_pages_and_the_admins_views_only() {
        let cache = CardCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let keys = [
            OwnerFilter::Client(alice),
            OwnerFilter::Client(bob),
            OwnerFilter::All,
            OwnerFilter::Unassigned,
        ];
        let fill = |cache: &CardCache| {
            for (seq, filter) in keys.iter().enumerate() {
                cache.put(cache.ticket(), *filter, 1, cards(seq as i64), t0);
            }
        };
        let kept = |cache: &CardCache| keys.map(|f| cache.get(f, 1, t0).map(|c| c.seq));

        fill(&cache);
        assert_eq!(kept(&cache), [Some(0), Some(1), Some(2), Some(3)]);
        cache.readings(&HashSet::from([Some(alice)]));
        assert_eq!(kept(&cache), [None, Some(1), None, Some(3)]);
        fill(&cache);
        cache.readings(&HashSet::from([Some(bob)]));
        assert_eq!(kept(&cache), [Some(0), None, None, Some(3)]);
        fill(&cache);
        cache.readings(&HashSet::from([None]));
        assert_eq!(kept(&cache), [Some(0), Some(1), None, None]);
        fill(&cache);
        cache.all_changed();
        assert_eq!(kept(&cache), [None, None, None, None]);
        assert!(cache.0.is_empty());
    }

    #[test]
    fn pages_are_kept_apart() {
        let cache = CardCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        cache.put(cache.ticket(), OwnerFilter::All, 1, cards(1), t0);
        cache.put(cache.ticket(), OwnerFilter::All, 2, one_card(2), t0);
        assert_eq!(cache.get(OwnerFilter::All, 2, t0).map(|c| c.seq), Some(2));
        assert_eq!(cache.get(OwnerFilter::All, 3, t0).map(|c| c.seq), None);
        // Past the last page: not kept (the first page is, empty or not).
        cache.put(cache.ticket(), OwnerFilter::All, 9, cards(9), t0);
        cache.put(cache.ticket(), OwnerFilter::Unassigned, 1, cards(10), t0);
        assert_eq!(cache.get(OwnerFilter::All, 9, t0).map(|c| c.seq), None);
        assert_eq!(
            cache.get(OwnerFilter::Unassigned, 1, t0).map(|c| c.seq),
            Some(10)
        );
    }
}
