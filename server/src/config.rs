//! Configuration: every knob is a flag, an environment variable and a key of
//! the optional TOML file, with the precedence flag > env > file > default.
//! `pubsub-server --help` shows them; the README tables them.

use crate::auth::{self, ApiKey};
use crate::broker::{BrokerConfig, SlowConsumerPolicy};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use serde::{Deserialize, Serialize};
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

    /// Address to listen on (REST under /api, WebSocket at /ws, UI at /).
    #[arg(long, env = "PUBSUB_ADDR", default_value = "127.0.0.1:4000")]
    pub addr: SocketAddr,

    /// Messages kept per topic for replay (`last_n`, `since`, REST history).
    #[arg(long, env = "PUBSUB_HISTORY_SIZE", default_value_t = 100)]
    pub history_size: usize,

    /// Events queued per connection before the slow-consumer policy applies.
    #[arg(long, env = "PUBSUB_SUBSCRIBER_QUEUE", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub subscriber_queue: u64,

    /// Bytes of frames (events and replies) queued per connection before the
    /// slow-consumer policy applies; unread replies stop the connection's
    /// requests being read at half of it.
    #[arg(long, env = "PUBSUB_MAX_QUEUE_BYTES", default_value_t = 16 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queue_bytes: u64,

    /// Bytes of retained history over all topics: past it, the oldest
    /// messages of the topics holding the most bytes are evicted (a `since`
    /// into them is then `recovered: false`).
    #[arg(long, env = "PUBSUB_MAX_HISTORY_BYTES", default_value_t = 256 << 20)]
    pub max_history_bytes: u64,

    /// What happens to a connection whose queue is full.
    #[arg(
        long,
        env = "PUBSUB_SLOW_CONSUMER_POLICY",
        value_enum,
        default_value = "drop_oldest"
    )]
    pub slow_consumer_policy: PolicyArg,

    /// Interval of the `info ping` heartbeat and WebSocket ping on every idle
    /// WebSocket (e.g. 30s, 500ms); a peer silent for two intervals is closed.
    #[arg(long, env = "PUBSUB_HEARTBEAT_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Largest serialized message payload, in bytes (PAYLOAD_TOO_LARGE above).
    #[arg(long, env = "PUBSUB_MAX_MESSAGE_BYTES", default_value_t = 65_536)]
    pub max_message_bytes: usize,

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

    /// Subscriptions per WebSocket connection (RATE_LIMITED above).
    #[arg(long, env = "PUBSUB_MAX_SUBSCRIPTIONS", default_value_t = 1_024)]
    pub max_subscriptions: usize,

    /// Topics on this server (RATE_LIMITED above).
    #[arg(long, env = "PUBSUB_MAX_TOPICS", default_value_t = 10_000)]
    pub max_topics: usize,

    /// Publishes per second per WebSocket connection, a token bucket
    /// (RATE_LIMITED when empty); 0 turns the limit off.
    #[arg(long, env = "PUBSUB_PUBLISH_RATE", default_value_t = 10_000)]
    pub publish_rate: u32,

    /// Publishes a connection may burst above the rate; 0 means one
    /// second's worth (the rate).
    #[arg(long, env = "PUBSUB_PUBLISH_BURST", default_value_t = 0)]
    pub publish_burst: u32,

    /// Largest REST request body, in bytes (413 PAYLOAD_TOO_LARGE above).
    #[arg(long, env = "PUBSUB_MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,

    /// Cluster mode: the NATS server (with JetStream) that several instances
    /// share, e.g. `nats://127.0.0.1:4222`. Topics, `seq` and history then
    /// live in NATS and every instance serves them all. Without it (the
    /// default) everything stays in this process.
    #[arg(long, env = "PUBSUB_CLUSTER_NATS", value_name = "URL")]
    pub cluster_nats: Option<String>,
}

/// `--slow-consumer-policy` values, spelled as in the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum PolicyArg {
    /// Discard the oldest queued events and send SLOW_CONSUMER with the count.
    #[value(name = "drop_oldest", alias = "drop-oldest")]
    #[serde(rename = "drop_oldest", alias = "drop-oldest")]
    DropOldest,
    /// Send SLOW_CONSUMER and close the connection with code 4008.
    #[value(name = "disconnect")]
    #[serde(rename = "disconnect")]
    Disconnect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// The configuration file: every key optional, unknown keys refused.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_queue: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queue_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_history_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_consumer_policy: Option<PolicyArg>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_frame_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_topic_limit: Option<usize>,
    /// Never printed by --print-config (secrets); read from a file.
    #[serde(skip_serializing)]
    pub api_keys: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_origins: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_http_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_subscriptions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_topics: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_nats: Option<String>,
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
        let matches = Config::command().try_get_matches_from(args)?;
        let mut config = Config::from_arg_matches(&matches)?;
        if let Some(path) = config.config.clone() {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            config.apply_file(&path, &text, &matches)?;
        }
        if let Some(path) = config.api_keys_file.clone() {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let keys = auth::parse_keys_file(&text)
                .map_err(|message| ConfigError::File { path, message })?;
            config.api_keys.extend(keys);
        }
        Ok(config)
    }

    /// Takes each key of the file whose setting came from a default, not
    /// from a flag or the environment.
    fn apply_file(
        &mut self,
        path: &Path,
        text: &str,
        matches: &ArgMatches,
    ) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::File {
            path: path.to_owned(),
            message,
        };
        let file: FileConfig =
            toml::from_str(text).map_err(|e| bad(e.to_string().trim().to_owned()))?;
        let defaulted = |id: &str| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::DefaultValue) | None
            )
        };
        macro_rules! take {
            ($key:ident) => {
                if let Some(v) = file.$key {
                    if defaulted(stringify!($key)) {
                        self.$key = v;
                    }
                }
            };
        }
        take!(addr);
        take!(history_size);
        take!(slow_consumer_policy);
        take!(max_message_bytes);
        take!(max_frame_bytes);
        take!(log_format);
        take!(metrics_topic_limit);
        if file.api_keys_file.is_some() && defaulted("api_keys_file") {
            self.api_keys_file = file.api_keys_file;
        }
        take!(max_history_bytes);
        take!(public_origins);
        take!(allowed_origins);
        take!(max_connections);
        take!(max_http_connections);
        take!(max_subscriptions);
        take!(max_topics);
        take!(publish_rate);
        take!(publish_burst);
        take!(max_body_bytes);
        if file.cluster_nats.is_some() && defaulted("cluster_nats") {
            self.cluster_nats = file.cluster_nats;
        }
        if let Some(specs) = file.api_keys {
            let keys = specs
                .iter()
                .map(|spec| spec.parse())
                .collect::<Result<Vec<ApiKey>, String>>()
                .map_err(|e| bad(format!("api_keys: {e}")))?;
            if defaulted("api_keys") {
                self.api_keys = keys;
            }
        }
        if let Some(q) = file.max_queue_bytes {
            if q == 0 {
                return Err(bad("max_queue_bytes: must be at least 1".into()));
            }
            if defaulted("max_queue_bytes") {
                self.max_queue_bytes = q;
            }
        }
        if let Some(q) = file.subscriber_queue {
            if q == 0 {
                return Err(bad("subscriber_queue: must be at least 1".into()));
            }
            if defaulted("subscriber_queue") {
                self.subscriber_queue = q;
            }
        }
        for (key, text, slot) in [
            (
                "heartbeat_interval",
                &file.heartbeat_interval,
                &mut self.heartbeat_interval,
            ),
            (
                "shutdown_timeout",
                &file.shutdown_timeout,
                &mut self.shutdown_timeout,
            ),
            (
                "header_read_timeout",
                &file.header_read_timeout,
                &mut self.header_read_timeout,
            ),
        ] {
            if let Some(text) = text {
                let d = parse_duration(text).map_err(|e| bad(format!("{key}: {e}")))?;
                if defaulted(key) {
                    *slot = d;
                }
            }
        }
        Ok(())
    }

    /// The effective settings as a TOML file would hold them.
    pub fn to_toml(&self) -> String {
        let file = FileConfig {
            addr: Some(self.addr),
            history_size: Some(self.history_size),
            subscriber_queue: Some(self.subscriber_queue),
            max_queue_bytes: Some(self.max_queue_bytes),
            max_history_bytes: Some(self.max_history_bytes),
            slow_consumer_policy: Some(self.slow_consumer_policy),
            heartbeat_interval: Some(
                humantime::format_duration(self.heartbeat_interval).to_string(),
            ),
            max_message_bytes: Some(self.max_message_bytes),
            max_frame_bytes: Some(self.max_frame_bytes),
            shutdown_timeout: Some(humantime::format_duration(self.shutdown_timeout).to_string()),
            log_format: Some(self.log_format),
            metrics_topic_limit: Some(self.metrics_topic_limit),
            api_keys: None,
            api_keys_file: self.api_keys_file.clone(),
            public_origins: Some(self.public_origins.clone()),
            allowed_origins: Some(self.allowed_origins.clone()),
            max_connections: Some(self.max_connections),
            max_http_connections: Some(self.max_http_connections),
            header_read_timeout: Some(
                humantime::format_duration(self.header_read_timeout).to_string(),
            ),
            max_subscriptions: Some(self.max_subscriptions),
            max_topics: Some(self.max_topics),
            publish_rate: Some(self.publish_rate),
            publish_burst: Some(self.publish_burst),
            max_body_bytes: Some(self.max_body_bytes),
            cluster_nats: self.cluster_nats.clone(),
        };
        let text = toml::to_string(&file).unwrap_or_default();
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
    pub fn default_for_tests() -> Self {
        Config::parse_from(["pubsub-server", "--addr", "127.0.0.1:0"])
    }

    pub fn broker(&self) -> BrokerConfig {
        BrokerConfig {
            history_size: self.history_size,
            subscriber_queue: usize::try_from(self.subscriber_queue).unwrap_or(usize::MAX),
            max_queue_bytes: usize::try_from(self.max_queue_bytes).unwrap_or(usize::MAX),
            max_history_bytes: usize::try_from(self.max_history_bytes).unwrap_or(usize::MAX),
            slow_consumer_policy: match self.slow_consumer_policy {
                PolicyArg::DropOldest => SlowConsumerPolicy::DropOldest,
                PolicyArg::Disconnect => SlowConsumerPolicy::Disconnect,
            },
            max_message_bytes: self.max_message_bytes,
            max_topics: self.max_topics,
            max_subscriptions: self.max_subscriptions,
            publish_rate: self.publish_rate,
            publish_burst: if self.publish_burst == 0 {
                self.publish_rate
            } else {
                self.publish_burst
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            c.broker().slow_consumer_policy,
            SlowConsumerPolicy::Disconnect
        );
        assert_eq!(c.heartbeat_interval, Duration::from_millis(250));
        assert_eq!(c.broker().subscriber_queue, 8);
        assert!(Config::try_parse_from(["x", "--subscriber-queue", "0"]).is_err());
        assert!(Config::try_parse_from(["x", "--heartbeat-interval", "0s"]).is_err());
        assert!(Config::try_parse_from(["x", "--slow-consumer-policy", "nope"]).is_err());
    }

    #[test]
    fn the_file_fills_in_what_flags_leave_at_default() {
        let f = file("history_size = 7\nheartbeat_interval = \"2s\"\nslow_consumer_policy = \"disconnect\"\nsubscriber_queue = 9\n");
        let path = f.path().to_str().unwrap();
        let c = Config::load_from(["x", "--config", path, "--subscriber-queue", "3"]).unwrap();
        assert_eq!(c.history_size, 7, "from the file");
        assert_eq!(c.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(c.slow_consumer_policy, PolicyArg::Disconnect);
        assert_eq!(c.subscriber_queue, 3, "the flag wins over the file");
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
        let c = Config::parse_from([
            "x",
            "--history-size",
            "42",
            "--heartbeat-interval",
            "1m 30s",
            "--log-format",
            "json",
        ]);
        let f = file(&c.to_toml());
        let back = Config::load_from(["x", "--config", f.path().to_str().unwrap()]).unwrap();
        assert_eq!(back.to_toml(), c.to_toml());
        assert_eq!(back.heartbeat_interval, Duration::from_secs(90));
    }
}
