//! The hub of one server instance: the registry of its open sockets, and the dispatch of what
//! arrives on the bus to the sockets that may see it.
//!
//! Outbox events arrive in sequence order; the hub passes each on once (it drops numbers it
//! has passed, and reads a gap in the numbers from the outbox before going on). An event for
//! a device goes to its owner's sockets and every admin's; a private one (read state, session
//! ends) to its user's only. Every socket has a bounded queue: a socket that cannot keep up
//! loses its queue and is told to reload over HTTP, and never holds up the hub or another
//! socket.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use app::live::ssr::LiveHandle;
use app::live::{Frame, LiveEvent, ReadingEvent};
use axum::extract::ws::Utf8Bytes;
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::bus::{BusMessage, HubInput, RoutedReading, StoredEvent};
use super::relay;
use crate::metering::metrics::Metrics;

/// Why the server closes a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The login session ended (sign-out, password reset, account deleted, expiry).
    SessionEnded,
    /// This instance is stopping: the browser reconnects, to another instance if there is one.
    ShuttingDown,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<(i64, Utf8Bytes)>,
    lagged: bool,
    close: Option<CloseReason>,
}

/// What a socket's writer takes from its queue at once.
pub struct Pending {
    /// Frames were dropped before these: tell the browser to reload.
    pub lagged: bool,
    pub frames: VecDeque<(i64, Utf8Bytes)>,
    pub close: Option<CloseReason>,
}

/// One open socket as the hub sees it.
pub struct Slot {
    id: u64,
    pub user: Uuid,
    pub admin: bool,
    /// Hash of its login session's id.
    pub session: Option<i64>,
    queue: Mutex<Queue>,
    notify: Notify,
    capacity: usize,
}

impl Slot {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, seq: i64, frame: &Utf8Bytes, metrics: &Metrics) {
        let mut queue = self.queue();
        if queue.close.is_some() {
            return;
        }
        if queue.frames.len() >= self.capacity {
            queue.frames.clear();
            if !std::mem::replace(&mut queue.lagged, true) {
                metrics.ws_resyncs.inc();
            }
        } else {
            queue.frames.push_back((seq, frame.clone()));
        }
        drop(queue);
        self.notify.notify_one();
    }

    pub fn close(&self, reason: CloseReason) {
        self.queue().close.get_or_insert(reason);
        self.notify.notify_one();
    }

    /// Completes when there is something to take.
    pub async fn ready(&self) {
        self.notify.notified().await
    }

    pub fn take(&self) -> Pending {
        let mut queue = self.queue();
        Pending {
            lagged: std::mem::take(&mut queue.lagged),
            frames: std::mem::take(&mut queue.frames),
            close: queue.close,
        }
    }
}

#[derive(Default)]
struct Registry {
    last_seq: i64,
    next_id: u64,
    users: HashMap<Uuid, Vec<Arc<Slot>>>,
    admins: Vec<Arc<Slot>>,
}

pub struct Hub {
    db: DatabaseConnection,
    registry: Mutex<Registry>,
    handle: LiveHandle,
    metrics: Arc<Metrics>,
    capacity: usize,
}

/// Events read per query when filling a gap.
const FILL_BATCH: i64 = 1000;

impl Hub {
    /// A hub whose sockets each queue at most `capacity` frames, starting after outbox event
    /// `start_seq`.
    pub fn new(
        db: DatabaseConnection,
        handle: LiveHandle,
        metrics: Arc<Metrics>,
        capacity: usize,
        start_seq: i64,
    ) -> Hub {
        handle.set_seq(start_seq);
        Hub {
            db,
            registry: Mutex::new(Registry {
                last_seq: start_seq,
                ..Default::default()
            }),
            handle,
            metrics,
            capacity: capacity.max(1),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Registers a socket. Events after the returned number go to its queue; the ones up to
    /// it are committed, for the socket to replay from the outbox.
    pub fn register(&self, user: Uuid, admin: bool, session: Option<i64>) -> (Arc<Slot>, i64) {
        let mut registry = self.registry();
        registry.next_id += 1;
        let slot = Arc::new(Slot {
            id: registry.next_id,
            user,
            admin,
            session,
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            capacity: self.capacity,
        });
        registry.users.entry(user).or_default().push(slot.clone());
        if admin {
            registry.admins.push(slot.clone());
        }
        self.metrics.ws_connections.inc();
        (slot, registry.last_seq)
    }

    pub fn unregister(&self, slot: &Slot) {
        let mut registry = self.registry();
        if let Some(slots) = registry.users.get_mut(&slot.user) {
            slots.retain(|s| s.id != slot.id);
            if slots.is_empty() {
                registry.users.remove(&slot.user);
            }
        }
        if slot.admin {
            registry.admins.retain(|s| s.id != slot.id);
        }
        self.metrics.ws_connections.dec();
    }

    /// The last outbox event passed on.
    pub fn last_seq(&self) -> i64 {
        self.registry().last_seq
    }

    /// Passes on what the bus brings until `cancel`, then closes every socket ("going away").
    pub async fn run(
        self: Arc<Self>,
        mut input: mpsc::Receiver<HubInput>,
        cancel: CancellationToken,
    ) {
        loop {
            let item = tokio::select! {
                item = input.recv() => item,
                _ = cancel.cancelled() => break,
            };
            match item {
                None => break,
                Some(HubInput::Resubscribed) => self.fill(None, &cancel).await,
                Some(HubInput::Message(BusMessage::Events(events))) => {
                    if let Some(first) = events.first() {
                        if first.seq > self.last_seq() + 1 {
                            self.fill(Some(first.seq - 1), &cancel).await;
                        }
                    }
                    self.dispatch(&events);
                }
                Some(HubInput::Message(BusMessage::Readings(readings))) => {
                    self.dispatch_readings(&readings)
                }
            }
        }
        self.close_all(CloseReason::ShuttingDown);
    }

    /// Reads the events after the last one passed on (up to `through`) from the outbox and
    /// passes them on; keeps trying while the database is unavailable.
    async fn fill(&self, through: Option<i64>, cancel: &CancellationToken) {
        let mut delay = Duration::from_millis(100);
        loop {
            let after = self.last_seq();
            if through.is_some_and(|t| t <= after) {
                return;
            }
            match relay::events_after(&self.db, after, through, FILL_BATCH).await {
                Ok(events) => {
                    let n = events.len();
                    self.metrics.events_filled.inc_by(n as u64);
                    self.dispatch(&events);
                    if (n as i64) < FILL_BATCH {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read missed events from the outbox; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Passes outbox events on, each once.
    pub fn dispatch(&self, events: &[StoredEvent]) {
        let mut registry = self.registry();
        let mut cards_changed = false;
        for event in events {
            if event.seq <= registry.last_seq {
                continue;
            }
            registry.last_seq = event.seq;
            // Before the position moves past it: a count read with that position includes it.
            if event.kind == "device_deleted" {
                self.handle.unread().all_changed();
            } else {
                self.handle.unread().changed(event.user_id, event.private);
            }
            cards_changed |= !event.private;
            if event.kind == "session_ended" {
                end_sessions(&registry, &self.handle, event);
                continue;
            }
            let frame = Utf8Bytes::from(format!(
                "{{\"seq\":{},\"event\":{}}}",
                event.seq, event.payload
            ));
            let owner_slots = event
                .user_id
                .and_then(|u| registry.users.get(&u))
                .into_iter()
                .flatten()
                .filter(|s| event.private || !s.admin);
            let admin_slots = registry.admins.iter().filter(|_| !event.private);
            for slot in owner_slots.chain(admin_slots) {
                slot.push(event.seq, &frame, &self.metrics);
            }
        }
        // Before the position moves past them: cards read with that position include them.
        if cards_changed {
            self.handle.cards().all_changed();
        }
        self.handle.set_seq(registry.last_seq);
    }

    /// Passes reading updates on to their devices' owners and to the admins.
    pub fn dispatch_readings(&self, readings: &[RoutedReading]) {
        let owners: HashSet<Option<Uuid>> = readings.iter().map(|r| r.owner).collect();
        self.handle.cards().readings(&owners);
        let registry = self.registry();
        let mut by_owner: HashMap<Uuid, Vec<ReadingEvent>> = HashMap::new();
        for r in readings {
            if let Some(owner) = r.owner.filter(|o| registry.users.contains_key(o)) {
                by_owner.entry(owner).or_default().push(r.reading.clone());
            }
        }
        for (owner, readings) in by_owner {
            let frame = readings_frame(readings);
            for slot in registry.users[&owner].iter().filter(|s| !s.admin) {
                slot.push(0, &frame, &self.metrics);
            }
        }
        if !registry.admins.is_empty() {
            let frame = readings_frame(readings.iter().map(|r| r.reading.clone()).collect());
            for slot in &registry.admins {
                slot.push(0, &frame, &self.metrics);
            }
        }
    }

    pub fn close_all(&self, reason: CloseReason) {
        let registry = self.registry();
        for slot in registry.users.values().flatten() {
            slot.close(reason);
        }
    }

    /// How many sockets are open.
    pub fn sockets(&self) -> usize {
        self.registry().users.values().map(Vec::len).sum()
    }
}

fn readings_frame(readings: Vec<ReadingEvent>) -> Utf8Bytes {
    let frame = Frame {
        seq: 0,
        event: LiveEvent::Readings(readings),
    };
    Utf8Bytes::from(serde_json::to_string(&frame).unwrap_or_default())
}

/// Closes the sockets of the session (or of every session of the user) the event names, and
/// drops it from this server's session cache.
fn end_sessions(registry: &Registry, handle: &LiveHandle, event: &StoredEvent) {
    let Some(user) = event.user_id else {
        return;
    };
    let session = match serde_json::from_str::<LiveEvent>(&event.payload) {
        Ok(LiveEvent::SessionEnded(session)) => session,
        _ => {
            tracing::warn!(seq = event.seq, "a session_ended event without its session");
            // Whatever it meant, none of the user's sessions is trusted from memory now.
            handle.sessions().ended(user, None);
            return;
        }
    };
    handle.sessions().ended(user, session);
    for slot in registry.users.get(&user).into_iter().flatten() {
        if session.is_none() || slot.session == session {
            slot.close(CloseReason::SessionEnded);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::live::EpisodeEvent;

    /// A hub whose database is never reached by these tests.
    async fn hub(capacity: usize) -> Hub {
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        Hub::new(
            db,
            LiveHandle::default(),
            Arc::new(Metrics::new("in-process")),
            capacity,
            10,
        )
    }

    fn event(seq: i64, user: Option<Uuid>, private: bool) -> StoredEvent {
        let payload = LiveEvent::EpisodeStarted(EpisodeEvent {
            id: Uuid::nil(),
            device_id: Uuid::nil(),
            device: "Pump".into(),
            started_ms: 0,
            last_ms: 0,
            peaks: 1,
            max_power_kw: 9.0,
            limit_kw: 4.5,
            ended_ms: None,
        });
        StoredEvent {
            seq,
            kind: payload.kind().into(),
            user_id: user,
            private,
            payload: serde_json::to_string(&payload).unwrap(),
        }
    }

    fn seqs(slot: &Slot) -> Vec<i64> {
        slot.take().frames.into_iter().map(|(s, _)| s).collect()
    }

    #[tokio::test]
    async fn events_reach_their_owner_and_admins_only_once() {
        let hub = hub(16).await;
        let (alice, bob, admin) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let (a1, start) = hub.register(alice, false, Some(1));
        let (a2, _) = hub.register(alice, false, Some(2));
        let (b, _) = hub.register(bob, false, None);
        let (ad, _) = hub.register(admin, true, None);
        assert_eq!(start, 10);
        hub.dispatch(&[
            event(9, Some(alice), false),
            event(11, Some(alice), false),
            event(12, Some(bob), true),
            event(11, Some(alice), false),
            event(13, None, false),
        ]);
        assert_eq!(seqs(&a1), [11]);
        assert_eq!(seqs(&a2), [11]);
        // Bob's private event is his alone; the unowned device's event goes to admins.
        assert_eq!(seqs(&b), [12]);
        assert_eq!(seqs(&ad), [11, 13]);
        assert_eq!(hub.last_seq(), 13);
        assert_eq!(hub.handle.seq(), 13);
    }

    #[tokio::test]
    async fn a_full_queue_turns_into_one_resync() {
        let hub = hub(2).await;
        let user = Uuid::from_u128(1);
        let (slot, _) = hub.register(user, false, None);
        let events: Vec<_> = (11..=15).map(|s| event(s, Some(user), false)).collect();
        hub.dispatch(&events);
        let pending = slot.take();
        assert!(pending.lagged);
        // 11, 12 queued; 13 overflowed (cleared); 14, 15 queued after the clear.
        assert_eq!(
            pending
                .frames
                .into_iter()
                .map(|(s, _)| s)
                .collect::<Vec<_>>(),
            [14, 15]
        );
        assert_eq!(hub.metrics.ws_resyncs.get(), 1);
    }

    #[tokio::test]
    async fn a_session_end_closes_that_sessions_sockets() {
        let hub = hub(16).await;
        let user = Uuid::from_u128(1);
        let (one, _) = hub.register(user, false, Some(7));
        let (other, _) = hub.register(user, false, Some(8));
        let ended = LiveEvent::SessionEnded(Some(7));
        hub.dispatch(&[StoredEvent {
            seq: 11,
            kind: ended.kind().into(),
            user_id: Some(user),
            private: true,
            payload: serde_json::to_string(&ended).unwrap(),
        }]);
        assert_eq!(one.take().close, Some(CloseReason::SessionEnded));
        let kept = other.take();
        assert_eq!(kept.close, None);
        assert!(kept.frames.is_empty(), "the event itself is not sent");
    }

    #[tokio::test]
    async fn readings_go_to_owners_and_admins() {
        let hub = hub(16).await;
        let (alice, admin) = (Uuid::from_u128(1), Uuid::from_u128(3));
        let (a, _) = hub.register(alice, false, None);
        let (ad, _) = hub.register(admin, true, None);
        let reading = |device: u128| ReadingEvent {
            device_id: Uuid::from_u128(device),
            t_ms: 0,
            energy_kwh: 1.0,
            power_kw: None,
            interval_ms: None,
        };
        hub.dispatch_readings(&[
            RoutedReading {
                owner: Some(alice),
                reading: reading(5),
            },
            RoutedReading {
                owner: Some(Uuid::from_u128(2)),
                reading: reading(6),
            },
        ]);
        let frames = |slot: &Slot| -> Vec<Frame> {
            slot.take()
                .frames
                .into_iter()
                .map(|(_, f)| serde_json::from_str(f.as_str()).unwrap())
                .collect()
        };
        assert_eq!(
            frames(&a),
            [Frame {
                seq: 0,
                event: LiveEvent::Readings(vec![reading(5)])
            }]
        );
        assert_eq!(
            frames(&ad),
            [Frame {
                seq: 0,
                event: LiveEvent::Readings(vec![reading(5), reading(6)])
            }]
        );
    }
}
