//! The history pages: a day's hours and a month's days of one device, with the way to the
//! periods before and after, a date picker that works without script, and the CSV.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::chart::{note, Chart};
use super::{device_day, device_month, Coverage, History};
use crate::auth::{use_auth, Gate, Role};
use crate::error::AppError;
use crate::live::format_number;
use crate::live::state::use_live;
use crate::ui::ErrorBox;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Span {
    Day,
    Month,
}

impl Span {
    /// The query parameter and the path segment.
    fn key(self) -> &'static str {
        match self {
            Span::Day => "date",
            Span::Month => "month",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Span::Day => "day",
            Span::Month => "month",
        }
    }
}

#[component]
pub fn DayPage() -> impl IntoView {
    let history = history(Span::Day);
    view! {
        <Gate>
            <HistoryView span=Span::Day history/>
        </Gate>
    }
}

#[component]
pub fn MonthPage() -> impl IntoView {
    let history = history(Span::Month);
    view! {
        <Gate>
            <HistoryView span=Span::Month history/>
        </Gate>
    }
}

/// The figures the page shows. Made by the page, outside `Gate` (see `Gate`).
fn history(span: Span) -> Resource<Result<History, AppError>, crate::codec::Json> {
    let params = use_params_map();
    let query = use_query_map();
    let live = use_live();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let period = Memo::new(move |_| query.read().get(span.key()));
    // A new reading of this device reloads the figures: today's chart grows as they arrive.
    let latest = Memo::new(move |_| {
        let device = id.get().parse::<uuid::Uuid>().ok()?;
        live.overlays
            .with(|m| m.get(&device).and_then(|o| o.last.as_ref().map(|l| l.t_ms)))
    });
    crate::codec::resource(
        move || (id.get(), period.get(), latest.get()),
        move |(id, period, _)| async move {
            match span {
                Span::Day => device_day(id, period).await,
                Span::Month => device_month(id, period).await,
            }
        },
    )
}

#[component]
fn HistoryView(
    span: Span,
    history: Resource<Result<History, AppError>, crate::codec::Json>,
) -> impl IntoView {
    let auth = use_auth();
    let back = move || match auth.user.get() {
        Some(Ok(Some(user))) if user.role == Role::Admin => ("/admin/live", "← Live"),
        _ => ("/dashboard", "← My devices"),
    };
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading the figures…"</p> }>
            {move || Suspend::new(async move {
                match history.await {
                    Ok(h) => view! { <HistoryBody h span back=back()/> }.into_any(),
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn HistoryBody(h: History, span: Span, back: (&'static str, &'static str)) -> impl IntoView {
    let base = format!("/devices/{}", h.device_id);
    // The other view keeps to the same time: a day's month, or a past month's first day.
    let other = match span {
        Span::Day => format!(
            "{base}/month?month={}",
            h.period.get(..7).unwrap_or_default()
        ),
        Span::Month if h.current => format!("{base}/day"),
        Span::Month => format!("{base}/day?date={}-01", h.period),
    };
    let tab = |target: Span, label: &'static str| {
        let (class, href) = if target == span {
            (
                "tab active",
                format!("{base}/{}?{}={}", span.path(), span.key(), h.period),
            )
        } else {
            ("tab", other.clone())
        };
        view! { <a class=class href=href>{label}</a> }
    };
    let (previous, next, input_type) = match span {
        Span::Day => ("← Previous day", "Next day →", "date"),
        Span::Month => ("← Previous month", "Next month →", "month"),
    };
    let link = |period: &str| format!("{base}/{}?{}={period}", span.path(), span.key());
    let csv = format!("{base}/{}.csv?{}={}", span.path(), span.key(), h.period);
    let no_data = h
        .bars
        .iter()
        .all(|b| matches!(b.coverage, Coverage::Missing | Coverage::Future));
    let notice = if no_data {
        Some(view! {
            <p class="notice neutral" data-testid="no-data">
                {match span {
                    Span::Day => "No readings for this day.",
                    Span::Month => "No readings for this month.",
                }}
            </p>
        })
    } else {
        None
    };
    let partial = (!no_data && h.incomplete).then(|| {
        view! {
            <p class="notice warn" data-testid="partial-data">
                "Partial data: some periods have incomplete or no readings (shown hatched or pale). \
                 The total counts what was measured."
            </p>
        }
    });
    let x_label = match span {
        Span::Day => format!("Hour of the day ({})", h.time_zone),
        Span::Month => format!("Day of the month ({})", h.time_zone),
    };
    let rows = h
        .bars
        .iter()
        .map(|bar| {
            let when = match &bar.href {
                Some(href) => view! { <a href=href.clone()>{bar.title.clone()}</a> }.into_any(),
                None => view! { <span>{bar.title.clone()}</span> }.into_any(),
            };
            view! {
                <tr data-coverage=bar.coverage.name()>
                    <td>{when}</td>
                    <td class="num">{format_number(bar.kwh, 3)}</td>
                    <td>{note(bar)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="page-head">
            <h1>{h.device.clone()}</h1>
            <a href=back.0>{back.1}</a>
        </div>
        <div class="toolbar">
            <nav class="tabs" aria-label="Period">
                {tab(Span::Day, "Day")}
                {tab(Span::Month, "Month")}
            </nav>
            <form method="GET" class="history-nav" action=format!("{base}/{}", span.path())>
                <a href=link(&h.previous) class="button">{previous}</a>
                <label for="period" class="sr-only">"Period"</label>
                <input id="period" type=input_type name=span.key() value=h.period.clone()/>
                <button type="submit">"Show"</button>
                <a href=link(&h.next) class="button">{next}</a>
            </form>
        </div>
        <section class="card chart-card" data-current=h.current.then_some("true")>
            <div class="chart-head">
                <h2>{h.heading.clone()}</h2>
                <p class="total">
                    <span class="muted">"Total "</span>
                    <strong data-testid="total">{format!("{} kWh", format_number(h.total_kwh, 2))}</strong>
                </p>
                <a class="button small" href=csv download="">"Download CSV"</a>
            </div>
            {notice}
            {partial}
            <Chart bars=h.bars x_label/>
            <ul class="legend" aria-label="Legend">
                <li><span class="key full"></span>"Measured"</li>
                <li><span class="key partial"></span>"Partial data"</li>
                <li><span class="key missing"></span>"No data"</li>
                <li><span class="key peak"></span>"Held a peak"</li>
            </ul>
        </section>
        <details class="card figures">
            <summary>"The figures"</summary>
            <table class="list">
                <thead><tr><th>"When"</th><th class="num">"kWh"</th><th>"Note"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </details>
    }
}
