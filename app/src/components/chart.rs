//! Charts as plain SVG drawn from signals: a line chart for time series and
//! a bar list for rankings. Axes are labelled with units; each chart has a
//! text alternative for screen readers.

use super::format::compact;
use leptos::prelude::*;

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
/// Intervals on the time axis (a five-minute window reads -5m … -1m, now).
const X_STEPS: u32 = 5;

/// One line of a chart: `(seconds before now, value)` points, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: &'static str,
    /// CSS class giving the line its colour (`s1`, `s2`, `s3`).
    pub class: &'static str,
    pub points: Vec<(f64, f64)>,
}

/// The top of a y axis with four gridline steps: four times the smallest
/// step of 1, 2 or 5 × 10^k that fits `x`, and at least 4, so every tick
/// is a whole, round number (0, 10, 20, 30, 40 rather than 12.5 or 0.25).
pub fn nice_ceiling(x: f64) -> f64 {
    let wanted = (x / 4.0).max(1.0);
    let magnitude = 10f64.powf(wanted.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * magnitude >= wanted {
            return 4.0 * step * magnitude;
        }
    }
    40.0 * magnitude
}

/// The SVG path of `points` in a plot `window` seconds wide and `max` high.
pub fn path(points: &[(f64, f64)], window: f64, max: f64) -> String {
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let mut d = String::new();
    for (i, (ago, v)) in points.iter().enumerate() {
        let x = LEFT + plot_w * (1.0 - (ago / window).clamp(0.0, 1.0));
        let y = TOP + plot_h * (1.0 - (v / max).clamp(0.0, 1.0));
        d.push_str(if i == 0 { "M" } else { " L" });
        d.push_str(&format!("{x:.1},{y:.1}"));
    }
    d
}

#[component]
pub fn LineChart(
    /// Heading of the chart.
    #[prop(into)]
    title: String,
    /// Unit of the y axis, e.g. "messages/s".
    #[prop(into)]
    unit: String,
    /// Width of the time axis in seconds.
    window: f64,
    #[prop(into)] series: Signal<Vec<Series>>,
    /// `data-testid` of the figure.
    #[prop(into)]
    testid: String,
) -> impl IntoView {
    let max = Memo::new(move |_| {
        let top = series.with(|all| {
            all.iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold(0.0f64, f64::max)
        });
        nice_ceiling(top)
    });
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let y_ticks = move || {
        let max = max.get();
        (0..=4)
            .map(|i| {
                let v = max * f64::from(i) / 4.0;
                let y = TOP + plot_h * (1.0 - f64::from(i) / 4.0);
                view! {
                    <line class="grid" x1=LEFT x2=W - RIGHT y1=y y2=y/>
                    <text class="tick" x=LEFT - 6.0 y=y + 4.0 text-anchor="end">{compact(v)}</text>
                }
            })
            .collect_view()
    };
    let x_ticks = (0..=X_STEPS)
        .map(|i| {
            let ago = window * f64::from(X_STEPS - i) / f64::from(X_STEPS);
            let x = LEFT + plot_w * f64::from(i) / f64::from(X_STEPS);
            let label = if ago == 0.0 {
                "now".to_owned()
            } else {
                format!("-{}", short_duration(ago))
            };
            view! { <text class="tick" x=x y=H - 8.0 text-anchor="middle">{label}</text> }
        })
        .collect_view();
    let lines = move || {
        let max = max.get();
        series
            .get()
            .into_iter()
            .map(|s| view! { <path class=format!("line {}", s.class) d=path(&s.points, window, max)/> })
            .collect_view()
    };
    let legend = move || {
        series
            .get()
            .into_iter()
            .map(|s| {
                let latest = s.points.last().map(|p| p.1).unwrap_or(0.0);
                view! {
                    <li>
                        <span class=format!("swatch {}", s.class) aria-hidden="true"></span>
                        {s.name} ": " <strong>{compact(latest)}</strong>
                    </li>
                }
            })
            .collect_view()
    };
    let summary = move || {
        let parts: Vec<String> = series
            .get()
            .iter()
            .map(|s| {
                format!(
                    "{} now {}",
                    s.name,
                    compact(s.points.last().map(|p| p.1).unwrap_or(0.0))
                )
            })
            .collect();
        parts.join(", ")
    };
    let title_for_svg = title.clone();
    view! {
        <figure class="chart" data-testid=testid>
            <figcaption>
                <span class="chart-title">{title}</span>
                <span class="unit">{unit}</span>
            </figcaption>
            <svg viewBox=format!("0 0 {W} {H}") role="img">
                <title>{move || format!("{title_for_svg}: {}", summary())}</title>
                {y_ticks}
                <line class="axis" x1=LEFT x2=LEFT y1=TOP y2=H - BOTTOM/>
                <line class="axis" x1=LEFT x2=W - RIGHT y1=H - BOTTOM y2=H - BOTTOM/>
                {x_ticks}
                <g class="lines">{lines}</g>
            </svg>
            <ul class="legend">{legend}</ul>
        </figure>
    }
}

fn short_duration(secs: f64) -> String {
    if secs >= 60.0 {
        let m = secs / 60.0;
        if m.fract() == 0.0 {
            format!("{m:.0}m")
        } else {
            format!("{m:.1}m")
        }
    } else {
        format!("{secs:.0}s")
    }
}

/// A ranking drawn as horizontal bars.
#[component]
pub fn BarList(
    #[prop(into)] title: String,
    #[prop(into)] unit: String,
    #[prop(into)] rows: Signal<Vec<(String, u64)>>,
    #[prop(into)] empty: String,
    #[prop(into)] testid: String,
) -> impl IntoView {
    view! {
        <figure class="chart bars" data-testid=testid>
            <figcaption>
                <span class="chart-title">{title}</span>
                <span class="unit">{unit}</span>
            </figcaption>
            {move || {
                let rows = rows.get();
                if rows.is_empty() {
                    return view! { <p class="muted">{empty.clone()}</p> }.into_any();
                }
                let top = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64;
                view! {
                    <ol class="bar-list">
                        {rows
                            .into_iter()
                            .map(|(name, n)| {
                                let width = format!("width: {:.1}%", 100.0 * n as f64 / top);
                                let href = format!("/topics/{name}");
                                view! {
                                    <li>
                                        <a class="bar-name" href=href>{name}</a>
                                        <span class="bar-track"><span class="bar" style=width></span></span>
                                        <span class="bar-value">{super::format::thousands(n)}</span>
                                    </li>
                                }
                            })
                            .collect_view()}
                    </ol>
                }
                .into_any()
            }}
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 4.0);
        assert_eq!(nice_ceiling(3.0), 4.0);
        assert_eq!(nice_ceiling(27.0), 40.0);
        assert_eq!(nice_ceiling(50.0), 80.0);
        assert_eq!(nice_ceiling(400.0), 400.0);
        assert_eq!(nice_ceiling(401.0), 800.0);
        assert_eq!(nice_ceiling(1_500.0), 2_000.0);
    }

    #[test]
    fn paths_map_time_and_value_to_the_plot() {
        let d = path(&[(60.0, 0.0), (0.0, 10.0)], 60.0, 10.0);
        assert_eq!(
            d,
            format!("M{LEFT:.1},{:.1} L{:.1},{TOP:.1}", H - BOTTOM, W - RIGHT)
        );
    }
}
