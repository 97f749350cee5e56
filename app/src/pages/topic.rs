//! `/topics/{name}`: one topic's metadata, who is subscribed (presence), a
//! publish form, the history from the REST endpoint and a live
//! subscription panel. The server renders the metadata, the presence list
//! and the history (see [`crate::reads`]); metadata and history refresh
//! every two seconds, and the history at once after a publish from this
//! page; presence follows joins and leaves as they happen
//! ([`crate::presence`]).

use crate::components::awaited::Awaited;
use crate::components::format::{thousands, timestamp};
use crate::components::live_panel::LivePanel;
use crate::components::message::MessageRow;
use crate::presence::{self, PresenceView};
use crate::reads::{self, Loaded};
use crate::wire::{
    message_id_problem, HistoryMessage, HistoryPage, PresenceClient, PublishMessage,
};
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
                <Presence name=name.clone()/>
                <div class="two-col">
                    <Publish name=name.clone() on_published=move || history.refetch()/>
                    <History history last_n/>
                </div>
                <LivePanel topic=name/>
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

/// Who is subscribed to the topic by name, oldest first. The server renders
/// the list; in the browser [`presence::watch`] keeps it current.
#[component]
fn Presence(name: String) -> impl IntoView {
    let shown = Resource::new(|| (), {
        let name = name.clone();
        move |_| reads::presence(name.clone())
    });
    // Only a withheld list is fetched over REST: the watch does the rest.
    poll::fill_withheld(shown);
    let watch = PresenceView::new();
    // Effects run in the browser only, after hydration: the watch starts
    // from there, and stops with the page.
    Effect::new(move || {
        let name = name.clone();
        untrack(move || presence::watch(watch, shown, name));
    });
    on_cleanup(move || watch.stop());
    let status = move || {
        watch.status.get().map(|text| {
            let class = match text.as_str() {
                presence::LIVE => "dot live",
                presence::RECONNECTING => "dot reconnecting",
                _ => "dot ended",
            };
            view! {
                <span class="watch-status small">
                    <span class=class aria-hidden="true"></span>
                    <span data-testid="presence-status">{text}</span>
                </span>
            }
        })
    };
    view! {
        <section class="card" aria-labelledby="presence-title">
            <div class="card-head">
                <h2 id="presence-title">"Presence"</h2>
                {status}
            </div>
            <p class="muted small">"Subscriptions to this topic by name, oldest first; pattern subscriptions are not presence."</p>
            <Awaited>
                {move || {
                    let me = watch.me.get();
                    match shown.get() {
                        Some(Loaded::Ready(p)) if !p.clients.is_empty() => {
                            presence_table(p.clients, me).into_any()
                        }
                        // One paragraph for the other states: fewer view
                        // types in the WASM.
                        other => {
                            let (class, text) = match other {
                                Some(Loaded::Failed(e)) => ("error", e),
                                Some(Loaded::Ready(_)) => ("muted", "Nobody is subscribed.".to_owned()),
                                _ => ("muted", "Loading…".to_owned()),
                            };
                            view! { <p class=class data-testid="presence-note">{text}</p> }.into_any()
                        }
                    }
                }}
            </Awaited>
        </section>
    }
}

/// The list as a table, built anew when it changes (joins and leaves are
/// rare next to a table's cost in the WASM when keyed). `me` marks the
/// page's own watch.
fn presence_table(clients: Vec<PresenceClient>, me: Option<String>) -> impl IntoView {
    let count = clients.len() as u64;
    let rows = clients
        .into_iter()
        .map(|c| {
            let mine = me.is_some() && c.client_id == me;
            let client = match c.client_id {
                Some(id) => view! { <code>{id}</code> }.into_any(),
                None => view! { <span class="muted">"anonymous"</span> }.into_any(),
            };
            let href = format!("/connections?sort=id#conn-{}", c.connection_id);
            view! {
                <tr data-connection=c.connection_id>
                    <td class="name">
                        {client}
                        {mine.then(|| view! {
                            " " <span class="badge" title="This page's own presence watch">"this page"</span>
                        })}
                    </td>
                    <td class="num"><a href=href>{c.connection_id}</a></td>
                    <td class="when"><time datetime=c.joined_at.clone()>{timestamp(&c.joined_at)}</time></td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p class="small"><strong data-testid="presence-count">{thousands(count)}</strong> " subscribed"</p>
        <div class="scroll short">
            <table class="topics" data-testid="presence">
                <thead>
                    <tr>
                        <th scope="col">"Client"</th>
                        <th scope="col" class="num">"Connection"</th>
                        <th scope="col" class="when">"Joined (UTC)"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
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
