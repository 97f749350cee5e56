//! `/topics/{name}`: one topic's metadata, a publish form, the history
//! from the REST endpoint and a live subscription panel. The server renders
//! the metadata and the history (see [`crate::reads`]); both refresh every
//! two seconds, and the history at once after a publish from this page.

use crate::components::awaited::Awaited;
use crate::components::format::{clock, thousands, timestamp};
use crate::live::{self, EntryKind, Level, LiveView, Status};
use crate::reads::{self, Loaded};
use crate::wire::{message_id_problem, HistoryMessage, HistoryPage, PublishMessage};
use crate::{client, poll};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use std::time::Duration;

const REFRESH: Duration = Duration::from_secs(2);
/// The history's "Newest" field starts at this.
const HISTORY_LAST_N: u64 = 20;

#[component]
pub fn Topic() -> impl IntoView {
    let params = use_params_map();
    let name = Memo::new(move |_| params.read().get("name").unwrap_or_default());
    view! {
        {move || {
            let name = name.get();
            // Created here, with the panels, so that a publish can refresh
            // the history it is shown beside.
            let last_n = RwSignal::new(HISTORY_LAST_N.to_string());
            let history = Resource::new(
                || (),
                {
                    let name = name.clone();
                    move |_| reads::history(name.clone(), last_n.get_untracked().trim().parse().ok())
                },
            );
            poll::refresh(REFRESH, history);
            view! {
                <h1>"Topic " <code data-testid="topic-name">{name.clone()}</code></h1>
                <p><a href="/topics">"← All topics"</a></p>
                <Meta name=name.clone()/>
                <div class="two-col">
                    <Publish name=name.clone() on_published=move || history.refetch()/>
                    <History history last_n/>
                </div>
                <Live name=name/>
            }
        }}
    }
}

#[component]
fn Meta(name: String) -> impl IntoView {
    let detail = Resource::new(|| (), move |_| reads::topic(name.clone()));
    poll::refresh(REFRESH, detail);
    view! {
        <section class="card" aria-label="Metadata">
            <Awaited>
                {move || match detail.get() {
                    None | Some(Loaded::Withheld) => view! { <p class="muted">"Loading…"</p> }.into_any(),
                    Some(Loaded::Failed(e)) => view! { <p class="error" role="alert" data-testid="meta-error">{e}</p> }.into_any(),
                    Some(Loaded::Ready(d)) => view! {
                        <dl class="meta" data-testid="topic-meta">
                            <div><dt>"seq"</dt><dd data-testid="meta-seq">{d.seq}</dd></div>
                            <div><dt>"epoch"</dt><dd><code>{d.epoch}</code></dd></div>
                            <div><dt>"subscribers"</dt><dd data-testid="meta-subscribers">{thousands(d.subscribers)}</dd></div>
                            <div><dt>"messages"</dt><dd data-testid="meta-messages">{thousands(d.messages)}</dd></div>
                            <div><dt>"created (UTC)"</dt><dd><time datetime=d.created_at.clone()>{timestamp(&d.created_at)}</time></dd></div>
                        </dl>
                    }.into_any(),
                }}
            </Awaited>
        </section>
    }
}

/// Why `text` is not a JSON value, in words; `None` when it is.
pub fn json_problem(text: &str) -> Option<String> {
    if text.trim().is_empty() {
        return Some(
            "The payload is empty: write a JSON value, e.g. {\"hello\": \"world\"} or 42.".into(),
        );
    }
    serde_json::from_str::<serde_json::Value>(text)
        .err()
        .map(|e| format!("Invalid JSON: {e}."))
}

#[component]
fn Publish(
    name: String,
    /// Called after the server took a message.
    on_published: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let payload = RwSignal::new("{\n  \"hello\": \"world\"\n}".to_owned());
    let id = RwSignal::new(String::new());
    let result = RwSignal::new(None::<Result<String, String>>);
    let busy = RwSignal::new(false);
    let json_error = move || payload.with(|p| json_problem(p));
    let id_error = move || {
        id.with(|i| {
            if i.is_empty() {
                None
            } else {
                message_id_problem(i)
            }
        })
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if json_error().is_some() || id_error().is_some() {
            return;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&payload.get_untracked()) else {
            return;
        };
        let id = id.get_untracked();
        let message = PublishMessage {
            id: (!id.is_empty()).then_some(id),
            payload: value,
        };
        let name = name.clone();
        busy.set(true);
        leptos::task::spawn_local(async move {
            let published = client::publish(&name, &message).await;
            if published.is_ok() {
                on_published();
            }
            result.set(Some(
                published.map(|p| format!("Published as seq {} (id {}).", p.seq, p.id)),
            ));
            busy.set(false);
        });
    };
    view! {
        <section class="card" aria-labelledby="publish-title">
            <h2 id="publish-title">"Publish"</h2>
            <form class="stack" on:submit=submit novalidate>
                <label for="payload">"Payload (JSON)"</label>
                <textarea id="payload" rows="6" spellcheck="false"
                    aria-invalid=move || if json_error().is_some() { "true" } else { "false" }
                    aria-describedby="payload-error"
                    prop:value=move || payload.get()
                    on:input=move |ev| payload.set(event_target_value(&ev))></textarea>
                <p id="payload-error" class="error" role="alert" data-testid="payload-error">{json_error}</p>
                <label for="message-id">"Message id (optional)"</label>
                <input id="message-id" autocomplete="off" maxlength="128" placeholder="assigned by the server when empty"
                    aria-invalid=move || if id_error().is_some() { "true" } else { "false" }
                    prop:value=move || id.get()
                    on:input=move |ev| id.set(event_target_value(&ev))/>
                <p class="error" role="alert">{id_error}</p>
                <div>
                    <button type="submit" disabled=move || busy.get() || json_error().is_some() || id_error().is_some()>
                        "Publish"
                    </button>
                </div>
            </form>
            <p role="status" data-testid="publish-result" class=move || match result.get() {
                Some(Err(_)) => "error",
                _ => "ok",
            }>
                {move || result.get().map(|r| r.unwrap_or_else(|e| e))}
            </p>
        </section>
    }
}

/// The newest messages of the history, newest first. Rows are keyed by
/// `(epoch, seq)`, so a refresh adds the new ones and leaves the others
/// (and a selection in them) alone.
#[component]
fn History(history: Resource<Loaded<HistoryPage>>, last_n: RwSignal<String>) -> impl IntoView {
    let rows = move || {
        history.with(|page| match page {
            Some(Loaded::Ready(page)) => page
                .messages
                .iter()
                .rev()
                .map(|m| (page.epoch.clone(), m.clone()))
                .collect(),
            _ => Vec::new(),
        })
    };
    view! {
        <section class="card" aria-labelledby="history-title">
            <h2 id="history-title">"History"</h2>
            <form class="inline-form" on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                history.refetch();
            }>
                <label for="history-n">"Newest"</label>
                <input id="history-n" type="number" min="0" class="narrow"
                    prop:value=move || last_n.get()
                    on:input=move |ev| last_n.set(event_target_value(&ev))/>
                <button type="submit">"Reload"</button>
            </form>
            <div class="scroll" data-testid="history">
                <Awaited>
                    {move || history.with(|page| match page {
                        None | Some(Loaded::Withheld) => Some(view! { <p class="muted">"Loading…"</p> }.into_any()),
                        Some(Loaded::Failed(e)) => Some(view! { <p class="error" role="alert">{e.clone()}</p> }.into_any()),
                        Some(Loaded::Ready(p)) if p.messages.is_empty() => {
                            Some(view! { <p class="muted">"No messages in history."</p> }.into_any())
                        }
                        Some(Loaded::Ready(_)) => None,
                    })}
                    <For each=rows key=|(epoch, m): &(String, HistoryMessage)| (epoch.clone(), m.seq) children=|(_, m)| {
                        let payload = serde_json::to_string_pretty(&m.payload).unwrap_or_default();
                        view! { <MessageRow seq=m.seq id=m.id ts=m.ts payload=payload/> }
                    }/>
                </Awaited>
            </div>
        </section>
    }
}

#[component]
fn MessageRow(seq: u64, id: String, ts: String, payload: String) -> impl IntoView {
    view! {
        <article class="message" data-seq=seq>
            <header>
                <span class="seq">"#" {seq}</span>
                <time datetime=ts.clone()>{clock(&ts)}</time>
                <code class="id" title="message id">{id}</code>
            </header>
            <pre>{payload}</pre>
        </article>
    }
}

#[component]
fn Live(name: String) -> impl IntoView {
    let view_state = LiveView::new();
    let last_n = RwSignal::new("10".to_owned());
    on_cleanup(move || view_state.stop());
    let start = {
        let name = name.clone();
        move || {
            let n = last_n
                .get_untracked()
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0);
            view_state.paused.set(false);
            live::start(view_state, name.clone(), n);
        }
    };
    let running = move || {
        matches!(
            view_state.status.get(),
            Status::Connecting | Status::Live | Status::Reconnecting
        )
    };
    view! {
        <section class="card live" aria-labelledby="live-title">
            <h2 id="live-title">"Live"</h2>
            <form class="inline-form" on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                start();
            }>
                <label for="live-last-n">"Replay last"</label>
                <input id="live-last-n" type="number" min="0" class="narrow"
                    prop:value=move || last_n.get()
                    on:input=move |ev| last_n.set(event_target_value(&ev))/>
                <button type="submit" data-testid="subscribe">
                    {move || if running() { "Resubscribe" } else { "Subscribe" }}
                </button>
                <button type="button" disabled=move || !running() on:click=move |_| view_state.stop()>"Unsubscribe"</button>
                <button type="button" aria-pressed=move || if view_state.paused.get() { "true" } else { "false" }
                    on:click=move |_| view_state.paused.update(|p| *p = !*p)>
                    {move || if view_state.paused.get() { "Resume" } else { "Pause" }}
                </button>
                <button type="button" on:click=move |_| view_state.rows.set(Vec::new())>"Clear"</button>
            </form>
            <p class="live-status">
                <span class=move || format!("dot {:?}", view_state.status.get()).to_lowercase() aria-hidden="true"></span>
                <span data-testid="live-status">{move || view_state.status.get().label()}</span>
                " · " <span data-testid="live-received">{move || thousands(view_state.received.get())}</span> " received"
                {move || {
                    let held = view_state.held.get();
                    (held > 0).then(|| format!(" · paused, {held} held back"))
                }}
            </p>
            <div class="log" role="log" aria-live="polite" aria-relevant="additions" data-testid="live-log">
                <For each=move || view_state.rows.get() key=|e| e.key children=move |entry| {
                    match entry.kind {
                        EntryKind::Event { seq, id, ts, payload } => view! {
                            <MessageRow seq=seq id=id ts=ts payload=payload/>
                        }.into_any(),
                        EntryKind::Notice { level, text } => {
                            let class = match level {
                                Level::Info => "notice info",
                                Level::Good => "notice good",
                                Level::Warn => "notice warn",
                            };
                            view! { <p class=class data-testid="live-notice">{text}</p> }.into_any()
                        }
                    }
                }/>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::json_problem;

    #[test]
    fn json_problems_are_explained() {
        assert!(json_problem("{\"a\": 1}").is_none());
        assert!(json_problem("42").is_none());
        assert!(json_problem("").unwrap().contains("empty"));
        let p = json_problem("{\"a\": }").unwrap();
        assert!(p.starts_with("Invalid JSON") && p.contains("line 1"), "{p}");
    }
}
