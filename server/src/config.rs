//! Configuration: every knob is a flag and an environment variable, shown by
//! `pubsub-server --help` and tabled in the README.

use crate::broker::{BrokerConfig, SlowConsumerPolicy};
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;

/// A real-time pub/sub server: topics, history and fan-out over REST and
/// WebSocket, with a web UI at `/`.
#[derive(Debug, Clone, Parser)]
#[command(name = "pubsub-server", version, about)]
pub struct Config {
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

    /// What happens to a connection whose queue is full.
    #[arg(
        long,
        env = "PUBSUB_SLOW_CONSUMER_POLICY",
        value_enum,
        default_value = "drop_oldest"
    )]
    pub slow_consumer_policy: PolicyArg,

    /// Interval of the `info ping` heartbeat on every WebSocket (e.g. 30s, 500ms).
    #[arg(long, env = "PUBSUB_HEARTBEAT_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Largest serialized message payload, in bytes (PAYLOAD_TOO_LARGE above).
    #[arg(long, env = "PUBSUB_MAX_MESSAGE_BYTES", default_value_t = 65_536)]
    pub max_message_bytes: usize,

    /// Largest WebSocket frame or REST body, in bytes (WebSocket: close 1009; REST: 413).
    #[arg(long, env = "PUBSUB_MAX_FRAME_BYTES", default_value_t = 1_048_576)]
    pub max_frame_bytes: usize,

    /// On SIGINT/SIGTERM, how long to flush queued events before exiting.
    #[arg(long, env = "PUBSUB_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// `--slow-consumer-policy` values, spelled as in the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Discard the oldest queued events and send SLOW_CONSUMER with the count.
    #[value(name = "drop_oldest", alias = "drop-oldest")]
    DropOldest,
    /// Send SLOW_CONSUMER and close the connection with code 4008.
    #[value(name = "disconnect")]
    Disconnect,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{e} (try e.g. 30s or 500ms)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

impl Config {
    /// Defaults, as if no flag or variable were given (for tests).
    pub fn default_for_tests() -> Self {
        Config::parse_from(["pubsub-server", "--addr", "127.0.0.1:0"])
    }

    pub fn broker(&self) -> BrokerConfig {
        BrokerConfig {
            history_size: self.history_size,
            subscriber_queue: usize::try_from(self.subscriber_queue).unwrap_or(usize::MAX),
            slow_consumer_policy: match self.slow_consumer_policy {
                PolicyArg::DropOldest => SlowConsumerPolicy::DropOldest,
                PolicyArg::Disconnect => SlowConsumerPolicy::Disconnect,
            },
            max_message_bytes: self.max_message_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
