//! `/connections`: the connections board (role `admin`). One row per open
//! connection: its subscriptions with their lag, its queue against its
//! bound (a bar), dropped, delivered per second (between two reads) and in
//! all, sortable by each column and filtered by text, with a
//! confirm-to-close button (`DELETE /api/connections/{id}`).
//!
//! The server renders the board (see [`crate::reads`]); it refreshes every
//! second through [`crate::poll`]. A refresh does not re-render the table:
//! rows are keyed by connection id (`<For>`), each row reads its own
//! connection through a memo that only notifies when that connection
//! changed, and each cell updates its own text. A new order moves rows;
//! a row is built only for a new connection. The table is a grid of `div`s
//! with ARIA table roles rather than a `<table>`: each row is laid out on
//! its own (`content-visibility: auto`), so the browser skips the rows off
//! screen when a refresh changes a thousand of them, where a table would
//! lay out every row again. `?sort=COLUMN&dir=asc|desc`
//! sets the first order (the dashboard links to `?sort=lag`).

use crate::board::{self, Column, Row, Snapshot, Sort};
use crate::components::awaited::Awaited;
use crate::components::format::{bytes, rate, thousands, timestamp};
use crate::reads::{self, Board, Loaded};
use crate::{client, poll};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use std::time::Duration;

const REFRESH: Duration = Duration::from_secs(1);
/// Subscriptions named in a row; the rest are counted ("+3 more").
const SUBSCRIPTIONS_SHOWN: usize = 3;

#[component]
pub fn Connections() -> impl IntoView {
    let board = Resource::new(|| (), |_| reads::board());
    poll::refresh(REFRESH, board);
    // Read once: the headings change the order after that.
    let query = use_query_map().get_untracked();
    let sort = RwSignal::new(Sort::from_query(
        query.get("sort").as_deref(),
        query.get("dir").as_deref(),
    ));
    view! {
        <h1>"Connections"</h1>
        <Awaited>
            <BoardView board sort/>
        </Awaited>
    }
}

/// Everything under the heading. Created inside [`Awaited`], so that the
/// memo reading the board registers it with the transition (the server
/// waits for it).
#[component]
fn BoardView(board: Resource<Loaded<Board>>, sort: RwSignal<Sort>) -> impl IntoView {
    // Each read against the one before (for the rates); a failed read keeps
    // the rows the page had, under the error.
    let snapshot = Memo::new(move |previous: Option<&Snapshot>| {
        board.with(|b| match b {
            Some(Loaded::Ready(b)) => Snapshot::of(b, previous),
            _ => previous.cloned().unwrap_or_default(),
        })
    });
    let state = move || {
        board.with(|b| match b {
            None | Some(Loaded::Withheld) => Err(None),
            Some(Loaded::Failed(e)) => Err(Some(e.clone())),
            Some(Loaded::Ready(_)) => Ok(()),
        })
    };
    // Closed from this page: gone from the table at once, before the next
    // read says so (ids are never reused).
    let closed = RwSignal::new(Vec::<u64>::new());
    let filter = RwSignal::new(String::new());
    // A closure, not a memo: `<For>` diffs the keys itself, and a memo of
    // a new type is more code in the WASM.
    let order = move || {
        let needle = filter.with(|f| f.trim().to_lowercase());
        let sort = sort.get();
        closed.with(|closed| {
            snapshot.with(|s| {
                sort.order(
                    s.rows
                        .iter()
                        .filter(|r| !closed.contains(&r.info.id) && board::matches(r, &needle)),
                )
            })
        })
    };
    // The figures above the table, in one line (one text node to update).
    let summary = move || {
        snapshot.with(|s| {
            if !s.loaded {
                return String::new();
            }
            let mut t = Totals::default();
            for r in &s.rows {
                if closed.with(|c| c.contains(&r.info.id)) {
                    continue;
                }
                t.connections += 1;
                t.subscriptions += r.info.subscriptions.len() as u64;
                t.lagging += u64::from(r.lag > 0);
                t.queued_bytes += r.info.queued_bytes;
                t.dropped += r.info.dropped;
                t.rate = match (t.rate, r.rate) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                };
            }
            t.line()
        })
    };
    let on_closed = move |id: u64| {
        closed.update(|c| c.push(id));
        board.refetch();
    };

    view! {
        {move || {
            let note = match state() {
                Err(None) => ("muted", "Loading…".to_owned()),
                Err(Some(e)) if e.starts_with("FORBIDDEN") => (
                    "error",
                    format!("{e} The connections board needs an API key with the admin role."),
                ),
                Err(Some(e)) => ("error", e),
                Ok(()) if order().is_empty() => (
                    "muted",
                    if filter.with(String::is_empty) { "No open connections." } else { "No connection matches the filter." }.to_owned(),
                ),
                Ok(()) => return None,
            };
            Some(view! { <p class=note.0 data-testid="board-state">{note.1}</p> })
        }}
        <p class="board-summary" data-testid="board-summary">{summary}</p>
        <section class="card">
            <div class="toolbar">
                <label for="board-filter">"Filter"</label>
                <input id="board-filter" type="search" class="wide" spellcheck="false"
                    placeholder="id, address, client id or topic"
                    prop:value=move || filter.get()
                    on:input=move |ev| filter.set(event_target_value(&ev))/>
                <span class="muted small">"Refreshed every second; click a heading to sort."</span>
            </div>
            <div class="table-scroll">
                <div class="board" role="table" aria-label="Connections" data-testid="board">
                    <div role="rowgroup">
                        <div class="board-row board-head" role="row">
                            {Column::ALL.into_iter().map(|column| view! { <SortHeading column sort/> }).collect_view()}
                            <div role="columnheader"><span class="visually-hidden">"Actions"</span></div>
                        </div>
                    </div>
                    <div role="rowgroup">
                        <For each=order key=|id| *id children=move |id| {
                            view! { <ConnectionRow id snapshot on_closed/> }
                        }/>
                    </div>
                </div>
            </div>
        </section>
    }
}

/// The figures above the table.
#[derive(Debug, Clone, Default, PartialEq)]
struct Totals {
    connections: u64,
    subscriptions: u64,
    lagging: u64,
    queued_bytes: u64,
    dropped: u64,
    rate: Option<f64>,
}

impl Totals {
    fn line(&self) -> String {
        format!(
            "{} connection(s) · {} subscription(s) · {} lagging · {} queued · {} dropped · {} delivered/s",
            thousands(self.connections),
            thousands(self.subscriptions),
            thousands(self.lagging),
            bytes(self.queued_bytes),
            thousands(self.dropped),
            self.rate.map(rate).unwrap_or_else(|| "–".into()),
        )
    }
}

#[component]
fn SortHeading(column: Column, sort: RwSignal<Sort>) -> impl IntoView {
    let aria = move || match sort.get() {
        s if s.column != column => "none",
        s if s.descending => "descending",
        _ => "ascending",
    };
    let arrow = move || match sort.get() {
        s if s.column != column => "",
        s if s.descending => " ▼",
        _ => " ▲",
    };
    view! {
        <div role="columnheader" class:num=column.numeric() aria-sort=aria>
            <button type="button" class="sort" data-sort=column.key()
                on:click=move |_| sort.update(|s| *s = s.clicked(column))>
                {column.label()}<span aria-hidden="true">{arrow}</span>
            </button>
        </div>
    }
}

/// One connection. Its memo notifies only when this connection changed;
/// each cell reads what it shows from it.
#[component]
fn ConnectionRow(
    id: u64,
    snapshot: Memo<Snapshot>,
    on_closed: impl Fn(u64) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let row = Memo::new(move |_| snapshot.with(|s| s.row(id).cloned()));
    // Every cell and attribute that shows the row goes through this: one
    // closure type, so one copy of its rendering code in the WASM.
    let text =
        move |f: fn(&Row) -> String| move || row.with(|r| r.as_ref().map(f).unwrap_or_default());
    // What the subscriptions cell shows (topics and their lag) changes far
    // less often than the row (its counters move with every event): a
    // second memo holds only that, so the cell is rebuilt only when it
    // changes. Of the row's own type, which costs the WASM no new code.
    let subscriptions = Memo::new(move |_| {
        row.with(|r| {
            r.as_ref().map(|r| {
                let mut info = r.info.clone();
                for s in &mut info.subscriptions {
                    (s.delivered, s.dropped) = (0, 0);
                }
                (info.delivered, info.dropped, info.queued, info.queued_bytes) = (0, 0, 0, 0);
                Row {
                    info,
                    lag: 0,
                    fill: 0.0,
                    rate: None,
                }
            })
        })
    });
    let confirming = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let close = move |_| {
        leptos::task::spawn_local(async move {
            match client::close_connection(id).await {
                Ok(_) => on_closed(id),
                // Gone already: what the user wanted.
                Err(e) if e.starts_with("NOT_FOUND") => on_closed(id),
                Err(e) => error.set(Some(e)),
            }
            confirming.set(false);
        });
    };
    view! {
        <div class="board-row" role="row" id=format!("conn-{id}") data-connection=id>
            <div role="cell" class="conn">
                <strong>"#" {id}</strong>
                // How it is connected (`websocket` or `sse`) and, in a
                // cluster, to which node: connection ids are per node.
                <div class="muted small transport">{text(|r| match &r.info.node {
                    Some(node) => format!("{} · {node}", r.info.transport),
                    None => r.info.transport.clone(),
                })}</div>
                <div class="muted small">{text(|r| r.info.remote_addr.clone().unwrap_or_else(|| "–".into()))}</div>
                // The time of day fits the column; the date is in the title.
                <div class="muted small" title=text(|r| format!("connected {} UTC", timestamp(&r.info.connected_at)))>
                    {text(|r| {
                        let at = timestamp(&r.info.connected_at);
                        format!("since {}", at.split_once(' ').map_or(at.as_str(), |(_, time)| time))
                    })}
                </div>
            </div>
            <div role="cell" class="clients">{text(|r| r.info.client_ids.join(", "))}</div>
            <div role="cell" class="subs">
                {move || subscriptions.with(|r| {
                    let subs: Vec<(String, bool, u64)> = r.as_ref().map_or_else(Vec::new, |r| {
                        r.info.subscriptions.iter().map(|s| (s.topic.clone(), s.pattern, s.lag)).collect()
                    });
                    let more = subs.len().saturating_sub(SUBSCRIPTIONS_SHOWN);
                    let all = subs.iter().map(|(t, _, lag)| format!("{t} (lag {lag})")).collect::<Vec<_>>().join("\n");
                    view! {
                        <span class="count">{subs.len()}</span>
                        {subs.iter().take(SUBSCRIPTIONS_SHOWN).map(|(topic, pattern, lag)| {
                            let title = format!("{topic} ({}, lag {lag})", if *pattern { "pattern" } else { "topic" });
                            view! {
                                <span class="sub">
                                    <span class="sub-chip" class:pattern=*pattern class:lagging={*lag > 0} title=title>
                                        {topic.clone()}
                                    </span>
                                    {(*lag > 0).then(|| view! { <span class="lag">{format!("lag {}", thousands(*lag))}</span> })}
                                </span>
                            }
                        }).collect_view()}
                        {(more > 0).then(|| view! { <span class="muted small" title=all>{format!("+{more} more")}</span> })}
                    }
                })}
            </div>
            <div role="cell" class="num" data-col="lag">{text(|r| thousands(r.lag))}</div>
            <div role="cell" class="queue" data-col="queue">
                <div class="meter" role="meter" aria-label="Queue fill" aria-valuemin="0" aria-valuemax="100"
                    aria-valuenow=text(|r| format!("{:.0}", r.fill * 100.0))>
                    <span class=text(|r| match r.fill {
                            f if f >= 0.9 => "meter-fill full",
                            f if f >= 0.5 => "meter-fill warn",
                            _ => "meter-fill",
                        }.to_owned())
                        style=text(|r| format!("width: {:.1}%", r.fill * 100.0))></span>
                </div>
                <div class="muted small">{text(|r| format!("{} / {} frames", thousands(r.info.queued), thousands(r.info.queue_limit)))}</div>
                <div class="muted small">{text(|r| format!("{} / {}", bytes(r.info.queued_bytes), bytes(r.info.queue_bytes_limit)))}</div>
            </div>
            <div role="cell" class="num" data-col="dropped">{text(|r| thousands(r.info.dropped))}</div>
            <div role="cell" class="num" data-col="rate">{text(|r| r.rate.map(rate).unwrap_or_else(|| "–".into()))}</div>
            <div role="cell" class="num" data-col="delivered">{text(|r| thousands(r.info.delivered))}</div>
            <div role="cell" class="actions">
                {move || if confirming.get() {
                    view! {
                        <span class="confirm" role="group" aria-label="Confirm close">
                            "Close? "
                            <button class="danger" aria-label=format!("Confirm closing connection {id}") on:click=close>"Yes, close"</button>
                            <button on:click=move |_| confirming.set(false)>"Cancel"</button>
                        </span>
                    }.into_any()
                } else {
                    view! {
                        <button aria-label=format!("Close connection {id}") title="Close this connection (the client gets closed_by_admin and close code 4010)"
                            on:click=move |_| confirming.set(true)>"Close"</button>
                    }.into_any()
                }}
                {move || error.get().map(|e| view! { <span class="error" role="alert">{e}</span> })}
            </div>
        </div>
    }
}
