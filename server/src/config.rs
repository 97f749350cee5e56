//! Configuration: every knob is declared once, as a flag of [`Config`] (its
//! doc comment is the `--help` text), and is also an environment variable
//! and a key of the optional TOML file, with the precedence flag > env >
//! file > default. The file's keys are the flags' ids read by the flags'
//! own parsers ([`file_args`]), `--print-config` prints what the final parse
//! holds, and a test holds the README's table to the flags.

use crate::auth::{self, ApiKey, TokenAlgorithm, TokenVerifier};
use crate::broker::BrokerConfig;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A real-time pub/sub server: topics, history and fan-out over REST and
/// WebSocket, with a web UI at `/`.
#[derive(Debug, Clone, Parser)]
#[command(name = "pubsub-server", version, about)]
pub struct Config {
    /// TOML file with any of the settings below (keys as in --print-config).
    /// Flags and environment variables override it.
    #[arg(long, env = "PUBSUB_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,

    /// The broker's knobs (declared in [`BrokerConfig`]).
    #[command(flatten)]
    pub broker: BrokerConfig,

    /// Address to listen on (REST under /api, WebSocket at /ws, UI at /).
    #[arg(long, env = "PUBSUB_ADDR", default_value = "127.0.0.1:4000")]
    pub addr: SocketAddr,

    /// Interval of the `info ping` heartbeat and WebSocket ping on every idle
    /// WebSocket (e.g. 30s, 500ms); a peer silent for two intervals is closed.
    #[arg(long, env = "PUBSUB_HEARTBEAT_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Largest WebSocket frame (or message of several frames), in bytes:
    /// a bigger one closes the connection with 1009.
    #[arg(long, env = "PUBSUB_MAX_FRAME_BYTES", default_value_t = 1_048_576)]
    pub max_frame_bytes: usize,

    /// On SIGINT/SIGTERM, how long to flush queued events before exiting.
    #[arg(long, env = "PUBSUB_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log format on stderr: `human` or `json` (one object per line).
    /// The level is set with RUST_LOG (default `info`).
    #[arg(long, env = "PUBSUB_LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,

    /// Topics given their own series in /metrics (the busiest by messages);
    /// the others are summed under `topic="(other)"`.
    #[arg(long, env = "PUBSUB_METRICS_TOPIC_LIMIT", default_value_t = 100)]
    pub metrics_topic_limit: usize,

    /// An API key and its roles (admin, publish, subscribe); repeatable.
    /// Authentication is on as soon as one key is configured. The variable
    /// holds several separated by `;`: `KEY=admin;KEY2=publish,subscribe`.
    #[arg(
        long = "api-key",
        env = "PUBSUB_API_KEYS",
        value_name = "KEY=ROLE[,ROLE...]",
        value_delimiter = ';',
        hide_env_values = true
    )]
    pub api_keys: Vec<ApiKey>,

    /// A file of API keys, one `KEY=ROLE[,ROLE...]` per line (`#` comments);
    /// its keys are accepted besides those of --api-key.
    #[arg(long, env = "PUBSUB_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Accept signed tokens (JWT, HS256) made with this shared secret (at
    /// least 32 bytes) besides API keys; turns authentication on. Not with
    /// --token-public-key.
    #[arg(
        long,
        env = "PUBSUB_TOKEN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub token_secret: Option<String>,

    /// A file holding the HS256 token secret (a trailing newline is not
    /// part of it), instead of --token-secret.
    #[arg(long, env = "PUBSUB_TOKEN_SECRET_FILE", value_name = "FILE")]
    pub token_secret_file: Option<PathBuf>,

    /// Accept tokens signed with the private half of this PEM public key
    /// (`-----BEGIN PUBLIC KEY-----`): RS256 for an RSA key, ES256 for a
    /// P-256 key. Turns authentication on. Not with a token secret.
    #[arg(long, env = "PUBSUB_TOKEN_PUBLIC_KEY", value_name = "FILE")]
    pub token_public_key: Option<PathBuf>,

    /// The one token algorithm accepted: HS256, RS256 or ES256. Default:
    /// HS256 with a secret, else the public key's kind. Tokens signed with
    /// any other (`none` included) are refused.
    #[arg(long, env = "PUBSUB_TOKEN_ALGORITHM", value_enum)]
    pub token_algorithm: Option<TokenAlgorithm>,

    /// The token verifier the settings above make (built by
    /// [`Config::load_from`]), if any.
    #[arg(skip)]
    pub tokens: Option<TokenVerifier>,

    /// The origin browsers reach this server at (`https://pubsub.example.com`),
    /// repeatable: its pages may open WebSockets and change state, and on a
    /// loopback address only requests whose `Host` is one of these names are
    /// served (DNS rebinding). Default: `http://ADDR` of --addr, plus
    /// `http://localhost:PORT` when it is a loopback address.
    #[arg(
        long = "public-origin",
        env = "PUBSUB_PUBLIC_ORIGINS",
        value_delimiter = ','
    )]
    pub public_origins: Vec<String>,

    /// A further browser origin (`https://app.example.com`) allowed to open
    /// WebSockets and send state-changing REST requests; repeatable, `*` for
    /// any. The public origins are always allowed.
    #[arg(
        long = "allowed-origin",
        env = "PUBSUB_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Open WebSocket connections; one more is refused with 429 RATE_LIMITED.
    #[arg(long, env = "PUBSUB_MAX_CONNECTIONS", default_value_t = 65_536)]
    pub max_connections: usize,

    /// Open plain HTTP connections (REST, UI, upgrade requests not yet
    /// upgraded); one more is answered 429 RATE_LIMITED and closed.
    #[arg(long, env = "PUBSUB_MAX_HTTP_CONNECTIONS", default_value_t = 1_024)]
    pub max_http_connections: usize,

    /// Time a client has to send a whole request head, and how long an idle
    /// keep-alive connection waits for the next one; also how long a
    /// response may go without the client taking any byte of it.
    #[arg(long, env = "PUBSUB_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Largest REST request body, in bytes (413 PAYLOAD_TOO_LARGE above).
    #[arg(long, env = "PUBSUB_MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,

    /// Messages in one batch publish (`POST /api/publish`); more is
    /// 400 BAD_REQUEST and nothing is published.
    #[arg(long, env = "PUBSUB_MAX_BATCH", default_value_t = 1_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_batch: usize,

    /// Cluster mode: the NATS server (with JetStream) that several instances
    /// share, e.g. `nats://127.0.0.1:4222`. Topics, `seq` and history then
    /// live in NATS and every instance serves them all. Without it (the
    /// default) everything stays in this process.
    #[arg(long, env = "PUBSUB_CLUSTER_NATS", value_name = "URL")]
    pub cluster_nats: Option<String>,

    /// Cluster mode: this node's name (1 to 64 of A-Z a-z 0-9 - _), shown
    /// beside its connections and presence entries, since connection ids
    /// are per node. Default: the host name and a random suffix.
    #[arg(long, env = "PUBSUB_NODE_NAME")]
    pub node_name: Option<String>,

    /// Each setting's effective value as text, as it was given or
    /// defaulted, in declaration order (for --print-config).
    #[arg(skip)]
    effective: Vec<Effective>,
}

/// One setting as the final parse holds it.
#[derive(Debug, Clone, Default)]
struct Effective {
    id: String,
    values: Vec<String>,
    /// A flag given once per value (`--api-key`, `--public-origin`): an
    /// array in the file, even when empty.
    repeatable: bool,
}

/// Arguments that are not settings: they are not in the file and not
/// printed.
const NOT_SETTINGS: [&str; 4] = ["config", "print_config", "help", "version"];
/// Settings that are never printed (secrets).
const SECRET: [&str; 2] = ["api_keys", "token_secret"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{e} (try e.g. 30s or 500ms)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// A configuration that cannot be used, with the key or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Args(#[from] clap::Error),
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("token configuration: {0}")]
    Tokens(String),
}

/// The flags a config file stands for: each key is the id of a setting's
/// flag and its value is read by that flag's parser, so the file has no
/// declaration of its own and says exactly what the flags say (errors
/// included, with the key in front). Only keys whose setting neither a flag
/// nor the environment gave are returned (flag > env > file > default);
/// every key is checked all the same.
fn file_args(
    path: &Path,
    text: &str,
    matches: &ArgMatches,
) -> Result<Vec<std::ffi::OsString>, ConfigError> {
    let bad = |message: String| ConfigError::File {
        path: path.to_owned(),
        message,
    };
    let table: toml::Table =
        toml::from_str(text).map_err(|e| bad(e.to_string().trim().to_owned()))?;
    let command = Config::command();
    let mut out = Vec::new();
    for (key, value) in &table {
        let arg = command
            .get_arguments()
            .find(|a| a.get_id() == key.as_str() && !NOT_SETTINGS.contains(&key.as_str()))
            .ok_or_else(|| bad(format!("unknown key `{key}`")))?;
        let long = arg
            .get_long()
            .ok_or_else(|| bad(format!("unknown key `{key}`")))?;
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(n) => Ok(n.to_string()),
            toml::Value::Float(x) => Ok(x.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(bad(format!(
                "{key}: expected a value, found {}",
                other.type_str()
            ))),
        };
        let values = match value {
            toml::Value::Array(items) => items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?,
            one => vec![scalar(one)?],
        };
        let mut flags: Vec<std::ffi::OsString> = Vec::new();
        for v in &values {
            flags.push(format!("--{long}").into());
            flags.push(v.into());
        }
        // Checked alone, so the error is this key's.
        let mut check = vec![std::ffi::OsString::from("pubsub-server")];
        check.extend(flags.iter().cloned());
        Config::command().try_get_matches_from(check).map_err(|e| {
            let e = e.to_string();
            let why = e.lines().next().unwrap_or("").trim_start_matches("error: ");
            bad(format!("{key}: {why}"))
        })?;
        let defaulted = matches!(
            matches.value_source(key),
            Some(ValueSource::DefaultValue) | None
        );
        if defaulted {
            out.extend(flags);
        }
    }
    Ok(out)
}

/// Every setting's value as text, from the final parse.
fn effective(matches: &ArgMatches) -> Vec<Effective> {
    Config::command()
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !NOT_SETTINGS.contains(&a.get_id().as_str()))
        .map(|a| {
            let id = a.get_id().as_str().to_owned();
            let values = matches
                .get_raw(&id)
                .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            Effective {
                id,
                values,
                repeatable: matches!(a.get_action(), clap::ArgAction::Append),
            }
        })
        .collect()
}

impl Config {
    /// Flags and environment of this process, then the file they name.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_from(std::env::args_os())
    }

    pub fn load_from<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let mut matches = Config::command().try_get_matches_from(&args)?;
        if let Some(path) = matches.get_one::<PathBuf>("config").cloned() {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            args.extend(file_args(&path, &text, &matches)?);
            matches = Config::command().try_get_matches_from(&args)?;
        }
        let mut config = Config::from_arg_matches(&matches)?;
        config.effective = effective(&matches);
        if let Some(path) = config.api_keys_file.clone() {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let keys = auth::parse_keys_file(&text)
                .map_err(|message| ConfigError::File { path, message })?;
            config.api_keys.extend(keys);
        }
        config.tokens = config.token_verifier()?;
        if config.tokens.is_some() && config.api_keys.iter().any(auth::ApiKey::is_jwt_shaped) {
            return Err(ConfigError::Tokens(
                "an API key has the shape of a token (three base64url parts joined by dots): \
                 with token verification on it would be read as a token and never work as a key; \
                 choose another key"
                    .into(),
            ));
        }
        Ok(config)
    }

    /// The token verifier the token settings ask for, reading the files
    /// they name; refuses combinations that cannot be meant.
    fn token_verifier(&self) -> Result<Option<TokenVerifier>, ConfigError> {
        let bad = |message: &str| Err(ConfigError::Tokens(message.to_owned()));
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })
        };
        let secret = match (&self.token_secret, &self.token_secret_file) {
            (Some(_), Some(_)) => {
                return bad("give the secret once: --token-secret or --token-secret-file, not both")
            }
            (Some(secret), None) => Some(secret.as_bytes().to_vec()),
            (None, Some(path)) => {
                let mut secret = read(path)?;
                while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    secret.pop();
                }
                Some(secret)
            }
            (None, None) => None,
        };
        let verifier = match (secret, &self.token_public_key, self.token_algorithm) {
            (Some(_), Some(_), _) => return bad(
                "a token secret (HS256) and --token-public-key (RS256/ES256) exclude each other: \
                     the server accepts one algorithm",
            ),
            (Some(_), None, Some(TokenAlgorithm::Rs256 | TokenAlgorithm::Es256)) => {
                return bad("RS256 and ES256 verify with --token-public-key, not a secret")
            }
            (Some(secret), None, _) => TokenVerifier::hs256(&secret),
            (None, Some(path), algorithm) => TokenVerifier::public_key(&read(path)?, algorithm)
                .map_err(|e| format!("{}: {e}", path.display())),
            (None, None, Some(_)) => return bad(
                "--token-algorithm needs --token-secret, --token-secret-file or --token-public-key",
            ),
            (None, None, None) => return Ok(None),
        };
        verifier.map(Some).map_err(ConfigError::Tokens)
    }

    /// The effective settings as a TOML file would hold them: every setting
    /// the flags declare, under its flag's id, but the secrets.
    pub fn to_toml(&self) -> String {
        let mut table = toml::Table::new();
        for setting in &self.effective {
            if SECRET.contains(&setting.id.as_str()) {
                continue;
            }
            let value = |v: &String| match v.parse::<i64>() {
                Ok(n) => toml::Value::Integer(n),
                Err(_) => toml::Value::String(v.clone()),
            };
            let value = match (setting.values.as_slice(), setting.repeatable) {
                ([], false) => continue,
                ([one], false) => value(one),
                (many, _) => toml::Value::Array(many.iter().map(value).collect()),
            };
            table.insert(setting.id.clone(), value);
        }
        let text = toml::to_string(&table).unwrap_or_default();
        if self.api_keys.is_empty() {
            text
        } else {
            format!(
                "# {} API key(s) configured; keys are never printed.\n{text}",
                self.api_keys.len()
            )
        }
    }

    /// Defaults, as if no flag or variable were given (for tests).
    /// `--node-name`, or the host name and a random suffix.
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            let host: String = host
                .trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                .take(40)
                .collect();
            let suffix = &crate::broker::log::new_epoch()[..6];
            if host.is_empty() {
                format!("node-{suffix}")
            } else {
                format!("{host}-{suffix}")
            }
        })
    }

    pub fn default_for_tests() -> Self {
        Config::load_from(["pubsub-server", "--addr", "127.0.0.1:0"])
            .expect("the defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::SlowConsumerPolicy;

    #[test]
    fn the_brokers_defaults_are_its_flags_defaults() {
        let parsed = Config::load_from(["x"]).expect("the defaults parse");
        assert_eq!(
            format!("{:?}", parsed.broker),
            format!("{:?}", BrokerConfig::default())
        );
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn flags_parse() {
        let c = Config::parse_from([
            "x",
            "--addr",
            "0.0.0.0:9",
            "--slow-consumer-policy",
            "disconnect",
            "--heartbeat-interval",
            "250ms",
            "--subscriber-queue",
            "8",
        ]);
        assert_eq!(c.addr.port(), 9);
        assert_eq!(
            c.broker.slow_consumer_policy,
            SlowConsumerPolicy::Disconnect
        );
        assert_eq!(c.heartbeat_interval, Duration::from_millis(250));
        assert_eq!(c.broker.subscriber_queue, 8);
        assert!(Config::try_parse_from(["x", "--subscriber-queue", "0"]).is_err());
        assert!(Config::try_parse_from(["x", "--heartbeat-interval", "0s"]).is_err());
        assert!(Config::try_parse_from(["x", "--slow-consumer-policy", "nope"]).is_err());
    }

    #[test]
    fn the_file_fills_in_what_flags_leave_at_default() {
        let f = file("history_size = 7\nheartbeat_interval = \"2s\"\nslow_consumer_policy = \"disconnect\"\nsubscriber_queue = 9\n");
        let path = f.path().to_str().unwrap();
        let c = Config::load_from(["x", "--config", path, "--subscriber-queue", "3"]).unwrap();
        assert_eq!(c.broker.history_size, 7, "from the file");
        assert_eq!(c.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(
            c.broker.slow_consumer_policy,
            crate::broker::SlowConsumerPolicy::Disconnect
        );
        assert_eq!(c.broker.subscriber_queue, 3, "the flag wins over the file");
        assert_eq!(c.max_frame_bytes, 1_048_576, "default where neither says");
    }

    #[test]
    fn bad_files_name_the_key() {
        for (text, key) in [
            ("histroy_size = 3", "histroy_size"),
            ("history_size = \"lots\"", "history_size"),
            ("heartbeat_interval = \"soon\"", "heartbeat_interval"),
            ("subscriber_queue = 0", "subscriber_queue"),
            ("slow_consumer_policy = \"maybe\"", "slow_consumer_policy"),
            ("addr = 5", "addr"),
        ] {
            let f = file(text);
            let err = Config::load_from(["x", "--config", f.path().to_str().unwrap()])
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{text:?} -> {err}");
        }
        let err = Config::load_from(["x", "--config", "/nonexistent/pubsub.toml"]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pubsub.toml"));
    }

    /// Every flag is in the README's table with its variable, and every
    /// file key --print-config writes is a flag's name.
    #[test]
    fn the_readme_lists_every_knob() {
        let readme = include_str!("../../README.md");
        let command = Config::command();
        let mut flags = Vec::new();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version"].contains(&long) {
                continue;
            }
            flags.push(arg.get_id().as_str().to_owned());
            assert!(
                readme.contains(&format!("| `--{long}`")),
                "README lacks --{long}"
            );
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                assert!(readme.contains(&format!("`{env}`")), "README lacks {env}");
            }
        }
        let printed = Config::default_for_tests().to_toml();
        for line in printed.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap_or_default();
            assert!(flags.iter().any(|f| f == key), "file key {key} is no flag");
        }
    }

    #[test]
    fn printed_config_reads_back_the_same() {
        let c = Config::load_from([
            "x",
            "--history-size",
            "42",
            "--heartbeat-interval",
            "1m 30s",
            "--log-format",
            "json",
            "--allowed-origin",
            "https://a.example",
            "--allowed-origin",
            "https://b.example",
        ])
        .unwrap();
        let printed = c.to_toml();
        assert!(printed.contains("history_size = 42"), "{printed}");
        assert!(
            printed.contains("heartbeat_interval = \"1m 30s\""),
            "{printed}"
        );
        assert!(printed.contains("public_origins = []"), "{printed}");
        assert!(
            printed.contains(r#"allowed_origins = ["https://a.example", "https://b.example"]"#),
            "{printed}"
        );
        let f = file(&printed);
        let back = Config::load_from(["x", "--config", f.path().to_str().unwrap()]).unwrap();
        assert_eq!(back.to_toml(), c.to_toml());
        assert_eq!(back.heartbeat_interval, Duration::from_secs(90));
    }
}
