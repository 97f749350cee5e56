//! [`LivePanel`]: the live subscription's controls and log, on a topic's
//! page (its topic) and on the live page (any topic or pattern typed in).
//! The session itself is [`crate::live`].

use super::format::thousands;
use super::message::MessageRow;
use crate::live::{self, EntryKind, Level, LiveView, Request, Status};
use crate::wire::pattern::{is_pattern, Pattern};
use crate::wire::{client_id_problem, topic_name_problem};
use leptos::prelude::*;

/// What is wrong with a topic-or-pattern field, in words; `None` when it
/// can be subscribed to.
pub fn target_problem(text: &str) -> Option<String> {
    if is_pattern(text) {
        Pattern::parse(text).err()
    } else {
        topic_name_problem(text)
    }
}

/// The panel. `topic` is what it subscribes to; with `editable` a field
/// lets the user change it (topic or pattern), otherwise it is the page's
/// topic. `autostart` subscribes as soon as the page is hydrated (a link
/// that names what to watch).
#[component]
pub fn LivePanel(
    topic: String,
    #[prop(optional)] editable: bool,
    #[prop(optional)] autostart: bool,
    /// The client id the subscribe carries (shown in the topic's presence).
    #[prop(optional_no_strip)]
    client_id: Option<String>,
    /// Replay on subscribe (10 when not given).
    #[prop(optional_no_strip)]
    last_n: Option<u64>,
) -> impl IntoView {
    let view_state = LiveView::new();
    let target = RwSignal::new(topic);
    let last_n = RwSignal::new(last_n.unwrap_or(10).to_string());
    let client_id = RwSignal::new(client_id.unwrap_or_else(|| "web-ui".to_owned()));
    // What the running session subscribed to: its rows name their topic
    // when that is a pattern.
    let subscribed = RwSignal::new(None::<String>);
    on_cleanup(move || view_state.stop());
    let target_error = move || target.with(|t| target_problem(t.trim()));
    let client_error = move || {
        client_id.with(|c| {
            let c = c.trim();
            (!c.is_empty()).then(|| client_id_problem(c)).flatten()
        })
    };
    let start = move || {
        if target_error().is_some() || client_error().is_some() {
            return;
        }
        let topic = target.get_untracked().trim().to_owned();
        let n = last_n
            .get_untracked()
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0);
        let client = client_id.get_untracked().trim().to_owned();
        view_state.paused.set(false);
        subscribed.set(Some(topic.clone()));
        live::start(
            view_state,
            Request {
                topic,
                last_n: n,
                client_id: (!client.is_empty()).then_some(client),
            },
        );
    };
    if autostart {
        // Effects run in the browser only, once hydrated. Untracked: the
        // fields are the user's to edit afterwards, not a trigger.
        Effect::new(move || untrack(start));
    }
    let running = move || {
        matches!(
            view_state.status.get(),
            Status::Connecting | Status::Live | Status::Reconnecting
        )
    };
    let following = move || {
        let pattern = subscribed.with(|s| s.as_deref().is_some_and(is_pattern));
        let n = view_state.following.get();
        (pattern && running()).then(|| format!(" · following {n} topic(s)"))
    };
    let topic_field = editable.then(|| {
        view! {
            <label for="live-topic">"Topic or pattern"</label>
            <input id="live-topic" class="wide" autocomplete="off" spellcheck="false" maxlength="255"
                placeholder="orders.eu, orders.*, orders.>"
                aria-invalid=move || if target_error().is_some() { "true" } else { "false" }
                aria-describedby="live-topic-error"
                prop:value=move || target.get()
                on:input=move |ev| target.set(event_target_value(&ev))/>
        }
    });
    view! {
        <section class="card live" aria-labelledby="live-title">
            <h2 id="live-title">"Live"</h2>
            <form class="inline-form" on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                start();
            }>
                {topic_field}
                <label for="live-last-n">"Replay last"</label>
                <input id="live-last-n" type="number" min="0" class="narrow"
                    prop:value=move || last_n.get()
                    on:input=move |ev| last_n.set(event_target_value(&ev))/>
                <label for="live-client-id">"Client id"</label>
                <input id="live-client-id" class="medium" autocomplete="off" maxlength="128" placeholder="none"
                    aria-invalid=move || if client_error().is_some() { "true" } else { "false" }
                    prop:value=move || client_id.get()
                    on:input=move |ev| client_id.set(event_target_value(&ev))/>
                <button type="submit" data-testid="subscribe"
                    disabled=move || target_error().is_some() || client_error().is_some()>
                    {move || if running() { "Resubscribe" } else { "Subscribe" }}
                </button>
                <button type="button" disabled=move || !running() on:click=move |_| view_state.stop()>"Unsubscribe"</button>
                <button type="button" aria-pressed=move || if view_state.paused.get() { "true" } else { "false" }
                    on:click=move |_| view_state.paused.update(|p| *p = !*p)>
                    {move || if view_state.paused.get() { "Resume" } else { "Pause" }}
                </button>
                <button type="button" on:click=move |_| view_state.rows.set(Vec::new())>"Clear"</button>
            </form>
            <p id="live-topic-error" class="error" role="alert" data-testid="live-topic-error">
                {move || if editable { target_error().or_else(client_error) } else { client_error() }}
            </p>
            <p class="live-status">
                <span class=move || format!("dot {:?}", view_state.status.get()).to_lowercase() aria-hidden="true"></span>
                <span data-testid="live-status">{move || view_state.status.get().label()}</span>
                " · " <span data-testid="live-received">{move || thousands(view_state.received.get())}</span> " received"
                <span data-testid="live-following">{following}</span>
                {move || {
                    let held = view_state.held.get();
                    (held > 0).then(|| format!(" · paused, {held} held back"))
                }}
            </p>
            <div class="log" role="log" aria-live="polite" aria-relevant="additions" data-testid="live-log">
                <For each=move || view_state.rows.get() key=|e| e.key children=move |entry| {
                    match entry.kind {
                        EntryKind::Event { topic, seq, id, ts, payload } => view! {
                            <MessageRow seq=seq id=id ts=ts payload=payload topic=topic/>
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
    use super::target_problem;

    #[test]
    fn topics_and_patterns_are_checked() {
        assert!(target_problem("orders.eu").is_none());
        assert!(target_problem("orders.*").is_none());
        assert!(target_problem("orders.>").is_none());
        assert!(target_problem("ord*").is_some());
        assert!(target_problem("a.>.b").is_some());
        assert!(target_problem("with space").is_some());
        assert!(target_problem("").is_some());
    }
}
