//! `/`: live cards and charts of the server's counters.
//!
//! The server renders the page with the counters and its per-second history
//! (the last five minutes), so the charts are full at once (see
//! [`crate::reads`]); then every second the browser appends the newest
//! samples and refreshes the cards. Below them, the connections that lag
//! most (top five, from the connections board, every two seconds), each
//! linking to the board.

use crate::components::awaited::Awaited;
use crate::components::chart::{BarList, LineChart, Series};
use crate::components::format::{bytes, rate, thousands, uptime};
use crate::poll;
use crate::reads::{self, Loaded};
use crate::wire::{ConnectionInfo, StatsSample, StatsTotals};
use leptos::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

const REFRESH: Duration = Duration::from_secs(1);
/// Samples kept on the page (five minutes at one a second).
const KEEP: usize = 300;
/// Samples a refresh asks for: the newest few, enough to bridge a late
/// timer; [`merge`] keeps only those the page does not have.
const TAIL: usize = 5;
/// The busiest-topics ranking sums this many recent samples.
const BUSIEST_WINDOW: usize = 60;
/// Connections in the laggiest list, and how often it is read: the read
/// is the whole board, so not every second.
const LAGGIEST: usize = 5;
const LAGGIEST_REFRESH: Duration = Duration::from_secs(2);

/// Per-second rates between consecutive samples: `(seconds before the
/// newest sample, rate)` for the counter `pick`.
pub fn rates(samples: &[StatsSample], pick: fn(&StatsSample) -> u64) -> Vec<(f64, f64)> {
    let Some(newest) = samples.last().map(|s| s.t) else {
        return Vec::new();
    };
    samples
        .windows(2)
        .map(|w| {
            let dt = (w[1].t.saturating_sub(w[0].t)) as f64 / 1000.0;
            let per_sec = if dt > 0.0 {
                pick(&w[1]).saturating_sub(pick(&w[0])) as f64 / dt
            } else {
                0.0
            };
            ((newest - w[1].t) as f64 / 1000.0, per_sec)
        })
        .collect()
}

/// Gauge values: `(seconds before the newest sample, value)`.
pub fn gauge(samples: &[StatsSample], pick: fn(&StatsSample) -> u64) -> Vec<(f64, f64)> {
    let Some(newest) = samples.last().map(|s| s.t) else {
        return Vec::new();
    };
    samples
        .iter()
        .map(|s| ((newest - s.t) as f64 / 1000.0, pick(s) as f64))
        .collect()
}

/// Topics by messages over the newest `window` samples, busiest first.
pub fn busiest(samples: &[StatsSample], window: usize) -> Vec<(String, u64)> {
    let mut sums: HashMap<&str, u64> = HashMap::new();
    for sample in samples.iter().rev().take(window) {
        for t in &sample.busiest {
            *sums.entry(t.name.as_str()).or_default() += t.messages;
        }
    }
    let mut ranked: Vec<(String, u64)> = sums.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(8);
    ranked
}

/// Appends the samples newer than what `into` holds, keeping the newest `KEEP`.
fn merge(into: &mut Vec<StatsSample>, fresh: Vec<StatsSample>) {
    let last = into.last().map(|s| s.t).unwrap_or(0);
    into.extend(fresh.into_iter().filter(|s| s.t > last));
    let excess = into.len().saturating_sub(KEEP);
    into.drain(..excess);
}

#[component]
pub fn Dashboard() -> impl IntoView {
    // A read takes the whole history while the page has no samples (on the
    // server; in the browser after the server withheld them or a read
    // failed), then only the newest few.
    let has_samples = StoredValue::new(false);
    let snapshot = Resource::new(
        || (),
        move |_| reads::dashboard(has_samples.get_value().then_some(TAIL)),
    );
    // Effects run in the browser only: after hydration with what the server
    // rendered, and after each read.
    Effect::new(move || {
        if snapshot.with(|s| matches!(s, Some(Loaded::Ready(_)))) {
            has_samples.set_value(true);
        }
    });
    poll::refresh(REFRESH, snapshot);
    let laggiest = Resource::new(|| (), |_| reads::laggiest(LAGGIEST));
    poll::refresh(LAGGIEST_REFRESH, laggiest);
    view! {
        <h1>"Dashboard"</h1>
        <Awaited>
            <Panels snapshot/>
        </Awaited>
        <section class="card" aria-labelledby="laggiest-title" data-testid="laggiest">
            <div class="card-head">
                <h2 id="laggiest-title">"Laggiest connections"</h2>
                <a href="/connections?sort=lag">"Connections board →"</a>
            </div>
            <Awaited>
                {move || laggiest.get().map(|l| match l {
                    Loaded::Ready(board) if !board.connections.is_empty() => {
                        view! { <Laggiest top=board.connections/> }.into_any()
                    }
                    // One paragraph for every other state: fewer view types
                    // in the WASM.
                    other => {
                        let (class, text) = match other {
                            Loaded::Failed(e) if e.starts_with("FORBIDDEN") => {
                                ("muted", "The connections board needs an API key with the admin role.".to_owned())
                            }
                            Loaded::Failed(e) => ("error", e),
                            Loaded::Withheld => ("muted", "Loading…".to_owned()),
                            Loaded::Ready(_) => (
                                "muted",
                                "No connection lags behind: every subscriber has been written all it follows.".to_owned(),
                            ),
                        };
                        view! { <p class=class data-testid="laggiest-note">{text}</p> }.into_any()
                    }
                })}
            </Awaited>
        </section>
    }
}

/// The laggiest connections, laggiest first, each linking to its row on
/// the board.
#[component]
fn Laggiest(top: Vec<ConnectionInfo>) -> impl IntoView {
    view! {
        <table class="topics">
            <thead>
                <tr>
                    <th scope="col">"Connection"</th>
                    <th scope="col">"Client ids"</th>
                    <th scope="col" class="num">"Lag"</th>
                    <th scope="col" class="num">"Queued"</th>
                    <th scope="col" class="num">"Dropped"</th>
                </tr>
            </thead>
            <tbody>
                {top.into_iter().map(|c| {
                    let href = format!("/connections?sort=lag#conn-{}", c.id);
                    let lag = crate::board::lag(&c);
                    let fill = (crate::board::fill(&c) * 100.0).round();
                    view! {
                        <tr data-connection=c.id>
                            <td><a href=href>"#" {c.id}</a> " " <span class="muted small">{c.remote_addr.unwrap_or_default()}</span></td>
                            <td>{c.client_ids.join(", ")}</td>
                            <td class="num">{thousands(lag)}</td>
                            <td class="num">{format!("{} ({fill}% full)", bytes(c.queued_bytes))}</td>
                            <td class="num">{thousands(c.dropped)}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// The cards and charts. Created inside [`Awaited`], so that the memos
/// below, which read the snapshot, register it with its transition: the
/// server then waits for it before rendering them.
#[component]
fn Panels(snapshot: Resource<Loaded<reads::Dashboard>>) -> impl IntoView {
    // Both keep what the page had when a refresh fails: the error shows
    // above numbers and charts that stay.
    let samples = Memo::new(move |held: Option<&Vec<StatsSample>>| {
        let mut all = held.cloned().unwrap_or_default();
        snapshot.with(|s| {
            if let Some(Loaded::Ready(d)) = s {
                merge(&mut all, d.samples.clone());
            }
        });
        all
    });
    let stats = Memo::new(move |held: Option<&Option<(u64, StatsTotals)>>| {
        snapshot.with(|s| match s {
            Some(Loaded::Ready(d)) => Some((d.uptime_sec, d.totals.clone())),
            _ => held.cloned().flatten(),
        })
    });
    let error = move || {
        snapshot.with(|s| match s {
            Some(Loaded::Failed(e)) => Some(e.clone()),
            _ => None,
        })
    };

    let window = KEEP as f64;
    let throughput = Signal::derive(move || {
        samples.with(|s| {
            vec![
                Series {
                    name: "published",
                    class: "s1",
                    points: rates(s, |x| x.published),
                },
                Series {
                    name: "delivered",
                    class: "s2",
                    points: rates(s, |x| x.delivered),
                },
                Series {
                    name: "dropped",
                    class: "s3",
                    points: rates(s, |x| x.dropped),
                },
            ]
        })
    });
    let population = Signal::derive(move || {
        samples.with(|s| {
            vec![
                Series {
                    name: "connections",
                    class: "s1",
                    points: gauge(s, |x| x.connections),
                },
                Series {
                    name: "subscribers",
                    class: "s2",
                    points: gauge(s, |x| x.subscribers),
                },
            ]
        })
    });
    let ranking = Signal::derive(move || samples.with(|s| busiest(s, BUSIEST_WINDOW)));
    let per_sec = move |pick: fn(&StatsSample) -> u64| {
        samples.with(|s| rates(s, pick).last().map(|p| p.1).unwrap_or(0.0))
    };

    let card = move |label: &'static str,
                     testid: &'static str,
                     value: Signal<String>,
                     sub: Signal<String>| {
        view! {
            <div class="stat-card" data-testid=testid>
                <div class="stat-label">{label}</div>
                <div class="stat-value">{value}</div>
                <div class="stat-sub muted">{sub}</div>
            </div>
        }
    };
    let total = move |pick: fn(&StatsTotals) -> u64| {
        Signal::derive(move || {
            stats.with(|s| {
                s.as_ref()
                    .map(|(_, totals)| thousands(pick(totals)))
                    .unwrap_or_else(|| "–".into())
            })
        })
    };
    let none = || Signal::derive(String::new);

    view! {
        {move || error().map(|e| view! { <p class="error" role="alert">"Cannot load stats: " {e}</p> })}
        <section class="cards" aria-label="Totals">
            {card("Uptime", "card-uptime",
                Signal::derive(move || stats.with(|s| s.as_ref().map(|(up, _)| uptime(*up)).unwrap_or_else(|| "–".into()))),
                none())}
            {card("Topics", "card-topics", total(|t| t.topics), none())}
            {card("Connections", "card-connections", total(|t| t.connections), none())}
            {card("Subscribers", "card-subscribers", total(|t| t.subscribers), none())}
            {card("Published", "card-published", total(|t| t.published),
                Signal::derive(move || format!("{}/s", rate(per_sec(|x| x.published)))))}
            {card("Delivered", "card-delivered", total(|t| t.delivered),
                Signal::derive(move || format!("{}/s", rate(per_sec(|x| x.delivered)))))}
            {card("Dropped", "card-dropped", total(|t| t.dropped),
                Signal::derive(move || format!("{}/s", rate(per_sec(|x| x.dropped)))))}
        </section>
        <section class="charts" aria-label="Charts">
            <LineChart title="Throughput" unit="messages/s" window=window series=throughput testid="chart-throughput"/>
            <LineChart title="Connections and subscribers" unit="count" window=window series=population testid="chart-population"/>
            <BarList title="Busiest topics" unit="messages, last minute" rows=ranking
                empty="No messages in the last minute." testid="chart-busiest"/>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: u64, published: u64) -> StatsSample {
        StatsSample {
            t,
            published,
            ..Default::default()
        }
    }

    #[test]
    fn rates_are_per_second_differences() {
        let s = [sample(1000, 0), sample(2000, 10), sample(4000, 30)];
        assert_eq!(rates(&s, |x| x.published), vec![(2.0, 10.0), (0.0, 10.0)]);
        assert!(rates(&s[..1], |x| x.published).is_empty());
    }

    #[test]
    fn merge_appends_only_newer_samples_and_trims() {
        let mut all = vec![sample(1, 0), sample(2, 0)];
        merge(&mut all, vec![sample(2, 0), sample(3, 0)]);
        assert_eq!(all.iter().map(|s| s.t).collect::<Vec<_>>(), [1, 2, 3]);
        merge(&mut all, (4..400).map(|t| sample(t, 0)).collect());
        assert_eq!(all.len(), KEEP);
        assert_eq!(all.last().unwrap().t, 399);
    }
}
