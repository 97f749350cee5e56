//! [`MessageRow`]: one message, as the history and the live log show it.

use super::format::clock;
use leptos::prelude::*;

/// A message with its `seq`, time and id; `topic` names its topic where
/// rows of several topics mix (a pattern's live log).
#[component]
pub fn MessageRow(
    seq: u64,
    id: String,
    ts: String,
    payload: String,
    #[prop(optional_no_strip)] topic: Option<String>,
) -> impl IntoView {
    let topic = topic.map(|t| {
        let href = format!("/topics/{t}");
        view! { <a class="topic-chip" href=href data-testid="row-topic">{t}</a> }
    });
    view! {
        <article class="message" data-seq=seq>
            <header>
                {topic}
                <span class="seq">"#" {seq}</span>
                <time datetime=ts.clone()>{clock(&ts)}</time>
                <code class="id" title="message id">{id}</code>
            </header>
            <pre>{payload}</pre>
        </article>
    }
}
