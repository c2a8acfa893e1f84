//! The alert centre: a user's alerts newest first, a page at a time, with read state kept on
//! the server and shared by the user's tabs.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::format_kw;
use super::state::use_live;
use crate::auth::{use_auth, Gate, Role};
use crate::error::AppError;
use crate::ui::{ErrorBox, FormMessage, Page, Pager};

/// Alerts per page.
pub const ALERTS_PER_PAGE: i64 = 25;

/// One alert as the alert centre lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRow {
    pub id: Uuid,
    pub device_id: Uuid,
    pub device: String,
    /// The client the device belonged to ("Name (username)"), for admins.
    pub owner: Option<String>,
    pub t1_ms: i64,
    pub t2_ms: i64,
    pub power_kw: f64,
    pub max_power_kw: f64,
    pub created_ms: i64,
    pub episode_id: Option<Uuid>,
    pub read: bool,
}

/// A page of alerts with the times written in the viewer's time zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertList {
    pub page: Page<AlertRow>,
    /// Per row: when the peak interval was, in the viewer's zone.
    pub intervals: Vec<String>,
    pub time_zone: String,
}

#[server(prefix = "/api", endpoint = "list_alerts")]
pub async fn list_alerts(page: Option<i64>, unread: Option<bool>) -> Result<AlertList, AppError> {
    let user = crate::auth::ssr::current_user().await?;
    let page = crate::validate::page(page)?;
    let db = crate::state::db()?;
    let (items, total) = super::ssr::list_alerts(
        &db,
        &user,
        super::ssr::AlertQuery {
            page,
            per_page: ALERTS_PER_PAGE,
            unread_only: unread.unwrap_or(false),
        },
    )
    .await?;
    let zone = crate::time::viewer_zone().await;
    let intervals = items
        .iter()
        .map(|a| crate::time::span(a.t1_ms, a.t2_ms, zone))
        .collect();
    Ok(AlertList {
        page: Page {
            items,
            total,
            page,
            per_page: ALERTS_PER_PAGE,
        },
        intervals,
        time_zone: zone.name().to_owned(),
    })
}

/// Marks one alert read; answers the new unread count.
#[server(prefix = "/api", endpoint = "mark_alert_read")]
pub async fn mark_alert_read(id: String) -> Result<i64, AppError> {
    let user = crate::auth::ssr::current_user().await?;
    let id = crate::validate::uuid(&id, "id")?;
    let state = crate::state::state()?;
    let txn = crate::sql::begin_write(&state.db).await?;
    // The lock before the count: an alert committed after it is numbered after this event.
    super::ssr::lock_sequence(&txn).await?;
    if !super::ssr::mark_read(&txn, &user, id).await? {
        return Err(AppError::NotFound);
    }
    let unread = super::ssr::unread_count(&txn, &user).await?;
    let event = super::AlertsRead {
        ids: vec![id],
        through_seq: None,
        unread,
    };
    super::ssr::append(
        &txn,
        &[super::ssr::Outgoing::private(
            user.id,
            super::LiveEvent::AlertsRead(event),
        )],
    )
    .await?;
    txn.commit().await?;
    state.live.wake();
    Ok(unread)
}

/// Marks every alert the user can see as read; answers the new unread count (0).
#[server(prefix = "/api", endpoint = "mark_all_alerts_read")]
pub async fn mark_all_alerts_read() -> Result<i64, AppError> {
    let user = crate::auth::ssr::current_user().await?;
    let state = crate::state::state()?;
    let txn = crate::sql::begin_write(&state.db).await?;
    super::ssr::lock_sequence(&txn).await?;
    let through = super::ssr::mark_all_read(&txn, &user).await?;
    let unread = super::ssr::unread_count(&txn, &user).await?;
    let event = super::AlertsRead {
        ids: Vec::new(),
        through_seq: Some(through),
        unread,
    };
    super::ssr::append(
        &txn,
        &[super::ssr::Outgoing::private(
            user.id,
            super::LiveEvent::AlertsRead(event),
        )],
    )
    .await?;
    txn.commit().await?;
    state.live.wake();
    Ok(unread)
}

#[component]
pub fn AlertsPage() -> impl IntoView {
    view! {
        <Gate>
            <AlertCentre/>
        </Gate>
    }
}

#[component]
fn AlertCentre() -> impl IntoView {
    let live = use_live();
    let auth = use_auth();
    let query = use_query_map();
    let page = Memo::new(move |_| {
        query
            .read()
            .get("page")
            .and_then(|p| p.parse::<i64>().ok())
            .unwrap_or(1)
    });
    let unread_only = Memo::new(move |_| query.read().get("show").as_deref() == Some("unread"));
    let mark = ServerAction::<MarkAlertRead>::new();
    let mark_all = ServerAction::<MarkAllAlertsRead>::new();
    let alerts = Resource::new(
        move || {
            (
                page.get(),
                unread_only.get(),
                live.alerts_version.get(),
                mark.version().get(),
                mark_all.version().get(),
            )
        },
        |(page, unread, ..)| list_alerts(Some(page), Some(unread)),
    );
    // The badge follows this tab's own marking at once, the other tabs through the socket.
    Effect::new(move |_| {
        if let Some(Ok(unread)) = mark.value().get().or_else(|| mark_all.value().get()) {
            live.unread.set(Some(unread));
        }
    });
    let error = Signal::derive(move || {
        mark.value()
            .get()
            .and_then(Result::err)
            .or_else(|| mark_all.value().get().and_then(Result::err))
    });
    let is_admin =
        move || matches!(auth.user.get(), Some(Ok(Some(ref u))) if u.role == Role::Admin);
    let tab = move |unread: bool, label: &'static str| {
        let href = if unread {
            "/alerts?show=unread"
        } else {
            "/alerts"
        };
        view! {
            <A href=href attr:class=move || if unread_only.get() == unread { "tab active" } else { "tab" }>
                {label}
            </A>
        }
    };
    view! {
        <div class="page-head">
            <h1>"Alerts"</h1>
            <ActionForm action=mark_all>
                <button type="submit" data-testid="mark-all-read">"Mark all read"</button>
            </ActionForm>
        </div>
        <div class="toolbar">
            <nav class="tabs" aria-label="Which alerts">
                {tab(false, "All")}
                {tab(true, "Unread")}
            </nav>
        </div>
        <FormMessage error/>
        <Transition fallback=|| view! { <p class="loading">"Loading alerts…"</p> }>
            {move || Suspend::new(async move {
                match alerts.await {
                    Ok(list) if list.page.items.is_empty() => {
                        let text = if list.page.total > 0 {
                            "There is nothing on this page: go back to the first page."
                        } else if unread_only.get_untracked() {
                            "No unread alerts."
                        } else {
                            "No alerts yet. When a device draws more than its maximum, it shows here."
                        };
                        view! { <p class="empty" data-testid="no-alerts">{text}</p> }.into_any()
                    }
                    Ok(list) => {
                        let (pages, total, current) =
                            (list.page.pages(), list.page.total, list.page.page);
                        let show = if unread_only.get_untracked() { "unread" } else { "all" };
                        let href = move |p: i64| format!("/alerts?show={show}&page={p}");
                        let admin = is_admin();
                        view! {
                            <table class="list alerts" data-testid="alerts-table">
                                <thead>
                                    <tr>
                                        <th>{format!("When ({})", list.time_zone)}</th>
                                        <th>"Device"</th>
                                        {admin.then(|| view! { <th>"Client"</th> })}
                                        <th class="num">"Power"</th>
                                        <th class="num">"Limit"</th>
                                        <th>"Status"</th>
                                    </tr>
                                </thead>
                                <tbody>
                                    {list
                                        .page
                                        .items
                                        .into_iter()
                                        .zip(list.intervals)
                                        .map(|(a, when)| view! { <AlertLine alert=a when admin mark/> })
                                        .collect_view()}
                                </tbody>
                            </table>
                            <Pager page=current pages total href/>
                        }
                            .into_any()
                    }
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn AlertLine(
    alert: AlertRow,
    when: String,
    admin: bool,
    mark: ServerAction<MarkAlertRead>,
) -> impl IntoView {
    let id = alert.id.to_string();
    let owner = alert.owner.unwrap_or_else(|| "Unassigned".into());
    view! {
        <tr class:unread=!alert.read data-testid="alert-row">
            <td data-label="When">{when}</td>
            <td data-label="Device">{alert.device}</td>
            {admin.then(|| view! { <td data-label="Client">{owner}</td> })}
            <td class="num" data-label="Power"><strong>{format_kw(alert.power_kw)}</strong></td>
            <td class="num" data-label="Limit">{format_kw(alert.max_power_kw)}</td>
            <td data-label="Status">
                {if alert.read {
                    view! { <span class="muted">"Read"</span> }.into_any()
                } else {
                    view! {
                        <ActionForm action=mark attr:class="inline">
                            <input type="hidden" name="id" value=id/>
                            <button type="submit" class="small">"Mark read"</button>
                        </ActionForm>
                    }
                        .into_any()
                }}
            </td>
        </tr>
    }
}
