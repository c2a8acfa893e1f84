//! The alert centre: a user's alerts newest first, a page at a time, with read state kept on
//! the server and shared by the user's tabs.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::format_kw;
use super::state::use_live;
use crate::auth::{use_auth, Gate, Role};
use crate::error::AppError;
use crate::ui::{ErrorBox, FormMessage, Pager};

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
    /// When the peak interval was, in the viewer's time zone.
    pub when: String,
}

/// A page of alerts, with the time zone their times are written in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertList {
    pub items: Vec<AlertRow>,
    pub total: i64,
    pub page: i64,
    pub time_zone: String,
}

impl AlertList {
    pub fn pages(&self) -> i64 {
        ((self.total + ALERTS_PER_PAGE - 1) / ALERTS_PER_PAGE).max(1)
    }
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
    let items = items
        .into_iter()
        .map(|a| AlertRow {
            when: crate::time::span(a.t1_ms, a.t2_ms, zone),
            ..a
        })
        .collect();
    Ok(AlertList {
        items,
        total,
        page,
        time_zone: zone.name().to_owned(),
    })
}

/// Marks one alert read (`id`), or all of them (no `id`); answers the new unread count.
#[server(prefix = "/api", endpoint = "mark_alerts_read")]
pub async fn mark_alerts_read(id: Option<String>) -> Result<i64, AppError> {
    let user = crate::auth::ssr::current_user().await?;
    let id = match id.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
        Some(id) => Some(crate::validate::uuid(id, "id")?),
        None => None,
    };
    let state = crate::state::state()?;
    let txn = crate::sql::begin_write(&state.db).await?;
    // The lock before the count: an alert committed after it is numbered after this event.
    super::ssr::lock_sequence(&txn).await?;
    let (ids, through_seq) = match id {
        Some(id) => {
            if !super::ssr::mark_read(&txn, &user, id).await? {
                return Err(AppError::NotFound);
            }
            (vec![id], None)
        }
        None => (
            Vec::new(),
            Some(super::ssr::mark_all_read(&txn, &user).await?),
        ),
    };
    let unread = super::ssr::unread_count(&txn, &user).await?;
    let event = super::AlertsRead {
        ids,
        through_seq,
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
    // The next page from this server counts again; other servers when the event arrives.
    state.live.unread().changed(Some(user.id), true);
    state.live.wake();
    Ok(unread)
}

/// The alert centre. Its list is made here, outside `Gate` (see `Gate`).
#[component]
pub fn AlertsPage() -> impl IntoView {
    let live = use_live();
    let query = use_query_map();
    let page = crate::ui::use_page_query();
    let unread_only = Memo::new(move |_| query.read().get("show").as_deref() == Some("unread"));
    let mark = ServerAction::<MarkAlertsRead>::new();
    let alerts = crate::codec::resource(
        move || {
            (
                page.get(),
                unread_only.get(),
                live.alerts_version.get(),
                mark.version().get(),
            )
        },
        |(page, unread, ..)| list_alerts(Some(page), Some(unread)),
    );
    view! {
        <Gate>
            <AlertCentre unread_only mark alerts/>
        </Gate>
    }
}

#[component]
fn AlertCentre(
    unread_only: Memo<bool>,
    mark: ServerAction<MarkAlertsRead>,
    alerts: Resource<Result<AlertList, AppError>, crate::codec::Json>,
) -> impl IntoView {
    let auth = use_auth();
    // The badge follows the marking through the socket (in this tab as in the others).
    let error = Signal::derive(move || mark.value().get().and_then(Result::err));
    let is_admin =
        move || matches!(auth.user.get(), Some(Ok(Some(ref u))) if u.role == Role::Admin);
    let tab_class = move |unread: bool| {
        if unread_only.get() == unread {
            "tab active"
        } else {
            "tab"
        }
    };
    // One form for every button: "Mark read" on a row submits its id, "Mark all read" none.
    view! {
        <div class="page-head">
            <h1>"Alerts"</h1>
            <button type="submit" form="alerts-form" data-testid="mark-all-read">
                "Mark all read"
            </button>
        </div>
        <div class="toolbar">
            <nav class="tabs" aria-label="Which alerts">
                <a href="/alerts" class=move || tab_class(false)>"All"</a>
                <a href="/alerts?show=unread" class=move || tab_class(true)>"Unread"</a>
            </nav>
        </div>
        <FormMessage error/>
        <ActionForm action=mark attr:id="alerts-form">
            <Transition fallback=|| view! { <p class="loading">"Loading alerts…"</p> }>
                {move || Suspend::new(async move {
                    match alerts.await {
                        Ok(list) => {
                            let empty = if list.total > 0 {
                                "There is nothing on this page: go back to the first page."
                            } else if unread_only.get_untracked() {
                                "No unread alerts."
                            } else {
                                "No alerts yet. When a device draws more than its maximum, it shows here."
                            };
                            let show = if unread_only.get_untracked() { "unread" } else { "all" };
                            let href = format!("/alerts?show={show}&page={{page}}");
                            let admin = is_admin();
                            let none = list.items.is_empty();
                            let (page, pages, total) = (list.page, list.pages(), list.total);
                            view! {
                                <p class="empty" data-testid="no-alerts" hidden=!none>{empty}</p>
                                <table class="list alerts" data-testid="alerts-table" hidden=none>
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
                                            .items
                                            .into_iter()
                                            .map(|alert| alert_line(alert, admin))
                                            .collect_view()}
                                    </tbody>
                                </table>
                                <Pager page pages total href/>
                            }
                                .into_any()
                        }
                        Err(error) => view! { <ErrorBox error/> }.into_any(),
                    }
                })}
            </Transition>
        </ActionForm>
    }
}

fn alert_line(alert: AlertRow, admin: bool) -> impl IntoView {
    let owner = alert.owner.unwrap_or_else(|| "Unassigned".into());
    let status = if alert.read {
        None
    } else {
        Some(view! {
            <button type="submit" name="id" value=alert.id.to_string() class="small">
                "Mark read"
            </button>
        })
    };
    view! {
        <tr class:unread=!alert.read data-testid="alert-row">
            <td data-label="When">{alert.when}</td>
            <td data-label="Device">{alert.device}</td>
            {admin.then(|| view! { <td data-label="Client">{owner}</td> })}
            <td class="num" data-label="Power"><strong>{format_kw(alert.power_kw)}</strong></td>
            <td class="num" data-label="Limit">{format_kw(alert.max_power_kw)}</td>
            <td data-label="Status">
                <span class="muted" hidden=!alert.read>"Read"</span>
                {status}
            </td>
        </tr>
    }
}
