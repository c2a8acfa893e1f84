//! The consumption bar chart: bars and gridlines in SVG (stretched to the width of the page),
//! axis labels in HTML so they stay legible at any width. Every bar carries a `<title>` (hover
//! text without script); after hydration the hovered or focused bar is also described under the
//! chart.

use leptos::prelude::*;

use super::{Bar, Coverage};
use crate::live::format_number;

/// Height of the plot in SVG units (its width is one unit per bar).
const PLOT_HEIGHT: f64 = 100.0;

/// A "nice" axis top and step for values up to `max`: 1, 2, 2.5 or 5 times a power of ten.
pub fn axis(max: f64) -> (f64, f64) {
    if !max.is_finite() || max <= 0.0 {
        return (1.0, 0.25);
    }
    let raw = max / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

/// What is special about a bar: "partial data", "no data", "not yet", "peak" (or nothing).
pub fn note(bar: &Bar) -> String {
    let coverage = match bar.coverage {
        Coverage::Full => None,
        Coverage::Partial => Some("partial data"),
        Coverage::Missing => Some("no data"),
        Coverage::Future => Some("not yet"),
    };
    coverage
        .into_iter()
        .chain(bar.peak.then_some("peak"))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The text of a bar, for its tooltip and the description under the chart.
pub fn describe(bar: &Bar) -> String {
    let mut text = match bar.coverage {
        Coverage::Missing | Coverage::Future => bar.title.clone(),
        _ => format!("{} · {} kWh", bar.title, format_number(bar.kwh, 3)),
    };
    let note = note(bar);
    if !note.is_empty() {
        text.push_str(" · ");
        text.push_str(&note);
    }
    text
}

#[component]
pub fn Chart(bars: Vec<Bar>, x_label: String) -> impl IntoView {
    let n = bars.len().max(1);
    let top = bars.iter().map(|b| b.kwh).fold(0.0, f64::max);
    let (axis_top, step) = axis(top);
    let ticks: Vec<f64> = (0..)
        .map(|i| i as f64 * step)
        .take_while(|v| *v <= axis_top + step / 2.0)
        .collect();
    let hovered = RwSignal::new(None::<usize>);
    let navigate = leptos_router::hooks::use_navigate();
    let descriptions: Vec<String> = bars.iter().map(describe).collect();
    let detail = {
        let descriptions = descriptions.clone();
        move || {
            hovered
                .get()
                .and_then(|i| descriptions.get(i).cloned())
                .unwrap_or_else(|| "Point at a bar for its figures.".into())
        }
    };
    let view_box = format!("0 0 {n} {PLOT_HEIGHT}");
    let gridlines = ticks
        .iter()
        .map(|v| {
            let y = PLOT_HEIGHT - v / axis_top * PLOT_HEIGHT;
            view! { <line class="grid" x1="0" x2=n y1=y y2=y></line> }
        })
        .collect_view();
    let y_labels = ticks
        .iter()
        .map(|v| {
            let bottom = format!("{:.2}%", v / axis_top * 100.0);
            view! { <span style:bottom=bottom>{format_number(*v, 2)}</span> }
        })
        .collect_view();
    let columns = format!("repeat({n}, minmax(0, 1fr))");
    let x_labels = bars
        .iter()
        .map(|b| view! { <span>{b.label.clone()}</span> })
        .collect_view();
    let shapes = bars
        .into_iter()
        .zip(descriptions)
        .enumerate()
        .map(|(i, (bar, description))| {
            let x = i as f64 + 0.15;
            let height = match bar.coverage {
                Coverage::Missing => PLOT_HEIGHT,
                Coverage::Future => 0.0,
                _ => (bar.kwh / axis_top * PLOT_HEIGHT).clamp(0.0, PLOT_HEIGHT),
            };
            let y = PLOT_HEIGHT - height;
            let peak = bar.peak.then(
                || view! { <rect class="peak-mark" x=x y="0" width="0.7" height="3"></rect> },
            );
            let navigate = navigate.clone();
            let href = bar.href.clone();
            let open = move |_| {
                if let Some(href) = &href {
                    navigate(href, Default::default());
                }
            };
            view! {
                <g
                    class="bar"
                    data-coverage=bar.coverage.name()
                    data-peak=bar.peak.then_some("true")
                    data-link=bar.href.is_some().then_some("true")
                    tabindex="0"
                    on:mouseenter=move |_| hovered.set(Some(i))
                    on:focus=move |_| hovered.set(Some(i))
                    on:click=open
                >
                    <title>{description}</title>
                    <rect class="hit" x=i y="0" width="1" height=PLOT_HEIGHT></rect>
                    <rect class="value" x=x y=y width="0.7" height=height></rect>
                    {peak}
                </g>
            }
        })
        .collect_view();
    view! {
        <figure class="chart" data-testid="chart">
            <div class="chart-y" aria-hidden="true">
                <span class="unit">"kWh"</span>
                {y_labels}
            </div>
            <svg
                class="chart-plot"
                viewBox=view_box
                preserveAspectRatio="none"
                role="img"
                aria-label="Consumption per bar, in kWh"
                on:mouseleave=move |_| hovered.set(None)
            >
                {gridlines}
                {shapes}
            </svg>
            <div class="chart-x" style:grid-template-columns=columns aria-hidden="true">{x_labels}</div>
            <figcaption class="chart-caption">
                <span class="muted">{x_label}</span>
                <span class="chart-detail" aria-live="polite">{detail}</span>
            </figcaption>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_a_round_number_above_the_data() {
        assert_eq!(axis(0.0), (1.0, 0.25));
        assert_eq!(axis(3.7), (4.0, 1.0));
        let (top, step) = axis(0.42);
        assert!(
            (top - 0.6).abs() < 1e-9 && (step - 0.2).abs() < 1e-9,
            "{top} {step}"
        );
        let (top, step) = axis(173.0);
        assert_eq!((top, step), (200.0, 50.0));
        let (top, step) = axis(9.0);
        assert_eq!((top, step), (10.0, 2.5));
    }
}
