//! Signed, expiring tokens (JWT): what a backend hands a browser instead of
//! an API key, narrower (roles, and per role the topic patterns it may
//! touch) and short-lived.
//!
//! One algorithm is configured (`HS256` with a shared secret, `RS256` or
//! `ES256` with a public key) and only that one is accepted: a token whose
//! header names another (`none` included) is refused before any signature
//! is looked at. `exp` is required, `nbf` honoured, both without leeway:
//! the server's clock is the one that counts, and a token is valid for
//! exactly the span its issuer wrote.
//!
//! Verification is `jsonwebtoken`'s; what the claims mean is ours
//! ([`TokenGrant`]), and claims that do not make sense (an unknown role, a
//! malformed pattern, a `sub` that is no client id) make the whole token
//! malformed (401), never a token with less in it.

use super::{Grants, Role};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use protocol::pattern::Pattern;
use serde::Deserialize;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The shortest HS256 secret accepted: 256 bits, the hash's size
/// (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// The token algorithms the server can be configured with (the values of
/// `--token-algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenAlgorithm {
    /// HMAC with SHA-256 and a shared secret (`--token-secret`).
    #[value(name = "HS256", alias = "hs256")]
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256 and a public key (`--token-public-key`).
    #[value(name = "RS256", alias = "rs256")]
    Rs256,
    /// ECDSA on P-256 with SHA-256 and a public key (`--token-public-key`).
    #[value(name = "ES256", alias = "es256")]
    Es256,
}

impl TokenAlgorithm {
    fn jwt(self) -> Algorithm {
        match self {
            TokenAlgorithm::Hs256 => Algorithm::HS256,
            TokenAlgorithm::Rs256 => Algorithm::RS256,
            TokenAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// Verifies presented tokens: the configured algorithm and key.
#[derive(Clone)]
pub struct TokenVerifier {
    algorithm: TokenAlgorithm,
    key: DecodingKey,
    validation: Validation,
}

/// Never prints the key.
impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenVerifier({:?}, key ***)", self.algorithm)
    }
}

impl TokenVerifier {
    /// HS256 with a shared secret of at least [`MIN_SECRET_BYTES`].
    pub fn hs256(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the token secret is {} bytes; HS256 needs at least {MIN_SECRET_BYTES} (RFC 7518 §3.2)",
                secret.len()
            ));
        }
        let key = DecodingKey::from_secret(secret).map_err(|e| e.to_string())?;
        Ok(Self::with(TokenAlgorithm::Hs256, key))
    }

    /// RS256 or ES256 with a PEM public key. Without `algorithm`, the
    /// key's kind decides (an RSA key: RS256, a P-256 key: ES256).
    pub fn public_key(pem: &[u8], algorithm: Option<TokenAlgorithm>) -> Result<Self, String> {
        let rsa = DecodingKey::from_rsa_pem(pem);
        let ec = DecodingKey::from_ec_pem(pem).and_then(|key| {
            // The key's uncompressed point: 65 bytes on P-256 (97 on P-384,
            // which ES256 cannot verify with).
            match key.try_get_as_bytes() {
                Ok(point) if point.len() == 65 => Ok(key),
                _ => Err(ErrorKind::InvalidEcdsaKey.into()),
            }
        });
        match (algorithm, rsa, ec) {
            (Some(TokenAlgorithm::Hs256), _, _) => Err(
                "--token-algorithm HS256 takes a secret (--token-secret), not a public key".into(),
            ),
            (None | Some(TokenAlgorithm::Rs256), Ok(key), _) => {
                Ok(Self::with(TokenAlgorithm::Rs256, key))
            }
            (None | Some(TokenAlgorithm::Es256), _, Ok(key)) => {
                Ok(Self::with(TokenAlgorithm::Es256, key))
            }
            (Some(TokenAlgorithm::Rs256), Err(e), _) => {
                Err(format!("RS256 needs an RSA public key in PEM: {e}"))
            }
            (Some(TokenAlgorithm::Es256), _, Err(e)) => {
                Err(format!("ES256 needs a P-256 public key in PEM: {e}"))
            }
            (None, Err(_), Err(_)) => Err(
                "not a PEM public key for RS256 (RSA) or ES256 (P-256): expected -----BEGIN PUBLIC KEY-----"
                    .into(),
            ),
        }
    }

    fn with(algorithm: TokenAlgorithm, key: DecodingKey) -> Self {
        let mut validation = Validation::new(algorithm.jwt());
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Audiences are not part of the contract; one a token carries is
        // not checked (nor refused).
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenVerifier {
            algorithm,
            key,
            validation,
        }
    }

    pub fn algorithm(&self) -> TokenAlgorithm {
        self.algorithm
    }

    /// The grant of a valid token, or why it is not one (a message for the
    /// 401, saying what is wrong and never echoing the token).
    pub fn verify(&self, token: &str) -> Result<TokenGrant, String> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| self.why(e.kind()))?;
        TokenGrant::from_claims(data.claims).map_err(|e| format!("the token is malformed: {e}"))
    }

    fn why(&self, kind: &ErrorKind) -> String {
        match kind {
            ErrorKind::ExpiredSignature => "the token has expired".into(),
            ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
            ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
            ErrorKind::InvalidAlgorithm => format!(
                "the token is not signed with {:?}, the one algorithm this server accepts",
                self.validation.algorithms
            ),
            ErrorKind::MissingRequiredClaim(claim) => {
                format!("the token is malformed: the claim {claim:?} is required")
            }
            ErrorKind::InvalidClaimFormat(claim) => {
                format!("the token is malformed: the claim {claim:?} has the wrong type")
            }
            ErrorKind::Json(e) => format!("the token is malformed: {e}"),
            _ => "the token is malformed".into(),
        }
    }
}

/// Whether a presented credential has the shape of a JWT (three base64url
/// parts, the header and the claims not empty; an unsigned token has an
/// empty third): then, with tokens configured, it is verified as a token
/// and not looked up as a key.
pub fn looks_like_jwt(text: &str) -> bool {
    let base64url = |part: &str| {
        part.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let parts: Vec<&str> = text.splitn(4, '.').collect();
    matches!(parts.as_slice(), [header, claims, signature]
        if !header.is_empty() && !claims.is_empty()
            && base64url(header) && base64url(claims) && base64url(signature))
}

/// The claims read from a verified token; `exp`/`nbf` are checked by the
/// verifier.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    topics: Option<TopicClaims>,
}

/// `topics`: per role, the patterns it is limited to (absent: all).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicClaims {
    #[serde(default)]
    publish: Option<Vec<String>>,
    #[serde(default)]
    subscribe: Option<Vec<String>>,
}

/// What a valid token allows: its roles, and for `publish` and
/// `subscribe` the topic patterns they are limited to (`None`: every
/// topic), for client `sub` until `exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub sub: String,
    /// Unix seconds.
    pub exp: u64,
    pub(super) grants: Grants,
    pub(super) publish: Option<Vec<Pattern>>,
    pub(super) subscribe: Option<Vec<Pattern>>,
}

impl TokenGrant {
    fn from_claims(claims: Claims) -> Result<Self, String> {
        if let Some(problem) = protocol::client_id_problem(&claims.sub) {
            return Err(format!("sub: {problem}"));
        }
        let mut grants = Grants::default();
        for role in &claims.roles {
            let role: Role = role.parse()?;
            grants = grants.with(role);
        }
        let topics = claims.topics.unwrap_or(TopicClaims {
            publish: None,
            subscribe: None,
        });
        let patterns = |list: Option<Vec<String>>, role: &str| {
            list.map(|texts| {
                texts
                    .iter()
                    .map(|t| Pattern::parse(t).map_err(|e| format!("topics.{role}: {e}")))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
        };
        Ok(TokenGrant {
            sub: claims.sub,
            exp: claims.exp,
            grants,
            publish: patterns(topics.publish, "publish")?,
            subscribe: patterns(topics.subscribe, "subscribe")?,
        })
    }

    /// The patterns `role` is limited to, `None` for every topic (and for
    /// `admin`, which is not limited by topic).
    pub(super) fn patterns(&self, role: Role) -> Option<&[Pattern]> {
        match role {
            Role::Admin => None,
            Role::Publish => self.publish.as_deref(),
            Role::Subscribe => self.subscribe.as_deref(),
        }
    }

    /// When the token expires. An `exp` past the year 9999 (a signed but
    /// absurd token) counts as then, instead of overflowing the clock.
    pub fn expires_at(&self) -> SystemTime {
        const YEAR_9999: u64 = 253_402_300_799;
        UNIX_EPOCH + Duration::from_secs(self.exp.min(YEAR_9999))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"));
        assert!(looks_like_jwt("a.b."), "an unsigned token is still one");
        for key in [
            "s3cret",
            "a.b",
            "a.b.c.d",
            "a b.c.d",
            "YWJj==.x.y",
            "..",
            "",
        ] {
            assert!(!looks_like_jwt(key), "{key}");
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TokenVerifier::hs256(b"short").is_err());
        assert!(TokenVerifier::hs256(&[7; MIN_SECRET_BYTES]).is_ok());
    }

    #[test]
    fn claims_that_make_no_sense_are_malformed() {
        let claims = |v: serde_json::Value| serde_json::from_value::<Claims>(v).unwrap();
        let ok = TokenGrant::from_claims(claims(serde_json::json!({
            "sub": "c", "exp": 1, "roles": ["publish"],
            "topics": {"publish": ["orders.*"]}
        })))
        .unwrap();
        assert_eq!(ok.patterns(Role::Publish).map(<[_]>::len), Some(1));
        assert_eq!(ok.patterns(Role::Subscribe), None);
        for bad in [
            serde_json::json!({"sub": "c", "exp": 1, "roles": ["root"]}),
            serde_json::json!({"sub": "c", "exp": 1, "topics": {"publish": ["ord*"]}}),
            serde_json::json!({"sub": "", "exp": 1}),
        ] {
            assert!(
                TokenGrant::from_claims(claims(bad.clone())).is_err(),
                "{bad}"
            );
        }
        assert!(
            serde_json::from_value::<Claims>(
                serde_json::json!({"sub": "c", "exp": 1, "topics": {"admin": []}})
            )
            .is_err(),
            "an unknown role under topics"
        );
    }
}
