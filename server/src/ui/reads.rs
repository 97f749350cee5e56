//! What the UI's pages read while the server renders them: the
//! [`app::reads::Source`] of one page request, over the broker and the stats
//! sampler. Each read answers what its REST route would, built by the same
//! code ([`crate::api`]'s reads), so a page's first paint and its later
//! refreshes (REST, from the browser) show the same thing.
//!
//! A read is made only if the page request could make it over REST: the
//! route's need from the guard's own [`Access`] table, checked against the
//! key the page request presents (`Authorization` or `X-API-Key`). Otherwise
//! it is [`Loaded::Withheld`]: the page renders its loading state and the
//! browser fetches with the key it keeps (`app::reads` says why browsers
//! send none with a page load). So turning keys on never lets a page show
//! more than the API would; without keys every read is made.

use crate::api;
use crate::auth::{presented, Access, Presented, Role};
use crate::broker::{BrokerError, HistoryRange};
use crate::AppState;
use app::reads::{Answer, Loaded, Source};
use app::wire::{
    ConnectionInfo, HistoryPage, Presence, Stats, StatsHistory, TopicDetail, TopicSummary,
};
use axum::http::request::Parts;
use axum::http::Method;
use leptos::prelude::use_context;
use std::future::Future;
use std::sync::Arc;

/// The REST routes whose reads the pages make, as [`Access`] knows them.
const TOPICS: &str = "/api/topics";
const TOPIC: &str = "/api/topics/{name}";
const HISTORY: &str = "/api/topics/{name}/messages";
const STATS: &str = "/api/stats";
const STATS_HISTORY: &str = "/api/stats/history";
const PRESENCE: &str = "/api/topics/{name}/presence";
const CONNECTIONS: &str = "/api/connections";

/// Provides the current page request's reads as context: called by
/// leptos_axum for each page request, after it provided the request's
/// [`Parts`].
pub(super) fn provide(state: &AppState, access: &Arc<Access>) {
    let key = use_context::<Parts>()
        .and_then(|parts| presented(&parts.headers, None).map(Presented::into_owned));
    app::reads::provide_source(PageReads {
        state: state.clone(),
        access: Arc::clone(access),
        key,
    });
}

struct PageReads {
    state: AppState,
    access: Arc<Access>,
    /// The key or token the page request presents, if any.
    key: Option<Presented<'static>>,
}

impl PageReads {
    /// Whether the page request could `GET` `route` over REST (for a
    /// topic's reads, `topic` too: a token may be limited to some). A
    /// route the table does not know fails closed.
    fn allows(&self, route: &str, topic: Option<&str>) -> bool {
        let Some(need) = self.access.need(&Method::GET, Some(route), route) else {
            return false;
        };
        let Ok(credential) = self.state.keys.authorize(self.key.as_ref(), need) else {
            return false;
        };
        topic.is_none_or(|topic| credential.may(Role::Subscribe, topic).is_ok())
    }

    /// `read` made with the state, if the request may `GET` `route`.
    fn answer<T, Fut>(&self, route: &str, read: impl FnOnce(AppState) -> Fut) -> Answer<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, BrokerError>> + Send + 'static,
    {
        self.answer_on(route, None, read)
    }

    /// [`Self::answer`] for a read of one topic's messages or presence.
    fn answer_on<T, Fut>(
        &self,
        route: &str,
        topic: Option<&str>,
        read: impl FnOnce(AppState) -> Fut,
    ) -> Answer<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, BrokerError>> + Send + 'static,
    {
        if !self.allows(route, topic) {
            return Box::pin(std::future::ready(Loaded::Withheld));
        }
        let read = read(self.state.clone());
        Box::pin(async move {
            match read.await {
                Ok(value) => Loaded::Ready(value),
                Err(e) => Loaded::Failed(app::reads::refusal(e.code, &e.message)),
            }
        })
    }
}

impl Source for PageReads {
    fn topics(&self) -> Answer<Vec<TopicSummary>> {
        self.answer(TOPICS, |state| async move {
            api::topic_list(&state.broker, None)
                .await
                .map(|list| list.topics)
        })
    }

    fn topic(&self, name: &str) -> Answer<TopicDetail> {
        let name = name.to_owned();
        self.answer(TOPIC, |state| async move {
            api::topic_detail(&state.broker, &name).await
        })
    }

    fn history(&self, topic: &str, last_n: Option<u64>) -> Answer<HistoryPage> {
        let name = topic.to_owned();
        let range = last_n.map_or(HistoryRange::All, HistoryRange::LastN);
        self.answer_on(HISTORY, Some(topic), |state| async move {
            api::history_page(&state.broker, &name, range).await
        })
    }

    fn stats(&self) -> Answer<Stats> {
        self.answer(
            STATS,
            |state| async move { Ok(api::stats_of(&state.broker)) },
        )
    }

    fn stats_history(&self, last_n: Option<usize>) -> Answer<StatsHistory> {
        self.answer(STATS_HISTORY, |state| async move {
            Ok(api::stats_history_of(&state.sampler, last_n))
        })
    }

    fn presence(&self, topic: &str) -> Answer<Presence> {
        let name = topic.to_owned();
        self.answer_on(PRESENCE, Some(topic), |state| async move {
            api::presence_of(&state.broker, name).await
        })
    }

    fn connections(&self) -> Answer<Vec<ConnectionInfo>> {
        self.answer(CONNECTIONS, |state| async move {
            Ok(state.broker.connections())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Need;

    /// A renamed route would make its read fail closed (always withheld):
    /// every route read here is one the API declares.
    #[test]
    fn every_route_read_is_declared() {
        let (_, access) = api::router();
        for route in [
            TOPICS,
            TOPIC,
            HISTORY,
            STATS,
            STATS_HISTORY,
            PRESENCE,
            CONNECTIONS,
        ] {
            let need = access.need(&Method::GET, Some(route), route);
            assert!(
                matches!(need, Some(Need::AnyKey | Need::Role(_))),
                "{route}: {need:?}"
            );
        }
    }
}
