//! Device cards with their live state: the client's dashboard and the admins' view of every
//! device. The server renders the state as of the page load; the socket keeps it current.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use super::state::{use_live, Overlay};
use super::{ago, format_kw, format_number, stale_after_ms, EpisodeEvent, ReadingEvent};
use crate::auth::{Gate, Role};
use crate::devices::{Device, OwnerFilterForm};
use crate::error::AppError;
use crate::ui::{ErrorBox, Page, Pager};

/// A device with its latest reading and its open alarm episode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceLive {
    pub device: Device,
    pub last: Option<ReadingEvent>,
    pub episode: Option<EpisodeEvent>,
}

/// A page of devices with their live state, and the outbox position it reflects: events up to
/// `seq` are in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveDevices {
    pub seq: i64,
    pub devices: Page<DeviceLive>,
}

/// Cards per page in the admins' view.
pub const LIVE_PER_PAGE: i64 = 24;

/// Devices with their live state, a page at a time: a client's own (`owner` is ignored), or
/// for an admin every device, the unassigned ones, or one client's.
#[server(prefix = "/api", endpoint = "list_live_devices")]
pub async fn list_live_devices(
    owner: Option<String>,
    page: Option<i64>,
) -> Result<LiveDevices, AppError> {
    let user = crate::auth::ssr::current_user().await?;
    let filter = match user.role {
        crate::auth::Role::Admin => {
            crate::devices::OwnerFilter::parse(owner.as_deref().unwrap_or(""))?
        }
        crate::auth::Role::Client => crate::devices::OwnerFilter::Client(user.id),
    };
    let state = crate::state::state()?;
    let page = page.unwrap_or(1);
    let cache = state.live.cards();
    let now = std::time::Instant::now();
    if let Some(cards) = cache.get(filter, page, now) {
        return Ok(LiveDevices {
            seq: cards.seq,
            devices: cards.page,
        });
    }
    let ticket = cache.ticket();
    // The position first: the cards then reflect at least the events up to it.
    let seq = state.live.seq();
    let devices = crate::devices::ssr::list_page(&state.db, filter, page, LIVE_PER_PAGE).await?;
    let items = super::ssr::with_live_state(&state.db, devices.items).await?;
    let devices = Page {
        items,
        total: devices.total,
        page: devices.page,
        per_page: devices.per_page,
    };
    let cards = super::cards::Cards {
        seq,
        page: devices.clone(),
    };
    cache.put(ticket, filter, page, cards, now);
    Ok(LiveDevices { seq, devices })
}

/// The card's state as the badge on it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardState {
    NoData,
    Normal,
    Peak,
    Silent,
}

impl CardState {
    pub fn of(live: &DeviceLive, now_ms: i64) -> CardState {
        match (&live.last, &live.episode) {
            (None, _) => CardState::NoData,
            (Some(last), _) if now_ms - last.t_ms > stale_after_ms(last.interval_ms) => {
                CardState::Silent
            }
            (Some(_), Some(_)) => CardState::Peak,
            (Some(_), None) => CardState::Normal,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CardState::NoData => "no-data",
            CardState::Normal => "normal",
            CardState::Peak => "peak",
            CardState::Silent => "silent",
        }
    }

    fn label(self) -> &'static str {
        match self {
            CardState::NoData => "No data yet",
            CardState::Normal => "Normal",
            CardState::Peak => "Peak",
            CardState::Silent => "No recent data",
        }
    }
}

/// The loaded state with what the socket said since (only what is newer).
pub fn merged(base: &DeviceLive, base_seq: i64, overlay: Option<&Overlay>) -> DeviceLive {
    let mut live = base.clone();
    if let Some(overlay) = overlay {
        if let Some(last) = &overlay.last {
            if live.last.as_ref().is_none_or(|l| l.t_ms < last.t_ms) {
                live.last = Some(last.clone());
            }
        }
        if let Some((seq, episode)) = &overlay.episode {
            if *seq > base_seq {
                live.episode = episode.clone();
            }
        }
    }
    live
}

/// One device's card; `show_owner` for admins, who see every client's devices.
#[component]
pub fn DeviceCard(data: DeviceLive, base_seq: i64, show_owner: bool) -> impl IntoView {
    let live = use_live();
    let id = data.device.id;
    let max_kw = data.device.max_power_kw;
    let description = data.device.description.clone();
    let address = data.device.address.clone();
    let owner = data.device.owner.clone().filter(|_| show_owner);
    let base = StoredValue::new(data);
    // Recomputed by each binding that needs it: cheaper in the bundle than a memo per card.
    let current = move || {
        live.overlays
            .with(|m| base.with_value(|b| merged(b, base_seq, m.get(&id))))
    };
    let state = move || CardState::of(&current(), live.now.get());
    let power = move || current().last.as_ref().and_then(|l| l.power_kw);
    let power_text = move || power().map(format_kw).unwrap_or_else(|| "–".into());
    // The bar spans one and a half times the maximum; the mark at two thirds is the maximum.
    let fill = move || {
        let ratio = power().unwrap_or(0.0) / (1.5 * max_kw);
        format!("{:.1}%", (ratio * 100.0).clamp(0.0, 100.0))
    };
    // Over the maximum as the peak rule counts it: to the milliwatt, so a power of exactly the
    // maximum (0.6000000000000005 kW against 0.6) is not shown as over.
    let over = move |p: f64| (p * 1e6).round() > (max_kw * 1e6).round();
    let level = move || match power() {
        Some(p) if over(p) => "over",
        Some(p) if p > 0.8 * max_kw => "high",
        _ => "ok",
    };
    let reading = move || match &current().last {
        Some(l) => format!(
            "Register {} kWh · {}",
            format_number(l.energy_kwh, 2),
            ago(live.now.get(), l.t_ms)
        ),
        None => "No reading yet".into(),
    };
    let episode = move || {
        current().episode.as_ref().map(|e| {
            let minutes = ((e.last_ms - e.started_ms) / 60_000).max(1);
            format!(
                "Above the maximum for {minutes} min · {} interval{} · highest {}",
                e.peaks,
                if e.peaks == 1 { "" } else { "s" },
                format_kw(e.max_power_kw)
            )
        })
    };
    view! {
        <li class="card device-card" data-state=move || state().name() data-testid="device-card" data-device=id.to_string()>
            <div class="card-head">
                <h2>{description}</h2>
                <span class="pill" data-state=move || state().name() data-testid="device-state">
                    {move || state().label()}
                </span>
            </div>
            <p class="address">{address}</p>
            {owner.map(|o| view! { <p class="small muted">"Client: " {o.display_name} " (" {o.username} ")"</p> })}
            <p class="power">
                <span class="value" data-testid="power">{power_text}</span>
                <span class="muted">" now · max " {format_kw(max_kw)}</span>
            </p>
            <div
                class="gauge"
                data-level=level
                role="meter"
                aria-label="Power against the maximum"
                aria-valuemin="0"
                aria-valuemax=format!("{:.3}", 1.5 * max_kw)
                aria-valuenow=move || format!("{:.3}", power().unwrap_or(0.0))
            >
                <span class="fill" style:width=fill></span>
                <span class="limit"></span>
            </div>
            <p class="small muted">
                <span data-testid="last-reading">{reading}</span>
            </p>
            <p class="episode" data-testid="episode" hidden=move || episode().is_none()>
                {move || episode().unwrap_or_else(|| "No peak".into())}
            </p>
            <p class="card-foot">
                <a href=format!("/devices/{id}/day") data-testid="history-link">"Consumption history →"</a>
            </p>
            <p class="muted small">"Meter id " <code class="uuid">{id.to_string()}</code></p>
        </li>
    }
}

/// Cards for `devices`, their state as of outbox position `seq`.
fn cards(devices: Vec<DeviceLive>, seq: i64, show_owner: bool) -> impl IntoView {
    view! {
        <ul class="device-cards" data-testid="my-devices">
            {devices
                .into_iter()
                .map(|data| view! { <DeviceCard data base_seq=seq show_owner/> })
                .collect_view()}
        </ul>
    }
}

/// The client's "My devices".
#[component]
pub fn DashboardPage() -> impl IntoView {
    let query = LiveQuery::new();
    view! {
        <Gate role=Role::Client>
            <LiveDevicesView admin=false query/>
        </Gate>
    }
}

/// The admins' view of every device.
#[component]
pub fn AdminLivePage() -> impl IntoView {
    let query = LiveQuery::new();
    view! {
        <Gate role=Role::Admin>
            <LiveDevicesView admin=true query/>
        </Gate>
    }
}

/// The page's filter and its devices. Made by the page, outside `Gate`: a `Suspense` walks its
/// children more than once while rendering on the server, and a resource made in there would
/// be fetched (and sent to the browser) each time.
#[derive(Clone, Copy)]
struct LiveQuery {
    owner: Memo<String>,
    devices: Resource<Result<LiveDevices, AppError>, crate::codec::Json>,
}

impl LiveQuery {
    fn new() -> Self {
        let live = use_live();
        let query = use_query_map();
        let owner = Memo::new(move |_| query.read().get("owner").unwrap_or_else(|| "all".into()));
        let page = crate::ui::use_page_query();
        let devices = crate::codec::resource(
            move || (owner.get(), page.get(), live.devices_version.get()),
            |(owner, page, _)| list_live_devices(Some(owner), Some(page)),
        );
        LiveQuery { owner, devices }
    }
}

/// Device cards, a page at a time; admins pick whose.
#[component]
fn LiveDevicesView(admin: bool, query: LiveQuery) -> impl IntoView {
    let LiveQuery { owner, devices } = query;
    let (title, base) = if admin {
        ("Live", "/admin/live")
    } else {
        ("My devices", "/dashboard")
    };
    view! {
        <div class="page-head">
            <h1>{title}</h1>
        </div>
        {admin.then(|| view! { <div class="toolbar"><OwnerFilterForm owner/></div> })}
        <Transition fallback=|| view! { <p class="loading">"Loading devices…"</p> }>
            {move || Suspend::new(async move {
                match devices.await {
                    Ok(list) => {
                        let page = list.devices;
                        let empty = match (admin, page.total) {
                            (_, total) if total > 0 => "There is nothing on this page: go back to the first page.",
                            (true, _) => "No devices match this filter.",
                            (false, _) => "No devices are assigned to your account yet. Your utility will add them.",
                        };
                        let none = page.items.is_empty();
                        let owner = owner.get_untracked();
                        let href = format!("{base}?owner={owner}&page={{page}}");
                        let (pages, total, current) = (page.pages(), page.total, page.page);
                        view! {
                            <p class="empty" data-testid="no-devices" hidden=!none>{empty}</p>
                            {cards(page.items, list.seq, admin)}
                            {(pages > 1).then(|| view! { <Pager page=current pages total href/> })}
                        }
                            .into_any()
                    }
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn device_live(last_t: Option<i64>, interval_ms: Option<i64>, episode: bool) -> DeviceLive {
        let id = Uuid::nil();
        DeviceLive {
            device: Device {
                id,
                description: "Pump".into(),
                address: "Street 1".into(),
                max_power_kw: 4.5,
                owner: None,
                created_at: "2026-12-01T00:00:00Z".into(),
            },
            last: last_t.map(|t_ms| ReadingEvent {
                device_id: id,
                t_ms,
                energy_kwh: 10.0,
                power_kw: Some(1.0),
                interval_ms,
            }),
            episode: episode.then(|| EpisodeEvent {
                id,
                device_id: id,
                device: "Pump".into(),
                started_ms: 0,
                last_ms: 0,
                peaks: 1,
                max_power_kw: 9.0,
                limit_kw: 4.5,
                ended_ms: None,
            }),
        }
    }

    #[test]
    fn a_card_says_normal_peak_silent_or_no_data() {
        let ten_min = 600_000;
        assert_eq!(
            CardState::of(&device_live(None, None, false), 0),
            CardState::NoData
        );
        assert_eq!(
            CardState::of(&device_live(Some(0), Some(ten_min), false), 29 * 60_000),
            CardState::Normal
        );
        assert_eq!(
            CardState::of(&device_live(Some(0), Some(ten_min), true), 60_000),
            CardState::Peak
        );
        // Three intervals without a reading: silent, even during an episode.
        assert_eq!(
            CardState::of(&device_live(Some(0), Some(ten_min), true), 31 * 60_000),
            CardState::Silent
        );
    }

    #[test]
    fn only_newer_live_changes_win() {
        let base = device_live(Some(1_000), None, true);
        let mut overlay = Overlay {
            last: device_live(Some(500), None, false).last,
            episode: Some((5, None)),
        };
        // An older reading and an episode change the loaded state already has (seq 5 <= 7).
        let m = merged(&base, 7, Some(&overlay));
        assert_eq!(m.last.as_ref().map(|l| l.t_ms), Some(1_000));
        assert!(m.episode.is_some());
        // Newer ones replace it.
        overlay.last = device_live(Some(2_000), None, false).last;
        overlay.episode = Some((8, None));
        let m = merged(&base, 7, Some(&overlay));
        assert_eq!(m.last.as_ref().map(|l| l.t_ms), Some(2_000));
        assert!(m.episode.is_none());
    }
}
