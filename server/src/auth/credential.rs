//! What a request or a connection authenticated with, and the one check of
//! an operation on a topic against it: [`Credential::may`].
//!
//! The guard decides what a route needs (a role); the handlers, which know
//! the topic, ask [`Credential::may`] per topic (a token may be limited to
//! some), and so does the WebSocket session per request. Keys hold roles
//! on every topic; tokens hold roles and, per role, the topic patterns they
//! are limited to.

use super::token::TokenGrant;
use super::{Grants, Refusal, Role};
use protocol::pattern::{is_pattern, Pattern};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What a request or a connection authenticated with. The guard puts it in
/// the request's extensions; handlers take it as an extractor (a request
/// the guard did not mark is allowed nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Authentication is off: everything is allowed.
    Open,
    /// An API key: its roles, on every topic.
    Key(Grants),
    /// A verified token.
    Token(Arc<TokenGrant>),
}

impl Credential {
    /// Nothing at all (an open route's request, when authentication is on).
    pub const NONE: Credential = Credential::Key(Grants(0));

    /// Whether it holds `role` (on some topic at least).
    pub fn allows(&self, role: Role) -> bool {
        match self {
            Credential::Open => true,
            Credential::Key(grants) => grants.allows(role),
            Credential::Token(token) => token.grants.allows(role),
        }
    }

    /// Whether it may do what `role` is for on `topic`, a topic name or a
    /// pattern (subscribing to a pattern needs a claim pattern that covers
    /// it: every topic it matches). The refusal is a 403 that names the
    /// topic and the claim. A name or pattern that is not valid at all is
    /// not refused here: the operation answers it BAD_REQUEST, as it would
    /// for a key (every operation checks the name, so nothing is reached
    /// through it).
    pub fn may(&self, role: Role, topic: &str) -> Result<(), Refusal> {
        if !self.allows(role) {
            return Err(Refusal::Forbidden(role));
        }
        let Credential::Token(token) = self else {
            return Ok(());
        };
        let Some(claims) = token.patterns(role) else {
            return Ok(());
        };
        let malformed = if is_pattern(topic) {
            Pattern::parse(topic).is_err()
        } else {
            protocol::topic_name_problem(topic).is_some()
        };
        if malformed {
            return Ok(());
        }
        let allowed = if is_pattern(topic) {
            Pattern::parse(topic).is_ok_and(|asked| claims.iter().any(|c| c.covers(&asked)))
        } else {
            claims.iter().any(|c| c.matches(topic))
        };
        if allowed {
            Ok(())
        } else {
            Err(Refusal::OutOfScope {
                role,
                topic: topic.to_owned(),
                claim: claims.iter().map(|p| p.as_str().to_owned()).collect(),
            })
        }
    }

    /// The token's `sub` (the client id of a token's connection).
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Credential::Token(token) => Some(&token.sub),
            _ => None,
        }
    }

    /// When the credential stops being valid (tokens only).
    pub fn expires_at(&self) -> Option<SystemTime> {
        match self {
            Credential::Token(token) => Some(token.expires_at()),
            _ => None,
        }
    }

    /// How long it stays valid from now (zero once expired); `None` for
    /// what does not expire. An SSE stream or a WebSocket ends when it
    /// runs out.
    pub fn remaining(&self) -> Option<Duration> {
        self.expires_at().map(|at| {
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        })
    }
}

/// Handlers take the request's credential as an argument. A request the
/// guard did not mark (a route declared open) is allowed nothing.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Credential {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Credential>()
            .cloned()
            .unwrap_or(Credential::NONE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(roles: &[Role], publish: Option<&[&str]>, subscribe: Option<&[&str]>) -> Credential {
        let patterns = |list: Option<&[&str]>| {
            list.map(|l| l.iter().map(|p| Pattern::parse(p).unwrap()).collect())
        };
        Credential::Token(Arc::new(TokenGrant {
            sub: "c".into(),
            exp: u64::MAX / 2,
            grants: roles.iter().fold(Grants::default(), |g, r| g.with(*r)),
            publish: patterns(publish),
            subscribe: patterns(subscribe),
        }))
    }

    #[test]
    fn keys_hold_roles_on_every_topic() {
        let key = Credential::Key(Grants::default().with(Role::Publish));
        assert!(key.may(Role::Publish, "anything").is_ok());
        assert_eq!(
            key.may(Role::Subscribe, "a"),
            Err(Refusal::Forbidden(Role::Subscribe))
        );
        assert!(Credential::Open.may(Role::Admin, "a").is_ok());
        assert!(Credential::NONE.may(Role::Subscribe, "a").is_err());
        assert_eq!(key.remaining(), None);
    }

    #[test]
    fn tokens_are_limited_per_role() {
        use Role::*;
        let t = token(
            &[Publish, Subscribe],
            Some(&["orders.*"]),
            Some(&["orders.*"]),
        );
        assert!(t.may(Publish, "orders.eu").is_ok());
        assert!(t.may(Subscribe, "orders.eu").is_ok());
        assert!(t.may(Subscribe, "orders.*").is_ok());
        let refused = t.may(Subscribe, "orders.>").unwrap_err();
        assert!(matches!(refused, Refusal::OutOfScope { .. }));
        let message = refused.message();
        assert!(
            message.contains("orders.>") && message.contains("orders.*"),
            "{message}"
        );
        assert!(t.may(Publish, "users.x").is_err());
        // Malformed: not refused here; every operation answers it
        // BAD_REQUEST, as it would for a key.
        assert!(t.may(Subscribe, "ord*").is_ok());
        assert!(t.may(Publish, "bad name").is_ok());
        assert_eq!(t.may(Admin, "orders.eu"), Err(Refusal::Forbidden(Admin)));
        // A role's absent list: every topic; an empty one: none.
        let t = token(&[Publish, Subscribe], Some(&[]), None);
        assert!(t.may(Subscribe, ">").is_ok());
        assert!(t.may(Publish, "orders.eu").is_err());
        assert_eq!(t.client_id(), Some("c"));
    }
}
