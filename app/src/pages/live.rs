//! `/live`: the live panel on its own, for any topic or pattern
//! (`orders.*`, `orders.>`): each row names its topic, topics created later
//! that match are announced and followed, deleted ones are announced, and a
//! reconnect resumes every topic where it stopped. Opened with
//! `?topic=PATTERN` (the topic list links here) it subscribes at once;
//! `&last_n=N` and `&client_id=ID` preset those fields.

use crate::components::live_panel::LivePanel;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

#[component]
pub fn Live() -> impl IntoView {
    // Read once: the fields are the user's after that.
    let query = use_query_map().get_untracked();
    let topic = query.get("topic").unwrap_or_default();
    let last_n = query.get("last_n").and_then(|n| n.trim().parse().ok());
    let client_id = query.get("client_id");
    let autostart = !topic.is_empty();
    view! {
        <h1>"Live"</h1>
        <p class="muted">
            "Follow a topic, or every topic a pattern matches: " <code>"*"</code> " stands for one "
            "dot-separated token, a last " <code>">"</code> " for one or more ("
            <code>"orders.*"</code> ", " <code>"orders.>"</code> ")."
        </p>
        <LivePanel topic editable=true autostart client_id last_n/>
    }
}
