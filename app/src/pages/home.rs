//! `/`: the live list of topics, refreshed every two seconds.

use crate::client;
use crate::wire::TopicSummary;
use leptos::prelude::*;
use std::time::Duration;

const REFRESH: Duration = Duration::from_secs(2);

#[component]
pub fn Home() -> impl IntoView {
    let (topics, set_topics) = signal(None::<Result<Vec<TopicSummary>, String>>);
    // Browser only: effects do not run on the server.
    Effect::new(move || {
        let load = move || {
            leptos::task::spawn_local(async move {
                set_topics.set(Some(client::list_topics().await));
            })
        };
        load();
        if let Ok(handle) = set_interval_with_handle(load, REFRESH) {
            on_cleanup(move || handle.clear());
        }
    });
    view! {
        <section class="card">
            <h1>"Topics"</h1>
            <div aria-live="polite">
                {move || match topics.get() {
                    None => view! { <p class="muted">"Loading topics…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error" role="alert">"Cannot load topics: " {e}</p> }.into_any(),
                    Some(Ok(list)) if list.is_empty() => view! {
                        <p class="muted" data-testid="no-topics">
                            "No topics yet. Create one with "
                            <code>"curl -X POST localhost:4000/api/topics -d '{\"name\":\"demo\"}'"</code>
                        </p>
                    }.into_any(),
                    Some(Ok(list)) => view! { <TopicTable topics=list/> }.into_any(),
                }}
            </div>
        </section>
    }
}

#[component]
fn TopicTable(topics: Vec<TopicSummary>) -> impl IntoView {
    view! {
        <table class="topics" data-testid="topic-table">
            <thead>
                <tr>
                    <th scope="col">"Name"</th>
                    <th scope="col" class="num">"Subscribers"</th>
                    <th scope="col" class="num">"Messages"</th>
                    <th scope="col">"Created"</th>
                </tr>
            </thead>
            <tbody>
                {topics
                    .into_iter()
                    .map(|t| {
                        let name = t.name.clone();
                        let created = t.created_at.clone();
                        view! {
                        <tr data-topic=name>
                            <td class="name">{t.name}</td>
                            <td class="num">{t.subscribers}</td>
                            <td class="num">{t.messages}</td>
                            <td><time datetime=created>{t.created_at}</time></td>
                        </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}
