//! Wildcard subscriptions: a pattern is a `.`-separated topic name in which
//! a token is `*` (exactly one token, possibly empty) or the last token is
//! `>` (one or more tokens): `orders.*`, `orders.*.paid`, `orders.>`, `>`.
//!
//! Topic names never contain `*` or `>`, so a `topic` field is a pattern
//! exactly when it contains one of them ([`is_pattern`]).

use crate::MAX_TOPIC_NAME_LEN;

/// One token of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// This text exactly (maybe empty: names allow `a..b`).
    Literal(String),
    /// `*`: any one token.
    One,
    /// `>`, last: one or more tokens.
    Rest,
}

/// A parsed pattern; [`Pattern::matches`] is what a subscription follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    tokens: Vec<Token>,
}

/// Whether a `topic` field is a pattern rather than a name.
pub fn is_pattern(topic: &str) -> bool {
    topic.contains(['*', '>'])
}

impl Pattern {
    /// Parses a pattern; the error says, for people, what is wrong.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("pattern must not be empty".into());
        }
        if text.len() > MAX_TOPIC_NAME_LEN {
            return Err(format!(
                "pattern is {} characters long; at most {MAX_TOPIC_NAME_LEN} are allowed",
                text.chars().count()
            ));
        }
        let parts: Vec<&str> = text.split('.').collect();
        let last = parts.len() - 1;
        let mut tokens = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let token = match *part {
                "*" => Token::One,
                ">" if i == last => Token::Rest,
                ">" => return Err(format!("pattern {text:?}: `>` may only be the last token")),
                literal => {
                    if literal.contains(['*', '>']) {
                        return Err(format!(
                            "pattern {text:?}: the token {literal:?} mixes a wildcard with other characters; `*` and `>` stand alone between dots"
                        ));
                    }
                    if let Some(bad) = literal
                        .chars()
                        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
                    {
                        return Err(format!(
                            "pattern {text:?} contains {bad:?}; only A-Z a-z 0-9 . _ - and the wildcards * and > are allowed"
                        ));
                    }
                    Token::Literal(literal.to_owned())
                }
            };
            tokens.push(token);
        }
        Ok(Pattern {
            text: text.to_owned(),
            tokens,
        })
    }

    /// The pattern as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the topic `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = name.split('.');
        for token in &self.tokens {
            match token {
                Token::Rest => return parts.next().is_some(),
                Token::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Token::Literal(literal) => {
                    if parts.next() != Some(literal.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        Pattern::parse(text).unwrap()
    }

    #[test]
    fn star_is_one_token_and_may_be_empty() {
        let star = p("orders.*");
        assert!(star.matches("orders.eu"));
        assert!(star.matches("orders."), "an empty token");
        assert!(!star.matches("orders"));
        assert!(!star.matches("orders.eu.paid"));
        assert!(!star.matches("ordersx.eu"));
        assert!(p("orders.*.paid").matches("orders.eu.paid"));
        assert!(!p("orders.*.paid").matches("orders.eu.open"));
        assert!(p("*").matches("anything") && !p("*").matches("a.b"));
        assert!(p("a..*").matches("a..b"), "empty literal tokens");
    }

    #[test]
    fn rest_is_one_or_more_tokens() {
        let rest = p("orders.>");
        assert!(rest.matches("orders.eu"));
        assert!(rest.matches("orders.eu.paid"));
        assert!(!rest.matches("orders"));
        assert!(p(">").matches("a") && p(">").matches("a.b.c"));
        assert!(p("*.>").matches("a.b") && !p("*.>").matches("a"));
    }

    #[test]
    fn malformed_patterns_are_refused_with_a_reason() {
        for bad in [
            "", "ord*", "a.>b", "a.>.b", ">.a", "a.b*", "a b.*", "a.*/", "**",
        ] {
            let err = Pattern::parse(bad).expect_err(bad);
            assert!(!err.is_empty());
        }
        assert!(Pattern::parse(&format!("{}.*", "a".repeat(300))).is_err());
    }

    #[test]
    fn names_are_never_patterns() {
        assert!(is_pattern("a.*") && is_pattern(">") && !is_pattern("a.b-c_d"));
    }
}
