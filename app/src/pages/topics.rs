//! `/topics`: every topic with its counts, a filter by name or by pattern,
//! links to watch topics alike live (each dotted prefix, or the pattern
//! typed in the filter), a create form that checks the name before
//! sending, and delete with a confirmation. The server renders the list
//! (see [`crate::reads`]); it refreshes itself every two seconds.

use crate::components::awaited::Awaited;
use crate::components::format::{thousands, timestamp};
use crate::reads::{self, Loaded};
use crate::wire::pattern::{is_pattern, Pattern};
use crate::wire::{topic_name_problem, TopicSummary};
use crate::{client, poll};
use leptos::prelude::*;
use std::time::Duration;

const REFRESH: Duration = Duration::from_secs(2);

#[component]
pub fn Topics() -> impl IntoView {
    let topics = Resource::new(|| (), |_| reads::topics());
    poll::refresh(REFRESH, topics);
    let filter = RwSignal::new(String::new());
    let reload = move || topics.refetch();

    // A filter with `*` or `>` is a pattern (topic names have neither):
    // the list shows what a subscription to it would follow.
    // A closure, not a memo: parsing a pattern is cheap, and a memo of a
    // new type is more code in the WASM.
    let pattern = move || {
        filter.with(|f| {
            let f = f.trim();
            is_pattern(f).then(|| Pattern::parse(f))
        })
    };
    let shown = move || {
        let needle = filter.get().trim().to_lowercase();
        let pattern = pattern();
        topics.get().map(|loaded| {
            loaded.map(|list| {
                list.into_iter()
                    .filter(|t| match &pattern {
                        Some(Ok(p)) => p.matches(&t.name),
                        Some(Err(_)) => false,
                        None => needle.is_empty() || t.name.to_lowercase().contains(&needle),
                    })
                    .collect::<Vec<_>>()
            })
        })
    };
    let watch = move || match pattern() {
        Some(Ok(p)) => {
            let href = live_href(p.as_str());
            view! {
                <a class="watch" href=href data-testid="watch-pattern">
                    "Watch " <code>{p.as_str().to_owned()}</code> " live →"
                </a>
            }
            .into_any()
        }
        Some(Err(e)) => view! { <span class="error" role="alert">{e}</span> }.into_any(),
        None => ().into_any(),
    };

    view! {
        <h1>"Topics"</h1>
        <CreateTopic on_created=reload/>
        <section class="card">
            <div class="toolbar">
                <label for="topic-filter">"Filter by name or pattern"</label>
                <input id="topic-filter" type="search" placeholder="orders, orders.*, orders.>"
                    class="wide" spellcheck="false"
                    prop:value=move || filter.get()
                    on:input=move |ev| filter.set(event_target_value(&ev))/>
                {watch}
            </div>
            <div aria-live="polite">
                <Awaited>
                    {move || match shown() {
                        None | Some(Loaded::Withheld) => view! { <p class="muted">"Loading topics…"</p> }.into_any(),
                        Some(Loaded::Failed(e)) => view! { <p class="error" role="alert">"Cannot load topics: " {e}</p> }.into_any(),
                        Some(Loaded::Ready(list)) if list.is_empty() && filter.with(|f| f.is_empty()) => view! {
                            <p class="muted" data-testid="no-topics">"No topics yet: create the first one above."</p>
                        }.into_any(),
                        Some(Loaded::Ready(list)) if list.is_empty() => view! {
                            <p class="muted">"No topic matches the filter."</p>
                        }.into_any(),
                        Some(Loaded::Ready(list)) => view! { <TopicTable topics=list on_deleted=reload/> }.into_any(),
                    }}
                </Awaited>
            </div>
        </section>
    }
}

#[component]
fn CreateTopic(on_created: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let server_error = RwSignal::new(None::<String>);
    let created = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let problem = move || {
        let n = name.get();
        if n.is_empty() {
            None
        } else {
            topic_name_problem(&n)
        }
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let n = name.get_untracked();
        if let Some(p) = topic_name_problem(&n) {
            server_error.set(Some(p));
            return;
        }
        busy.set(true);
        server_error.set(None);
        created.set(None);
        leptos::task::spawn_local(async move {
            match client::create_topic(&n).await {
                Ok(_) => {
                    created.set(Some(n));
                    name.set(String::new());
                    on_created();
                }
                Err(e) => server_error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    view! {
        <section class="card">
            <h2>"Create a topic"</h2>
            <form class="inline-form" on:submit=submit novalidate>
                <label for="new-topic">"Name"</label>
                <input id="new-topic" name="name" autocomplete="off" maxlength="255"
                    placeholder="letters, digits, . _ -"
                    aria-describedby="new-topic-help new-topic-error"
                    aria-invalid=move || if problem().is_some() { "true" } else { "false" }
                    prop:value=move || name.get()
                    on:input=move |ev| {
                        name.set(event_target_value(&ev));
                        server_error.set(None);
                    }/>
                <button type="submit" disabled=move || busy.get() || problem().is_some() || name.with(|n| n.is_empty())>
                    "Create"
                </button>
            </form>
            <p id="new-topic-help" class="muted small">"1 to 255 characters from A-Z a-z 0-9 . _ -"</p>
            <p id="new-topic-error" class="error" role="alert" data-testid="create-error">
                {move || problem().or_else(|| server_error.get())}
            </p>
            {move || created.get().map(|n| {
                let href = format!("/topics/{n}");
                view! { <p class="ok" role="status">"Created " <a href=href>{n.clone()}</a> "."</p> }
            })}
        </section>
    }
}

/// The live page subscribed to `pattern`.
fn live_href(pattern: &str) -> String {
    format!("/live?topic={}", crate::auth::percent_encode(pattern))
}

/// `orders.>` and `orders.eu.>` for `orders.eu.paid`: a pattern for each
/// dotted prefix of `name`, shortest first (none for a name without a dot).
pub fn alike(name: &str) -> Vec<String> {
    name.match_indices('.')
        .map(|(at, _)| format!("{}>", &name[..=at]))
        .collect()
}

#[component]
fn TopicTable(
    topics: Vec<TopicSummary>,
    on_deleted: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <table class="topics" data-testid="topic-table">
            <thead>
                <tr>
                    <th scope="col">"Name"</th>
                    <th scope="col" class="num">"Subscribers"</th>
                    <th scope="col" class="num">"Messages"</th>
                    <th scope="col" class="when">"Created (UTC)"</th>
                    <th scope="col" class="alike" title="Every topic under one of this name's dotted prefixes, live">"Watch alike"</th>
                    <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                </tr>
            </thead>
            <tbody>
                {topics
                    .into_iter()
                    .map(|t| view! { <TopicRow topic=t on_deleted=on_deleted/> })
                    .collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn TopicRow(
    topic: TopicSummary,
    on_deleted: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let confirming = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let name = topic.name.clone();
    let href = format!("/topics/{}", topic.name);
    let delete = {
        let name = name.clone();
        move |_| {
            let name = name.clone();
            leptos::task::spawn_local(async move {
                match client::delete_topic(&name).await {
                    Ok(_) => on_deleted(),
                    Err(e) => error.set(Some(e)),
                }
                confirming.set(false);
            });
        }
    };
    let label = format!("Delete topic {name}");
    let confirm_label = format!("Confirm deleting topic {name}");
    view! {
        <tr data-topic=name.clone()>
            <td class="name"><a href=href>{topic.name.clone()}</a></td>
            <td class="num">{thousands(topic.subscribers)}</td>
            <td class="num">{thousands(topic.messages)}</td>
            <td class="when"><time datetime=topic.created_at.clone()>{timestamp(&topic.created_at)}</time></td>
            <td class="alike">
                {alike(&topic.name).into_iter().map(|p| {
                    let title = format!("Watch every topic under {} live", &p[..p.len() - 1]);
                    let href = live_href(&p);
                    view! { <a class="topic-chip" href=href title=title>{p}</a> }
                }).collect_view()}
            </td>
            <td class="actions">
                {move || if confirming.get() {
                    let delete = delete.clone();
                    view! {
                        <span class="confirm" role="group" aria-label="Confirm delete">
                            "Delete? "
                            <button class="danger" aria-label=confirm_label.clone() on:click=delete>"Yes, delete"</button>
                            <button on:click=move |_| confirming.set(false)>"Cancel"</button>
                        </span>
                    }.into_any()
                } else {
                    view! { <button aria-label=label.clone() on:click=move |_| confirming.set(true)>"Delete"</button> }.into_any()
                }}
                {move || error.get().map(|e| view! { <span class="error" role="alert">{e}</span> })}
            </td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::alike;

    #[test]
    fn each_dotted_prefix_is_a_pattern() {
        assert_eq!(alike("orders.eu.paid"), ["orders.>", "orders.eu.>"]);
        assert!(alike("orders").is_empty());
        assert_eq!(alike("a..b"), ["a.>", "a..>"]);
    }
}
