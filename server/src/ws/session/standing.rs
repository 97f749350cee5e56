//! What a connection authenticated with, for as long as it is open: the
//! credential each request is checked against, the configured credentials
//! a `refresh` is verified with, and, for a token, the timer of its
//! expiry.
//!
//! A token connection is closed when its token expires (`info
//! token_expired`, close 4401) unless a `refresh` brought a newer token for
//! the same `sub` first. A key does not expire, and a connection opened
//! with a key cannot switch to a token: a key has no `sub` to hold the
//! token to, and a connection's identity does not change while it is open.

use crate::auth::{Credential, Keys, Refusal, Role};
use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::{sleep_until, Instant, Sleep};

pub struct Standing {
    credential: Credential,
    keys: Arc<Keys>,
    /// When a token's connection ends: made for tokens only, and boxed,
    /// since a timer is large and every connection's future holds this.
    expiry: Option<Pin<Box<Sleep>>>,
}

/// What a `refresh` changed.
pub(super) enum Refreshed {
    /// No token configuration: nothing.
    Nothing,
    /// The connection holds the new token now.
    Token,
}

impl Standing {
    /// A connection with authentication off: everything allowed, nothing
    /// expires (tests and the fuzz harness).
    pub fn open() -> Self {
        Standing::new(Credential::Open, Arc::default())
    }

    pub(crate) fn new(credential: Credential, keys: Arc<Keys>) -> Self {
        let mut standing = Standing {
            credential,
            keys,
            expiry: None,
        };
        standing.arm();
        standing
    }

    /// Sets the expiry timer to the credential's expiry.
    fn arm(&mut self) {
        let Some(remaining) = self.credential.remaining() else {
            self.expiry = None;
            return;
        };
        let at = Instant::now() + remaining;
        match &mut self.expiry {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.expiry = Some(Box::pin(sleep_until(at))),
        }
    }

    pub(crate) fn credential(&self) -> &Credential {
        &self.credential
    }

    /// [`Credential::may`] with the connection's current credential.
    pub(super) fn may(&self, role: Role, topic: &str) -> Result<(), Refusal> {
        self.credential.may(role, topic)
    }

    /// Whether the credential has expired (checked before each request,
    /// as the timer may not have been polled yet).
    pub(super) fn has_expired(&self) -> bool {
        self.expiry.as_ref().is_some_and(|t| t.is_elapsed())
            || self.credential.remaining().is_some_and(|r| r.is_zero())
    }

    /// Waits until the credential expires; forever if it does not.
    pub(super) async fn expired(&mut self) {
        match &mut self.expiry {
            Some(sleep) => sleep.as_mut().await,
            None => std::future::pending().await,
        }
    }

    /// Verifies `token` and makes it the connection's credential. A token
    /// for another `sub`, or one on a connection opened with a key, is
    /// refused (403); a token that is not valid is a 401. Either way the
    /// connection keeps what it had.
    pub(super) fn refresh(&mut self, token: &str) -> Result<Refreshed, Refusal> {
        let Some(tokens) = self.keys.tokens() else {
            return Ok(Refreshed::Nothing);
        };
        let grant = tokens
            .verify(token)
            .map_err(|why| Refusal::Unauthorized(Cow::Owned(why)))?;
        match &self.credential {
            Credential::Token(held) if held.sub == grant.sub => {}
            Credential::Token(held) => {
                return Err(Refusal::Denied(format!(
                    "the new token is for sub {:?}, this connection's is {:?}",
                    grant.sub, held.sub
                )))
            }
            _ => {
                return Err(Refusal::Denied(
                    "this connection authenticated with an API key, which does not expire; \
                     a refresh replaces a token"
                        .into(),
                ))
            }
        }
        self.credential = Credential::Token(Arc::new(grant));
        self.arm();
        Ok(Refreshed::Token)
    }
}
