//! The web UI: the Leptos app from `app`, rendered on the server and
//! hydrated by the WASM bundle that cargo-leptos writes to the site root.
//!
//! The bundle is delivered as a real site's would be:
//! - **Versioned by content.** At start the server hashes the files of the
//!   site's `pkg/` folder and serves them under `/pkg/v-<hash>/`; the page
//!   links that path, so a new build is a new URL and the old one can be
//!   cached for a year (`immutable`). The plain `/pkg/...` path still works,
//!   with `no-cache` (revalidated through `Last-Modified`).
//! - **Precompressed.** `cargo leptos build --release --precompress` writes
//!   a `.br` and a `.gz` beside every file; they are served to clients that
//!   accept them (brotli first), so nothing is compressed per request.
//!
//! The hash is taken once: rebuilding the site under a running server needs
//! a restart to get a new URL.
//!
//! The pages are rendered with their data: [`reads`] is what they read
//! while the server renders them, for each page request, within what that
//! request may read.

mod reads;

use crate::auth::Access;
use crate::config::Config;
use crate::AppState;
use app::{shell, App};
use axum::extract::Request;
use axum::http::header::{HeaderValue, CACHE_CONTROL, VARY};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower_http::services::ServeDir;

/// Where cargo-leptos puts the bundle, inside the site root (and the URL
/// prefix it is served under).
const PKG_DIR: &str = "pkg";
/// A year: the longest lifetime caches honour, for content-named URLs.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Leptos' options, from its environment variables (`LEPTOS_SITE_ROOT`,
/// default `target/site`), with our own listen address and the versioned
/// bundle path (so the page links `/pkg/v-<hash>/pubsub.js`).
pub fn options(config: &Config) -> LeptosOptions {
    let mut options = leptos::config::get_configuration(None)
        .map(|c| c.leptos_options)
        .unwrap_or_else(|_| LeptosOptions::builder().output_name("pubsub").build());
    options.site_addr = config.addr;
    // Names stay as cargo-leptos writes them; the version is in the path.
    options.hash_files = false;
    let pkg = pkg_folder(&options);
    match version_of(&pkg) {
        Some(version) => options.site_pkg_dir = format!("{PKG_DIR}/{version}").into(),
        None => {
            options.site_pkg_dir = PKG_DIR.into();
            tracing::warn!(folder = %pkg.display(), "no UI bundle here: pages are served, their script is not (build it with `cargo leptos build --release`)");
        }
    }
    options
}

/// Adds the page routes, the bundle under its versioned path and the plain
/// one, and static files from the site root as fallback. `access` is what
/// each route needs, as the guard checks it: a page shows what its request
/// may read.
pub fn routes(router: Router<AppState>, state: &AppState, access: Arc<Access>) -> Router<AppState> {
    let page_routes = page_routes();
    let options = state.leptos_options.clone();
    let pkg = pkg_folder(&options);
    let reads = {
        let state = state.clone();
        move || reads::provide(&state, &access)
    };
    let mut router = router
        .leptos_routes_with_context(state, page_routes, reads, move || shell(options.clone()));
    let versioned = &*state.leptos_options.site_pkg_dir;
    if versioned != PKG_DIR {
        router = router.nest_service(&format!("/{versioned}"), bundle(&pkg, IMMUTABLE));
    }
    router
        .nest_service(&format!("/{PKG_DIR}"), bundle(&pkg, REVALIDATE))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
}

/// The pages' routes, generated once per process. Generating them runs
/// the app with a process-global flag of leptos_server set, and a resource
/// whose future is first polled meanwhile, by any page render in the
/// process, waits forever (leptos issue 4773): a second server started in
/// the same process (the tests start dozens) made a page request of the
/// first one hang now and then.
fn page_routes() -> Vec<leptos_axum::AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<leptos_axum::AxumRouteListing>> =
        std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

fn pkg_folder(options: &LeptosOptions) -> PathBuf {
    Path::new(&*options.site_root).join(PKG_DIR)
}

/// The files of `folder`, precompressed variants preferred, with
/// `cache_control` on every answer (and `Vary`, since the body depends on
/// `Accept-Encoding`).
fn bundle<S: Clone + Send + Sync + 'static>(
    folder: &Path,
    cache_control: &'static str,
) -> Router<S> {
    let files = ServeDir::new(folder)
        .precompressed_br()
        .precompressed_gzip()
        .append_index_html_on_directories(false);
    Router::new()
        .fallback_service(files)
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| async move {
                let mut response: Response = next.run(request).await;
                if response.status().is_success() || response.status().is_redirection() {
                    let headers = response.headers_mut();
                    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache_control));
                    headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
                }
                response
            },
        ))
}

/// `v-` and the first 16 hex digits of a SHA-256 over the names and
/// contents of the bundle's files (the precompressed copies follow from
/// them); `None` when the folder has none.
pub fn version_of(folder: &Path) -> Option<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .filter(|path| !matches!(path.extension().and_then(|e| e.to_str()), Some("br" | "gz")))
        .collect();
    if files.is_empty() {
        return None;
    }
    files.sort();
    let mut hash = Sha256::new();
    for path in files {
        let bytes = std::fs::read(&path).ok()?;
        hash.update(path.file_name()?.as_encoded_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    let digest = hash.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("v-{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{header, StatusCode};
    use tower::ServiceExt;

    fn site(wasm: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("pubsub.wasm"), wasm).expect("write");
        std::fs::write(dir.path().join("pubsub.wasm.br"), b"brotli bytes").expect("write");
        std::fs::write(dir.path().join("pubsub.wasm.gz"), b"gzip bytes").expect("write");
        std::fs::write(dir.path().join("pubsub.js"), b"export {}").expect("write");
        dir
    }

    async fn get(router: Router, path: &str, accept: &str) -> Response {
        router
            .oneshot(
                Request::get(path)
                    .header(header::ACCEPT_ENCODING, accept)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible")
    }

    #[test]
    fn the_version_follows_the_contents_and_ignores_compressed_copies() {
        let a = site(b"\0asm one");
        let b = site(b"\0asm two");
        let version = version_of(a.path()).expect("a version");
        assert!(
            version.starts_with("v-") && version.len() == 18,
            "{version}"
        );
        assert_eq!(version_of(a.path()), Some(version.clone()), "stable");
        assert_ne!(version_of(b.path()), Some(version.clone()), "content");
        std::fs::write(a.path().join("pubsub.wasm.br"), b"other").expect("write");
        assert_eq!(version_of(a.path()), Some(version), "compressed copies");
        let empty = tempfile::tempdir().expect("temp dir");
        assert_eq!(version_of(empty.path()), None);
        assert_eq!(version_of(&empty.path().join("missing")), None);
    }

    #[tokio::test]
    async fn brotli_first_then_gzip_then_identity_with_cache_headers() {
        let dir = site(b"\0asm raw");
        let br = get(bundle(dir.path(), IMMUTABLE), "/pubsub.wasm", "gzip, br").await;
        assert_eq!(br.status(), StatusCode::OK);
        assert_eq!(br.headers()[header::CONTENT_ENCODING], "br");
        assert_eq!(br.headers()[header::CACHE_CONTROL], IMMUTABLE);
        assert_eq!(br.headers()[header::VARY], "accept-encoding");
        assert_eq!(br.headers()[header::CONTENT_TYPE], "application/wasm");

        let gz = get(bundle(dir.path(), IMMUTABLE), "/pubsub.wasm", "gzip").await;
        assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");

        let raw = get(bundle(dir.path(), REVALIDATE), "/pubsub.wasm", "identity").await;
        assert!(raw.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(raw.headers()[header::CACHE_CONTROL], REVALIDATE);
        let body = axum::body::to_bytes(raw.into_body(), 1 << 20)
            .await
            .expect("body");
        assert_eq!(&body[..], b"\0asm raw");

        // A file with no compressed copy is served as it is.
        let js = get(bundle(dir.path(), IMMUTABLE), "/pubsub.js", "br").await;
        assert_eq!(js.status(), StatusCode::OK);
        assert!(js.headers().get(header::CONTENT_ENCODING).is_none());

        // Missing files are not cached.
        let missing = get(bundle(dir.path(), IMMUTABLE), "/nope.js", "br").await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(missing.headers().get(header::CACHE_CONTROL).is_none());
        let escape = get(bundle(dir.path(), IMMUTABLE), "/../Cargo.toml", "br").await;
        assert_eq!(escape.status(), StatusCode::NOT_FOUND);
    }
}
