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

    /// Whether every topic `other` can match is matched by `self`: a
    /// token's claim pattern `self` allows a subscription to `other`.
    /// A topic name is a pattern without wildcards, so this also answers
    /// for names (then it is [`Pattern::matches`]).
    ///
    /// Token by token: a `>` of `self` covers whatever `other` has from
    /// there on (one token or more, which `other` always has if it has a
    /// token there); a `>` of `other` is covered only by a `>`; a `*` only
    /// by a `*` (it stands for infinitely many names); a literal by the
    /// same literal or a `*`. Otherwise both must end together. The length
    /// limit of names is ignored, which can only make this answer `false`
    /// where a bounded check would say `true`: it never allows more.
    pub fn covers(&self, other: &Pattern) -> bool {
        let mut theirs = other.tokens.iter();
        for mine in &self.tokens {
            let Some(their) = theirs.next() else {
                return false;
            };
            let covered = match (mine, their) {
                (Token::Rest, _) => return true,
                (_, Token::Rest) => false,
                (Token::One, _) => true,
                (Token::Literal(_), Token::One) => false,
                (Token::Literal(a), Token::Literal(b)) => a == b,
            };
            if !covered {
                return false;
            }
        }
        theirs.next().is_none()
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
    fn covers_examples() {
        let covers = |a: &str, b: &str| p(a).covers(&p(b));
        assert!(covers("orders.*", "orders.eu"));
        assert!(covers("orders.*", "orders.*"));
        assert!(!covers("orders.*", "orders.>"), "orders.eu.paid");
        assert!(covers("orders.>", "orders.*"));
        assert!(covers("orders.>", "orders.*.paid"));
        assert!(covers("orders.>", "orders.>"));
        assert!(!covers("orders.>", "orders"));
        assert!(!covers("orders.eu", "orders.*"));
        assert!(covers(">", "*") && covers(">", "a.>") && !covers("*", ">"));
        assert!(!covers("orders.*.paid", "orders.*"));
        assert!(!covers("users.*", "orders.eu"));
    }

    /// `covers` against its definition, exhaustively: every pattern of up
    /// to three tokens over a small alphabet (with the empty token and
    /// both wildcards), every pair, checked on every name of up to four
    /// tokens over that alphabet and one letter no pattern names (which
    /// stands for all the others). Two patterns of at most three tokens
    /// that differ on some name differ on one of at most four tokens.
    #[test]
    fn covers_is_inclusion_of_the_names_matched() {
        let letters = ["a", "b", ""];
        let mut patterns: Vec<Vec<&str>> = Vec::new();
        let mut prefixes: Vec<Vec<&str>> = vec![Vec::new()];
        for _ in 0..3 {
            let mut longer = Vec::new();
            for prefix in &prefixes {
                for last in letters.iter().chain(&["*", ">"]) {
                    let mut tokens = prefix.clone();
                    tokens.push(*last);
                    patterns.push(tokens);
                }
                for next in letters.iter().chain(&["*"]) {
                    let mut tokens = prefix.clone();
                    tokens.push(*next);
                    longer.push(tokens);
                }
            }
            prefixes = longer;
        }
        let patterns: Vec<Pattern> = patterns
            .iter()
            .filter_map(|tokens| Pattern::parse(&tokens.join(".")).ok())
            .collect();
        let mut names: Vec<String> = Vec::new();
        let mut level: Vec<Vec<&str>> = vec![Vec::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for prefix in &level {
                for t in ["a", "b", "", "c"] {
                    let mut tokens = prefix.clone();
                    tokens.push(t);
                    names.push(tokens.join("."));
                    next.push(tokens);
                }
            }
            level = next;
        }
        names.retain(|n| !n.is_empty());
        let mut checked = 0;
        for claim in &patterns {
            let matched: Vec<bool> = names.iter().map(|n| claim.matches(n)).collect();
            for asked in &patterns {
                let by_names = names
                    .iter()
                    .zip(&matched)
                    .all(|(n, in_claim)| *in_claim || !asked.matches(n));
                assert_eq!(
                    claim.covers(asked),
                    by_names,
                    "{:?} covers {:?}",
                    claim.as_str(),
                    asked.as_str()
                );
                checked += 1;
            }
        }
        assert!(checked > 10_000, "{checked} pairs");
    }

    #[test]
    fn names_are_never_patterns() {
        assert!(is_pattern("a.*") && is_pattern(">") && !is_pattern("a.b-c_d"));
    }
}
