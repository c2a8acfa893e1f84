//! The browser's live state, fed by the socket: connection state, unread count, what changed on
//! devices since their data was loaded, and peak toasts. Applying a frame is plain signal
//! updates, so it runs (and is tested) the same on the server.

use std::collections::{HashMap, VecDeque};

use leptos::prelude::*;
use uuid::Uuid;

use super::{get_live_summary, EpisodeEvent, Frame, LiveEvent, LiveSummary, ReadingEvent};
use crate::auth::Auth;
use crate::error::AppError;

/// The socket's state, as the header shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Not started (server HTML, anonymous visitors).
    Idle,
    Connecting,
    Live,
    Reconnecting,
}

/// Live changes to one device since its card's data was loaded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overlay {
    pub last: Option<ReadingEvent>,
    /// The episode as of outbox `seq`: `Some(None)` means it ended.
    pub episode: Option<(i64, Option<EpisodeEvent>)>,
}

/// A peak toast: one per episode, updated while it grows and when it ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Toast {
    pub id: u64,
    pub episode: EpisodeEvent,
}

/// Draws the toasts of a page's live state (see [`Live::toasts_view`]).
pub type DrawToasts = fn(Live) -> AnyView;

/// How many alert ids a tab remembers to drop repeats.
const SEEN_ALERTS: usize = 512;
/// Toasts on screen at most; older ones give way.
const MAX_TOASTS: usize = 4;

#[derive(Clone, Copy)]
pub struct Live {
    pub connection: RwSignal<Connection>,
    /// Unread alerts; `None` until the summary is loaded.
    pub unread: RwSignal<Option<i64>>,
    pub overlays: RwSignal<HashMap<Uuid, Overlay>>,
    pub toasts: RwSignal<Vec<Toast>>,
    /// Draws the toasts; set by the socket's code when it starts ([`toast_list`]). Toasts come
    /// only from the socket, so their view (and its number formatting) travels in the socket's
    /// chunk instead of the first module every visitor loads.
    pub toasts_view: RwSignal<Option<DrawToasts>>,
    /// Bumped when devices were assigned, changed or deleted, or after a reconnect: device
    /// lists reload.
    pub devices_version: RwSignal<u64>,
    /// Bumped when alerts arrive or are read elsewhere: the alert centre reloads.
    pub alerts_version: RwSignal<u64>,
    /// The clock for "3 min ago" and "no recent data", ticking in the browser.
    pub now: RwSignal<i64>,
    /// Bumped to reload the summary (unread count and position).
    pub summary_version: RwSignal<u64>,
    /// The last outbox sequence number applied.
    pub seq: RwSignal<i64>,
    seen: StoredValue<VecDeque<Uuid>>,
    next_toast: StoredValue<u64>,
}

/// Milliseconds since the epoch, by the browser's clock or the server's.
pub fn now_ms() -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now() as i64
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        chrono::Utc::now().timestamp_millis()
    }
}

/// The unread count and live position for the signed-in user (`None`: anonymous).
#[derive(Clone, Copy)]
pub struct Summary(pub Resource<Result<Option<LiveSummary>, AppError>, crate::codec::Json>);

impl Live {
    fn new() -> Live {
        Live {
            connection: RwSignal::new(Connection::Idle),
            unread: RwSignal::new(None),
            overlays: RwSignal::new(HashMap::new()),
            toasts: RwSignal::new(Vec::new()),
            toasts_view: RwSignal::new(None),
            devices_version: RwSignal::new(0),
            alerts_version: RwSignal::new(0),
            now: RwSignal::new(now_ms()),
            summary_version: RwSignal::new(0),
            seq: RwSignal::new(0),
            seen: StoredValue::new(VecDeque::new()),
            next_toast: StoredValue::new(0),
        }
    }

    /// Creates the live state for this page and, in the browser, keeps a socket open while a
    /// user is signed in.
    pub fn provide(auth: Auth) -> Live {
        let live = Live::new();
        let summary = Summary(crate::codec::resource(
            move || {
                (
                    auth.login.version().get(),
                    auth.logout.version().get(),
                    live.summary_version.get(),
                )
            },
            |_| get_live_summary(),
        ));
        provide_context(live);
        provide_context(summary);
        super::socket::keep_connected(live, auth, summary);
        live
    }

    /// Takes the summary the page was rendered with, unless newer figures arrived already.
    pub fn adopt(&self, summary: &LiveSummary) {
        if self.unread.get_untracked().is_none() {
            self.unread.set(Some(summary.unread));
        }
        if summary.seq > self.seq.get_untracked() {
            self.seq.set(summary.seq);
        }
    }

    /// Applies one frame from the socket. Durable frames at or below the applied position are
    /// repeats (a replay overlapping the stream) and change nothing.
    pub fn apply(&self, frame: Frame) {
        if frame.seq > 0 {
            if frame.seq <= self.seq.get_untracked() {
                return;
            }
            self.seq.set(frame.seq);
        }
        match frame.event {
            LiveEvent::Hello(seq) => {
                if seq > self.seq.get_untracked() {
                    self.seq.set(seq);
                }
                self.connection.set(Connection::Live);
            }
            LiveEvent::Readings(readings) => self.overlays.update(|map| {
                for r in readings {
                    let entry = map.entry(r.device_id).or_default();
                    if entry.last.as_ref().is_none_or(|l| l.t_ms < r.t_ms) {
                        entry.last = Some(r);
                    }
                }
            }),
            LiveEvent::Alert(alert) => {
                let fresh = self.seen.try_update_value(|seen| {
                    if seen.contains(&alert.id) {
                        return false;
                    }
                    if seen.len() == SEEN_ALERTS {
                        seen.pop_front();
                    }
                    seen.push_back(alert.id);
                    true
                });
                if fresh == Some(true) {
                    self.unread.update(|n| *n = Some(n.unwrap_or(0) + 1));
                    self.alerts_version.update(|v| *v += 1);
                }
            }
            LiveEvent::EpisodeStarted(episode) => {
                self.set_episode(frame.seq, &episode, false);
                self.toast(episode);
            }
            LiveEvent::EpisodeUpdated(episode) => {
                self.set_episode(frame.seq, &episode, false);
                self.update_toast(episode);
            }
            LiveEvent::EpisodeEnded(episode) => {
                self.set_episode(frame.seq, &episode, true);
                self.update_toast(episode);
            }
            LiveEvent::DeviceAssigned(_)
            | LiveEvent::DeviceUnassigned(_)
            | LiveEvent::DeviceChanged(_)
            | LiveEvent::DeviceDeleted(_) => self.devices_version.update(|v| *v += 1),
            LiveEvent::AlertsRead(read) => {
                self.unread.set(Some(read.unread));
                self.alerts_version.update(|v| *v += 1);
            }
            LiveEvent::Resync => self.reload(),
            LiveEvent::Heartbeat | LiveEvent::SessionEnded(_) => {}
        }
    }

    /// Reloads everything over HTTP: after a reconnect or when the socket fell behind.
    pub fn reload(&self) {
        self.unread.set(None);
        self.summary_version.update(|v| *v += 1);
        self.devices_version.update(|v| *v += 1);
        self.alerts_version.update(|v| *v += 1);
    }

    fn set_episode(&self, seq: i64, episode: &EpisodeEvent, ended: bool) {
        self.overlays.update(|map| {
            let entry = map.entry(episode.device_id).or_default();
            if entry.episode.as_ref().is_none_or(|(s, _)| *s < seq) {
                entry.episode = Some((seq, (!ended).then(|| episode.clone())));
            }
        });
    }

    fn toast(&self, episode: EpisodeEvent) {
        if self
            .toasts
            .with_untracked(|t| t.iter().any(|t| t.episode.id == episode.id))
        {
            return self.update_toast(episode);
        }
        let id = self
            .next_toast
            .try_update_value(|n| {
                *n += 1;
                *n
            })
            .unwrap_or(0);
        self.toasts.update(|toasts| {
            toasts.push(Toast { id, episode });
            let excess = toasts.len().saturating_sub(MAX_TOASTS);
            toasts.drain(..excess);
        });
        #[cfg(target_arch = "wasm32")]
        {
            let toasts = self.toasts;
            set_timeout(
                move || toasts.update(|t| t.retain(|t| t.id != id)),
                std::time::Duration::from_secs(20),
            );
        }
    }

    fn update_toast(&self, episode: EpisodeEvent) {
        self.toasts.update(|toasts| {
            for t in toasts.iter_mut().filter(|t| t.episode.id == episode.id) {
                t.episode = episode.clone();
            }
        });
    }

    pub fn dismiss(&self, id: u64) {
        self.toasts.update(|t| t.retain(|t| t.id != id));
    }
}

pub fn use_live() -> Live {
    expect_context::<Live>()
}

/// "Live" or "Reconnecting…", unobtrusively, in the header. Its text is never empty, so that
/// the node is the same in the server's HTML and after hydration whatever the socket did in
/// between; an idle socket is hidden (by the style sheet).
#[component]
pub fn ConnectionBadge() -> impl IntoView {
    let live = use_live();
    let state = move || match live.connection.get() {
        Connection::Idle => "idle",
        Connection::Connecting => "connecting",
        Connection::Live => "live",
        Connection::Reconnecting => "reconnecting",
    };
    let text = move || match live.connection.get() {
        Connection::Idle => "Offline",
        Connection::Connecting => "Connecting…",
        Connection::Live => "Live",
        Connection::Reconnecting => "Reconnecting…",
    };
    view! {
        <span
            class="conn"
            data-state=state
            data-testid="connection"
            role="status"
            aria-live="polite"
        >
            {text}
        </span>
    }
}

/// The alert centre link with the unread count (hidden at zero).
#[component]
pub fn UnreadBadge() -> impl IntoView {
    let live = use_live();
    let unread = move || live.unread.get().unwrap_or(0);
    let count = move || match unread() {
        n if n >= super::UNREAD_CAP => format!("{}+", super::UNREAD_CAP - 1),
        n => n.to_string(),
    };
    let label = move || match unread() {
        0 => "Alerts".to_string(),
        n => format!("Alerts, {n} unread"),
    };
    view! {
        // A plain `<a>`: the router handles clicks on every link, and the bell needs no
        // `aria-current`.
        <a href="/alerts" class="bell" aria-label=label>
            "Alerts"
            <span class="count" data-testid="unread-count" hidden=move || unread() == 0>
                {count}
            </span>
        </a>
    }
}

/// Peak toasts, newest last, in a polite live region (drawn by [`Live::toasts_view`]).
#[component]
pub fn Toasts() -> impl IntoView {
    let live = use_live();
    view! {
        <div class="toasts" role="status" aria-live="polite">
            {move || live.toasts_view.get().map(|draw| draw(live))}
        </div>
    }
}

/// The toasts' view, for [`Live::toasts_view`].
pub fn toast_list(live: Live) -> AnyView {
    (move || {
        live.toasts
            .get()
            .into_iter()
            .map(|toast| view! { <ToastView toast/> })
            .collect_view()
    })
    .into_any()
}

#[component]
fn ToastView(toast: Toast) -> impl IntoView {
    let live = use_live();
    let e = toast.episode;
    let ended = e.ended_ms.is_some();
    let detail = if e.peaks > 1 {
        format!(
            "{} peak intervals, highest {}",
            e.peaks,
            super::format_kw(e.max_power_kw)
        )
    } else {
        format!("{} drawn", super::format_kw(e.max_power_kw))
    };
    let id = toast.id;
    view! {
        <div class="toast" class:ended=ended data-testid="toast">
            <div>
                <strong>{if ended { "Peak ended: " } else { "Peak: " }} {e.device}</strong>
                <p>{detail} " · limit " {super::format_kw(e.limit_kw)}</p>
            </div>
            <button type="button" class="link" aria-label="Dismiss" on:click=move |_| live.dismiss(id)>
                "×"
            </button>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{AlertEvent, AlertsRead};

    fn live() -> Live {
        let live = Live::new();
        live.unread.set(Some(2));
        live.seq.set(10);
        live
    }

    fn alert(id: Uuid) -> LiveEvent {
        LiveEvent::Alert(AlertEvent {
            id,
            device_id: Uuid::nil(),
            device: "Pump".into(),
            t1_ms: 0,
            t2_ms: 600_000,
            power_kw: 9.0,
            max_power_kw: 4.5,
            created_ms: 0,
            episode_id: None,
        })
    }

    fn episode(peaks: i32, ended_ms: Option<i64>) -> EpisodeEvent {
        EpisodeEvent {
            id: Uuid::from_u128(1),
            device_id: Uuid::from_u128(2),
            device: "Pump".into(),
            started_ms: 0,
            last_ms: 600_000,
            peaks,
            max_power_kw: 9.0,
            limit_kw: 4.5,
            ended_ms,
        }
    }

    #[test]
    fn repeated_or_replayed_alerts_count_once() {
        let owner = Owner::new();
        owner.with(|| {
            let live = live();
            let id = Uuid::from_u128(9);
            live.apply(Frame {
                seq: 11,
                event: alert(id),
            });
            // The same frame again (a replay overlapping the stream).
            live.apply(Frame {
                seq: 11,
                event: alert(id),
            });
            // The same alert under another number (published twice by a relay).
            live.apply(Frame {
                seq: 12,
                event: alert(id),
            });
            // An old frame.
            live.apply(Frame {
                seq: 5,
                event: alert(Uuid::from_u128(3)),
            });
            assert_eq!(live.unread.get_untracked(), Some(3));
            assert_eq!(live.seq.get_untracked(), 12);
            live.apply(Frame {
                seq: 13,
                event: LiveEvent::AlertsRead(AlertsRead {
                    ids: vec![],
                    through_seq: Some(4),
                    unread: 0,
                }),
            });
            assert_eq!(live.unread.get_untracked(), Some(0));
        });
    }

    #[test]
    fn an_episode_makes_one_toast_that_follows_it() {
        let owner = Owner::new();
        owner.with(|| {
            let live = live();
            live.apply(Frame {
                seq: 11,
                event: LiveEvent::EpisodeStarted(episode(1, None)),
            });
            live.apply(Frame {
                seq: 12,
                event: LiveEvent::EpisodeUpdated(episode(3, None)),
            });
            live.apply(Frame {
                seq: 13,
                event: LiveEvent::EpisodeEnded(episode(3, Some(1))),
            });
            let toasts = live.toasts.get_untracked();
            assert_eq!(toasts.len(), 1);
            assert_eq!(toasts[0].episode.peaks, 3);
            assert_eq!(toasts[0].episode.ended_ms, Some(1));
            let overlay = live.overlays.get_untracked()[&Uuid::from_u128(2)].clone();
            assert_eq!(overlay.episode, Some((13, None)));
        });
    }

    #[test]
    fn older_readings_do_not_replace_newer_ones() {
        let owner = Owner::new();
        owner.with(|| {
            let live = live();
            let reading = |t_ms| ReadingEvent {
                device_id: Uuid::nil(),
                t_ms,
                energy_kwh: 1.0,
                power_kw: None,
                interval_ms: None,
            };
            live.apply(Frame {
                seq: 0,
                event: LiveEvent::Readings(vec![reading(20)]),
            });
            live.apply(Frame {
                seq: 0,
                event: LiveEvent::Readings(vec![reading(10)]),
            });
            let last = live.overlays.get_untracked()[&Uuid::nil()].last.clone();
            assert_eq!(last.map(|l| l.t_ms), Some(20));
        });
    }
}
