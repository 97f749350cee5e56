//! The API key the UI sends when the server requires one.
//!
//! Nothing is asked while the server has authentication off. The first
//! `401` from the REST API (see [`crate::client`]) opens [`KeyPrompt`]; the
//! key entered is kept in the tab's `sessionStorage` (gone when the tab
//! closes), sent as `Authorization: Bearer` on REST calls and as `?token=`
//! on the WebSocket, since browsers cannot set headers there.

use leptos::prelude::*;

#[cfg(feature = "hydrate")]
const STORAGE_KEY: &str = "pubsub.api_key";

thread_local! {
    /// Why a key is wanted, while the prompt is open. Reference-counted, not
    /// owned by a component, so no view's disposal can take it away.
    static WANTED: ArcRwSignal<Option<String>> = ArcRwSignal::new(None);
}

fn wanted() -> ArcRwSignal<Option<String>> {
    WANTED.with(ArcRwSignal::clone)
}

/// Opens the prompt, saying why (the server's message).
pub fn ask(reason: impl Into<String>) {
    wanted().set(Some(reason.into()));
}

#[cfg(feature = "hydrate")]
fn storage() -> Option<web_sys::Storage> {
    window().session_storage().ok().flatten()
}

/// The key of this tab's session, if one was entered.
#[cfg(feature = "hydrate")]
pub fn key() -> Option<String> {
    storage()?
        .get_item(STORAGE_KEY)
        .ok()
        .flatten()
        .filter(|k| !k.is_empty())
}

#[cfg(not(feature = "hydrate"))]
pub fn key() -> Option<String> {
    None
}

#[cfg(feature = "hydrate")]
fn remember(key: Option<&str>) {
    if let Some(s) = storage() {
        let _ = match key {
            Some(k) => s.set_item(STORAGE_KEY, k),
            None => s.remove_item(STORAGE_KEY),
        };
    }
    // Every page and live view starts over with the new key.
    let _ = window().location().reload();
}

#[cfg(not(feature = "hydrate"))]
fn remember(_key: Option<&str>) {}

/// Whether this tab's credential is a signed token (a JWT's three parts)
/// rather than a key: a token's connection is its `sub`, so the UI then
/// names no client id of its own (another would be refused).
pub fn holds_token() -> bool {
    key().is_some_and(|k| k.split('.').count() == 3)
}

/// `?token=KEY` for the WebSocket URL, or nothing.
pub fn token_query() -> String {
    key()
        .map(|k| format!("?token={}", percent_encode(&k)))
        .unwrap_or_default()
}

/// `text` as a URL's query value: everything but unreserved characters
/// percent-encoded.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The dialog asking for a key, shown over any page when the server wants
/// one; and, once a key is set, a header button to forget it.
#[component]
pub fn KeyPrompt() -> impl IntoView {
    let entered = RwSignal::new(String::new());
    let has_key = RwSignal::new(false);
    Effect::new(move || has_key.set(key().is_some()));
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let k = entered.get_untracked();
        let k = k.trim();
        if !k.is_empty() {
            remember(Some(k));
        }
    };
    view! {
        <Show when=move || has_key.get()>
            <button type="button" class="key-forget" on:click=move |_| remember(None)>
                "Forget key"
            </button>
        </Show>
        <Show when=move || wanted().get().is_some()>
            <div class="key-prompt" role="dialog" aria-modal="true" aria-labelledby="key-prompt-title">
                <form on:submit=submit>
                    <h2 id="key-prompt-title">"This server needs an API key or token"</h2>
                    <p class="muted">{move || wanted().get().unwrap_or_default()}</p>
                    <label for="api-key">"API key or token"</label>
                    <input
                        id="api-key"
                        type="password"
                        autocomplete="off"
                        required=true
                        prop:value=move || entered.get()
                        on:input=move |ev| entered.set(event_target_value(&ev))
                    />
                    <p class="muted">"Kept for this browser tab only (sessionStorage)."</p>
                    <div class="actions">
                        <button type="submit">"Use this key"</button>
                        <button type="button" on:click=move |_| wanted().set(None)>
                            "Cancel"
                        </button>
                    </div>
                </form>
            </div>
        </Show>
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_percent_encoded_for_the_url() {
        assert_eq!(super::percent_encode("a+b=c&d/é"), "a%2Bb%3Dc%26d%2F%C3%A9");
        assert_eq!(super::percent_encode("Az09-._~"), "Az09-._~");
    }
}
