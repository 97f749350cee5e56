//! Who may do what: API keys with roles, signed tokens ([`token`]) with
//! roles limited to topic patterns, and which browser origins may open
//! WebSockets or change state.
//!
//! Authentication is off until a key or a token verifier is configured.
//! Then every request under `/api` (except `/api/health` and
//! `/api/openapi.json`), `/metrics` and the WebSocket upgrade need a
//! credential: REST in `Authorization: Bearer KEY_OR_TOKEN` or
//! `X-API-Key: KEY` (keys only), the WebSocket also as `?token=`. Roles:
//! `admin` creates and deletes topics, `publish` publishes, `subscribe`
//! subscribes and reads history; any valid credential reads the rest. What
//! a request authenticated with is a [`Credential`], which the guard hands
//! to the handlers; they check the topic they touch with
//! [`Credential::may`].
//!
//! Keys are kept only as SHA-256 digests and a presented key is compared
//! with every configured one in constant time, so neither timing nor a
//! memory dump gives a key away.

mod credential;
pub mod token;

pub use credential::Credential;
pub use token::{TokenAlgorithm, TokenVerifier};

use crate::api::ApiError;
use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use protocol::ErrorCode;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// A role a key can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Create and delete topics.
    Admin,
    /// Publish messages.
    Publish,
    /// Subscribe and read history.
    Subscribe,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Publish, Role::Subscribe];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Publish => "publish",
            Role::Subscribe => "subscribe",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Role::Admin => 1,
            Role::Publish => 2,
            Role::Subscribe => 4,
        }
    }

    /// What the role is needed for, to explain a 403.
    fn purpose(self) -> &'static str {
        match self {
            Role::Admin => "create or delete topics",
            Role::Publish => "publish",
            Role::Subscribe => "subscribe or read history",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| format!("unknown role {s:?} (roles: admin, publish, subscribe)"))
    }
}

/// The roles held by a key (or by everyone, when auth is off).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Grants(u8);

impl Grants {
    /// Every role: what a connection gets when authentication is off.
    pub const ALL: Grants = Grants(7);

    pub fn with(self, role: Role) -> Grants {
        Grants(self.0 | role.bit())
    }

    pub fn allows(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }
}

impl fmt::Debug for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roles: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|r| self.allows(*r))
            .map(Role::as_str)
            .collect();
        write!(f, "[{}]", roles.join(","))
    }
}

/// One configured key, `KEY=ROLE[,ROLE...]`, kept as its digest only.
#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 32],
    grants: Grants,
    /// It has a JWT's shape: with tokens configured it would be verified
    /// as a token and could never be used as a key (refused at start).
    jwt_shaped: bool,
}

impl ApiKey {
    pub fn grants(&self) -> Grants {
        self.grants
    }

    pub fn is_jwt_shaped(&self) -> bool {
        self.jwt_shaped
    }
}

/// Never prints the key itself (configs are logged and printed).
impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey(***={:?})", self.grants)
    }
}

impl FromStr for ApiKey {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (key, roles) = spec
            .rsplit_once('=')
            .ok_or("expected KEY=ROLE[,ROLE...], e.g. s3cret=publish,subscribe")?;
        let key = key.trim();
        if key.is_empty() {
            return Err("the key before '=' is empty".into());
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a key cannot contain spaces or control characters".into());
        }
        let mut grants = Grants::default();
        for role in roles.split(',').filter(|r| !r.trim().is_empty()) {
            grants = grants.with(role.parse()?);
        }
        if grants == Grants::default() {
            return Err("a key needs at least one role (admin, publish, subscribe)".into());
        }
        Ok(ApiKey {
            digest: Sha256::digest(key.as_bytes()).into(),
            grants,
            jwt_shaped: token::looks_like_jwt(key),
        })
    }
}

/// Reads a keys file: one `KEY=ROLE[,ROLE...]` per line, `#` comments and
/// blank lines ignored. Errors name the line.
pub fn parse_keys_file(text: &str) -> Result<Vec<ApiKey>, String> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(n, line)| line.parse().map_err(|e| format!("line {n}: {e}")))
        .collect()
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credential, a key that is not configured, a token that is not
    /// valid (now): 401.
    Unauthorized(Cow<'static, str>),
    /// A valid credential without the role: 403.
    Forbidden(Role),
    /// A token whose claims limit `role` to patterns (`claim`) none of
    /// which allows `topic`: 403.
    OutOfScope {
        role: Role,
        topic: String,
        claim: Vec<String>,
    },
    /// A valid credential that cannot be used so, said in the message (a
    /// `refresh` to another `sub`, a `client_id` that is not the token's
    /// `sub`): 403.
    Denied(String),
    /// A browser page from another origin: 403.
    Origin,
    /// A `Host` that is not one of the server's names (DNS rebinding): 403.
    Host,
}

impl Refusal {
    /// The contract's code: `UNAUTHORIZED` or `FORBIDDEN`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::Unauthorized(_) => ErrorCode::Unauthorized,
            _ => ErrorCode::Forbidden,
        }
    }

    /// What is wrong, for people (never the credential itself).
    pub fn message(&self) -> String {
        match self {
            Refusal::Unauthorized(message) => message.to_string(),
            Refusal::Forbidden(role) => format!(
                "this credential lacks the {:?} role needed to {}",
                role.as_str(),
                role.purpose()
            ),
            Refusal::OutOfScope { role, topic, claim } => {
                let role = role.as_str();
                format!(
                    "the token does not allow {role} on {topic:?}: its \"topics.{role}\" claim lists {claim:?}"
                )
            }
            Refusal::Denied(message) => message.clone(),
            Refusal::Origin => {
                "requests from this Origin are not allowed (see --public-origin and --allowed-origin)"
                    .into()
            }
            Refusal::Host => {
                "this Host is not one of the server's names (see --public-origin)".into()
            }
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError::new(refusal.code(), refusal.message())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let challenge = matches!(self, Refusal::Unauthorized(_));
        let mut response = ApiError::from(self).into_response();
        if challenge {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: health, the OpenAPI document, the UI and its assets.
    Open,
    /// Any valid key.
    AnyKey,
    /// A key with this role.
    Role(Role),
}

/// The configured credentials: keys, and a token verifier. With neither,
/// authentication is off; a token verifier alone turns it on too.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    keys: Vec<ApiKey>,
    tokens: Option<TokenVerifier>,
}

impl Keys {
    pub fn new(keys: Vec<ApiKey>, tokens: Option<TokenVerifier>) -> Self {
        Keys { keys, tokens }
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty() || self.tokens.is_some()
    }

    /// Whether tokens are accepted (and a WebSocket `refresh` means
    /// something).
    pub fn tokens(&self) -> Option<&TokenVerifier> {
        self.tokens.as_ref()
    }

    /// The roles of a presented key (the union, if configured twice), or
    /// `None`. Looks at every configured key whatever matches, comparing
    /// digests in constant time.
    pub fn lookup(&self, presented: &str) -> Option<Grants> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        let mut bits = 0u8;
        for key in &self.keys {
            let same = key.digest.ct_eq(&digest);
            found |= same;
            bits |= u8::conditional_select(&0, &key.grants.0, same);
        }
        bool::from(found).then_some(Grants(bits))
    }

    /// Decides a request: what its credential allows (everything when
    /// auth is off), or why it is refused. A credential that may be a
    /// token and has a JWT's shape is verified as one when tokens are
    /// configured; anything else is looked up as a key.
    pub fn authorize(
        &self,
        presented: Option<&Presented<'_>>,
        need: Need,
    ) -> Result<Credential, Refusal> {
        if !self.enabled() {
            return Ok(Credential::Open);
        }
        if need == Need::Open {
            return Ok(Credential::NONE);
        }
        let Some(presented) = presented else {
            return Err(Refusal::Unauthorized(Cow::Borrowed(
                "a credential is required: send Authorization: Bearer KEY_OR_TOKEN or X-API-Key: KEY",
            )));
        };
        let credential = self.authenticate(presented)?;
        match need {
            Need::Role(role) if !credential.allows(role) => Err(Refusal::Forbidden(role)),
            _ => Ok(credential),
        }
    }

    /// What a presented credential is, whatever the route: a valid token's
    /// grant, a key's roles, or a 401.
    pub fn authenticate(&self, presented: &Presented<'_>) -> Result<Credential, Refusal> {
        if let Some(tokens) = &self.tokens {
            if presented.may_be_token && token::looks_like_jwt(&presented.secret) {
                return tokens
                    .verify(&presented.secret)
                    .map(|grant| Credential::Token(std::sync::Arc::new(grant)))
                    .map_err(|why| Refusal::Unauthorized(Cow::Owned(why)));
            }
        }
        match self.lookup(&presented.secret) {
            Some(grants) => Ok(Credential::Key(grants)),
            None if self.keys.is_empty() => Err(Refusal::Unauthorized(Cow::Borrowed(
                "the token is malformed: this server accepts signed tokens (JWT) only",
            ))),
            None => Err(Refusal::Unauthorized(Cow::Borrowed(
                "the API key is not valid",
            ))),
        }
    }
}

/// A credential as a request presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    pub secret: Cow<'a, str>,
    /// False when it came as `X-API-Key`, which carries keys only.
    pub may_be_token: bool,
}

impl Presented<'_> {
    pub fn into_owned(self) -> Presented<'static> {
        Presented {
            secret: Cow::Owned(self.secret.into_owned()),
            may_be_token: self.may_be_token,
        }
    }
}

impl std::ops::Deref for Presented<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.secret
    }
}

/// The credential a request presents: `Authorization: Bearer KEY_OR_TOKEN`,
/// `X-API-Key: KEY` or, when `query` is given (the WebSocket upgrade),
/// `?token=KEY_OR_TOKEN`.
pub fn presented<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<Presented<'a>> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    if let Some(secret) = bearer {
        return Some(Presented {
            secret: Cow::Borrowed(secret),
            may_be_token: true,
        });
    }
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(Presented {
            secret: Cow::Borrowed(key),
            may_be_token: false,
        });
    }
    form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| Presented {
            secret: value,
            may_be_token: true,
        })
}

/// Which browser origins may open WebSockets and send state-changing REST
/// requests, and which `Host` names are served.
///
/// An `Origin` is compared with the server's configured public origins
/// (default: `http://ADDR`, and `http://localhost:PORT` on loopback) and the
/// `--allowed-origin` list, never with the request's own `Host`: a foreign
/// page whose name was rebound to 127.0.0.1 sends its own name as `Host`,
/// and would look "same origin". On a loopback address the `Host` itself
/// must be one of the server's names (an IP literal, `localhost`, or a
/// public origin's host), so such a page cannot even read. Requests without
/// an `Origin` (programs, not browsers) are not restricted by it.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    any: bool,
    /// Normalized `scheme://host[:port]` of public and allowed origins.
    listed: Vec<String>,
    /// Host names (no port) a request may name on a loopback address;
    /// `None`: any (the server does not listen on loopback).
    hosts: Option<Vec<String>>,
}

impl Origins {
    /// From `--public-origin` (or its default for `addr`, the address the
    /// server listens on) and `--allowed-origin` (`*` allows every origin).
    pub fn new(public: &[String], allowed: &[String], addr: std::net::SocketAddr) -> Self {
        let public: Vec<String> = if public.is_empty() {
            let mut own = vec![format!("http://{addr}")];
            if addr.ip().is_loopback() {
                own.push(format!("http://localhost:{}", addr.port()));
            }
            own
        } else {
            public.to_vec()
        };
        let listed: Vec<String> = public.iter().chain(allowed).map(|o| normalize(o)).collect();
        let hosts = addr.ip().is_loopback().then(|| {
            let mut hosts: Vec<String> = public
                .iter()
                .filter_map(|o| {
                    normalize(o)
                        .split_once("://")
                        .map(|(_, h)| hostname(h).to_owned())
                })
                .collect();
            hosts.push("localhost".into());
            hosts
        });
        Origins {
            any: allowed.iter().any(|o| o.trim() == "*"),
            listed,
            hosts,
        }
    }

    /// Whether the request's `Origin` (if any) may change state or open a
    /// WebSocket.
    pub fn permits(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(ORIGIN) else {
            return true;
        };
        if self.any {
            return true;
        }
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        self.listed.contains(&normalize(origin))
    }

    /// Whether the request's `Host` is one of the server's names (always,
    /// when it does not listen on loopback). A missing `Host` is not a
    /// browser's request.
    pub fn serves_host(&self, headers: &HeaderMap) -> bool {
        let Some(names) = &self.hosts else {
            return true;
        };
        let Some(host) = headers.get(HOST) else {
            return true;
        };
        let Ok(host) = host.to_str() else {
            return false;
        };
        let host = host.trim().to_ascii_lowercase();
        let name = hostname(&host);
        let ip_literal = name.parse::<std::net::IpAddr>().is_ok()
            || name
                .strip_prefix('[')
                .and_then(|n| n.strip_suffix(']'))
                .is_some_and(|n| n.parse::<std::net::Ipv6Addr>().is_ok());
        ip_literal || names.iter().any(|n| n == name)
    }
}

/// `scheme://host[:port]`, lowercased, without a trailing `/` or the
/// scheme's default port.
fn normalize(origin: &str) -> String {
    let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if o.starts_with(scheme) {
            if let Some(bare) = o.strip_suffix(port) {
                return bare.to_owned();
            }
        }
    }
    o
}

/// The name part of `host[:port]` (`[v6]` kept in brackets).
fn hostname(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// What each route needs, keyed by method and route template (axum's
/// [`MatchedPath`]), filled in where the routes are declared
/// ([`crate::api::router`] for `/api`, [`crate::router`] for the rest), so
/// a route and its role are written down once, together.
///
/// Looking a request up: `HEAD` needs what `GET` needs; a declared route
/// with a method it does not serve needs any key (the answer is a 405); an
/// unknown path under `/api` needs any key (the answer is a 404, and
/// without a key nobody learns which routes exist); pages and files need
/// nothing. A route under `/api` that was served but not declared fails
/// closed ([`Access::need`] is `None`).
#[derive(Debug, Default)]
pub struct Access {
    /// By route template, then method: looked up by `&str` on every
    /// request, with no allocation.
    needs: std::collections::HashMap<String, Vec<(Method, Need)>>,
    /// Routes that also read the key from `?token=` (the SSE streams).
    query_token: std::collections::HashSet<String>,
}

impl Access {
    /// Declares what `method route` needs. Declaring a route twice is a
    /// programming error.
    pub fn declare(&mut self, method: Method, route: &str, need: Need) {
        let methods = self.needs.entry(route.to_owned()).or_default();
        assert!(
            methods.iter().all(|(m, _)| *m != method),
            "{method} {route} declared twice"
        );
        methods.push((method, need));
    }

    /// Lets `route` take its key from `?token=` too.
    pub fn accept_query_token(&mut self, route: &str) {
        self.query_token.insert(route.to_owned());
    }

    /// Whether a request routed to `matched` may give its key as `?token=`.
    pub fn takes_query_token(&self, matched: Option<&str>) -> bool {
        matched.is_some_and(|route| self.query_token.contains(route))
    }

    /// What a request to `path`, routed to `matched` (if a route matched),
    /// needs; `None` for an undeclared route under `/api`.
    pub fn need(&self, method: &Method, matched: Option<&str>, path: &str) -> Option<Need> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let under_api = path == "/api" || path.starts_with("/api/");
        let Some(route) = matched.filter(|r| !is_fallback(r)) else {
            return Some(if under_api { Need::AnyKey } else { Need::Open });
        };
        let Some(methods) = self.needs.get(route) else {
            return (!under_api).then_some(Need::Open);
        };
        // A method the route does not serve: a key first, then the 405.
        Some(
            methods
                .iter()
                .find(|(m, _)| m == method)
                .map_or(Need::AnyKey, |(_, need)| *need),
        )
    }
}

/// The templates axum gives its own catch-alls (a nested router's fallback,
/// a nested service's tail): not routes anyone declared.
pub fn is_fallback(route: &str) -> bool {
    route.contains("__private__axum")
}

/// The guard of every request: the `Host` (on loopback), the origin policy
/// for requests that change state, then the credential and role the route
/// needs. The request's [`Credential`] goes into its extensions, for the
/// handlers' per-topic checks.
pub async fn guard(
    State((state, access)): State<(AppState, std::sync::Arc<Access>)>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    if !state.origins().serves_host(headers) {
        state
            .broker
            .totals()
            .refuse(crate::broker::Limit::HostNotAllowed);
        return Refusal::Host.into_response();
    }
    let changes_state = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes_state && !state.origins().permits(headers) {
        state
            .broker
            .totals()
            .refuse(crate::broker::Limit::OriginNotAllowed);
        return Refusal::Origin.into_response();
    }
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let Some(need) = access.need(request.method(), matched, request.uri().path()) else {
        tracing::error!(route = ?matched, "a route under /api without a declared role");
        return ApiError::new(ErrorCode::Internal, "this route has no declared role")
            .into_response();
    };
    let credential = if need == Need::Open {
        if state.keys.enabled() {
            Credential::NONE
        } else {
            Credential::Open
        }
    } else {
        // `?token=` only where a route takes it (the streams, which
        // EventSource opens without headers).
        let query = access
            .takes_query_token(matched)
            .then(|| request.uri().query())
            .flatten();
        let key = presented(headers, query);
        match state.keys.authorize(key.as_ref(), need) {
            Ok(credential) => credential,
            Err(refusal) => return refusal.into_response(),
        }
    };
    request.extensions_mut().insert(credential);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(specs: &[&str]) -> Keys {
        Keys::new(specs.iter().map(|s| s.parse().unwrap()).collect(), None)
    }

    #[test]
    fn key_specs_parse_and_refuse_nonsense() {
        let k: ApiKey = "abc=publish, subscribe".parse().unwrap();
        assert!(k.grants().allows(Role::Publish) && k.grants().allows(Role::Subscribe));
        assert!(!k.grants().allows(Role::Admin));
        // The last '=' splits, so a key may contain '=' (base64).
        let k: ApiKey = "YWJj==admin".parse().unwrap();
        assert!(Keys::new(vec![k], None).lookup("YWJj=").is_some());
        for bad in ["abc", "=admin", "abc=", "abc=root", "a b=admin"] {
            assert!(bad.parse::<ApiKey>().is_err(), "{bad}");
        }
        assert!(!format!("{:?}", "s3cret=admin".parse::<ApiKey>().unwrap()).contains("s3cret"));
    }

    #[test]
    fn keys_file_names_the_bad_line() {
        let ok = parse_keys_file("# ops\na=admin\n\n b=subscribe \n").unwrap();
        assert_eq!(ok.len(), 2);
        let err = parse_keys_file("a=admin\nb=nope\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }

    fn bearer(secret: &str) -> Presented<'_> {
        Presented {
            secret: Cow::Borrowed(secret),
            may_be_token: true,
        }
    }

    #[test]
    fn authorize_by_role() {
        let off = Keys::default();
        assert_eq!(
            off.authorize(None, Need::Role(Role::Admin)),
            Ok(Credential::Open)
        );
        let k = keys(&["a=admin", "p=publish", "p=subscribe"]);
        assert!(matches!(
            k.authorize(None, Need::AnyKey),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            k.authorize(Some(&bearer("nope")), Need::AnyKey),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(k
            .authorize(Some(&bearer("a")), Need::Role(Role::Admin))
            .is_ok());
        assert_eq!(
            k.authorize(Some(&bearer("a")), Need::Role(Role::Publish)),
            Err(Refusal::Forbidden(Role::Publish))
        );
        // Roles of a key configured twice add up.
        let g = k
            .authorize(Some(&bearer("p")), Need::Role(Role::Subscribe))
            .unwrap();
        assert!(g.allows(Role::Publish) && !g.allows(Role::Admin));
        assert!(k.authorize(None, Need::Open).is_ok());
    }

    #[test]
    fn credentials_come_from_headers_or_the_token_parameter() {
        let mut h = HeaderMap::new();
        let found = presented(&h, Some("a=1&token=k%2B1")).unwrap();
        assert_eq!((&*found, found.may_be_token), ("k+1", true));
        assert_eq!(presented(&h, None), None);
        h.insert("x-api-key", HeaderValue::from_static("x"));
        let found = presented(&h, None).unwrap();
        assert_eq!((&*found, found.may_be_token), ("x", false), "keys only");
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer  b "));
        assert_eq!(presented(&h, Some("token=t")).as_deref(), Some("b"));
    }

    #[test]
    fn origins_are_the_public_ones_never_the_host() {
        let addr: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut h = HeaderMap::new();
        let default = Origins::new(&[], &[], addr);
        assert!(default.permits(&h), "no Origin: not a browser");
        for own in [
            "http://127.0.0.1:4000",
            "http://localhost:4000/",
            "HTTP://LOCALHOST:4000",
        ] {
            h.insert(ORIGIN, HeaderValue::from_str(own).unwrap());
            assert!(default.permits(&h), "{own}");
        }
        // DNS rebinding: the page's own name as Host and Origin.
        h.insert(HOST, HeaderValue::from_static("evil.example:4000"));
        h.insert(ORIGIN, HeaderValue::from_static("http://evil.example:4000"));
        assert!(!default.permits(&h));
        assert!(!default.serves_host(&h), "a foreign name on loopback");
        h.insert(ORIGIN, HeaderValue::from_static("http://localhost:4001"));
        assert!(!default.permits(&h), "another port is another origin");
        h.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(!default.permits(&h));
        h.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(Origins::new(&[], &["https://Evil.example/".into()], addr).permits(&h));
        assert!(Origins::new(&[], &["*".into()], addr).permits(&h));
        let public = Origins::new(&["https://pubsub.example.com".into()], &[], addr);
        h.insert(
            ORIGIN,
            HeaderValue::from_static("https://pubsub.example.com:443"),
        );
        assert!(public.permits(&h), "default port");
        h.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:4000"));
        assert!(
            !public.permits(&h),
            "configured origins replace the default"
        );
    }

    #[test]
    fn hosts_on_loopback() {
        let loopback: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let o = Origins::new(&["https://pubsub.example.com".into()], &[], loopback);
        let with_host = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(HOST, HeaderValue::from_str(host).unwrap());
            h
        };
        for ok in [
            "127.0.0.1:4000",
            "localhost:4000",
            "LOCALHOST",
            "[::1]:4000",
            "pubsub.example.com",
            "10.0.0.2:80",
        ] {
            assert!(o.serves_host(&with_host(ok)), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:4000",
            "localhost.evil.example:4000",
            "[::1",
        ] {
            assert!(!o.serves_host(&with_host(bad)), "{bad}");
        }
        assert!(o.serves_host(&HeaderMap::new()), "no Host: not a browser");
        let public: std::net::SocketAddr = "0.0.0.0:4000".parse().unwrap();
        let any_host = Origins::new(&[], &[], public);
        assert!(
            any_host.serves_host(&with_host("evil.example")),
            "not on loopback"
        );
    }

    #[test]
    fn routes_need_what_they_were_declared_with() {
        use Need::*;
        let mut access = Access::default();
        access.declare(Method::GET, "/api/health", Open);
        access.declare(
            Method::GET,
            "/api/topics/{name}/messages",
            Role(super::Role::Subscribe),
        );
        access.declare(
            Method::POST,
            "/api/topics/{name}/messages",
            Role(super::Role::Publish),
        );
        access.declare(Method::GET, "/metrics", AnyKey);
        let need = |m: Method, route: Option<&str>, path: &str| access.need(&m, route, path);
        let messages = Some("/api/topics/{name}/messages");
        assert_eq!(
            need(Method::GET, Some("/api/health"), "/api/health"),
            Some(Open)
        );
        assert_eq!(
            need(Method::POST, messages, "/api/topics/a/messages"),
            Some(Role(super::Role::Publish))
        );
        assert_eq!(
            need(Method::GET, messages, "/api/topics/a/messages"),
            Some(Role(super::Role::Subscribe))
        );
        assert_eq!(
            need(Method::HEAD, messages, "/api/topics/a/messages"),
            Some(Role(super::Role::Subscribe)),
            "HEAD needs what GET needs"
        );
        assert_eq!(
            need(Method::PUT, messages, "/api/topics/a/messages"),
            Some(AnyKey),
            "405 after a key"
        );
        assert_eq!(
            need(Method::GET, Some("/metrics"), "/metrics"),
            Some(AnyKey)
        );
        assert_eq!(
            need(Method::GET, None, "/api/nope"),
            Some(AnyKey),
            "404 after a key"
        );
        assert_eq!(
            need(
                Method::GET,
                Some("/api/{*__private__axum_fallback}"),
                "/api/nope"
            ),
            Some(AnyKey)
        );
        assert_eq!(
            need(Method::GET, Some("/topics/{name}"), "/topics/a"),
            Some(Open),
            "pages"
        );
        assert_eq!(need(Method::GET, None, "/pkg/pubsub.wasm"), Some(Open));
        assert_eq!(
            need(Method::GET, Some("/api/forgotten"), "/api/forgotten"),
            None,
            "fails closed"
        );
    }
}
