//! `pubsub`: script a pubsub-server from a shell.
//!
//! REST for topics and stats; `pub` and `sub` go through the client library
//! (`pubsub-client`): `pub` retries a publish under one id until the server
//! answers, `sub` follows a topic or pattern across reconnects and server
//! restarts and says on stderr whether each resume recovered everything.
//! Output is meant for pipes: `sub` prints each event as one JSON line on
//! stdout and notices on stderr.
//! Exit codes: 0 success, 1 the server refused (its error is printed),
//! 2 bad usage or the server cannot be reached. `token` mints a signed
//! token for development (see [`token`]).

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use protocol::client::{self, Client};
use protocol::{EventFrame, ServerFrame};
use pubsub_client::{
    Client as PubsubClient, CloseReason, Delivery, Missing, Receipt, Since, Start, SubscribeOptions,
};
use std::io::{BufRead, Write};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pubsub",
    version,
    about = "Command-line client for pubsub-server"
)]
struct Cli {
    /// The server's base URL.
    #[arg(
        long,
        short,
        env = "PUBSUB_SERVER",
        default_value = "http://127.0.0.1:4000",
        global = true
    )]
    server: String,
    /// API key or token, when the server requires one (sent as
    /// `Authorization: Bearer`, on the WebSocket upgrade too).
    #[arg(long, env = "PUBSUB_API_KEY", global = true, hide_env_values = true)]
    api_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List, create, show or delete topics.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Publish a JSON payload, or with `-` one payload per line of stdin
    /// (prints `{"seq","id"}` per message, and `"duplicate": true` when the
    /// server had the id already). Each message gets an id, and a publish
    /// that fails in transit or finds the server UNAVAILABLE is retried
    /// under that id (for up to 30 s), so it is stored once.
    Pub {
        topic: String,
        /// A JSON value, or `-` to read one per line from stdin.
        payload: String,
        /// The message id (single payload only; a UUID otherwise).
        #[arg(long)]
        id: Option<String>,
    },
    /// Subscribe to a topic or pattern and print every event as one JSON
    /// line. Follows across reconnects and server restarts, resuming where
    /// it left off; stderr says for each resume whether it recovered every
    /// message or which ones may be missing.
    Sub {
        /// A topic name or a pattern (`orders.*`, `orders.>`).
        topic: String,
        /// Replay the newest N messages from history first.
        #[arg(long)]
        last_n: Option<u64>,
        /// Resume after this seq (of --epoch, or of the topic's current epoch).
        #[arg(long)]
        since: Option<u64>,
        /// The epoch `--since` refers to.
        #[arg(long, requires = "since")]
        epoch: Option<String>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// The subscribe's `client_id` (presence).
        #[arg(long, default_value = "pubsub-cli")]
        client_id: String,
    },
    /// Print the topic's history as JSON lines, oldest first.
    History {
        topic: String,
        #[arg(long)]
        last_n: Option<u64>,
    },
    /// Print the server's stats as JSON.
    Stats,
    /// Exit 0 when the server answers /api/health with "ok" (for health checks).
    Health,
    /// Print a signed token (JWT, HS256) for a server started with the same
    /// --token-secret: for development, where a backend would mint them.
    Token(TokenArgs),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The server's --token-secret (at least 32 bytes).
    #[arg(long, env = "PUBSUB_TOKEN_SECRET", hide_env_values = true)]
    secret: String,
    /// The client id (`sub`).
    #[arg(long, default_value = "pubsub-cli")]
    sub: String,
    /// Roles, comma-separated: admin, publish, subscribe.
    #[arg(long, value_delimiter = ',', default_value = "publish,subscribe")]
    roles: Vec<String>,
    /// Limit publishing to this topic or pattern (repeatable; none: every topic).
    #[arg(long, value_name = "PATTERN")]
    publish: Vec<String>,
    /// Limit subscribing, history and presence to this topic or pattern
    /// (repeatable; none: every topic).
    #[arg(long, value_name = "PATTERN")]
    subscribe: Vec<String>,
    /// How long the token is valid (e.g. 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    ttl: std::time::Duration,
}

#[derive(Subcommand)]
enum TopicsAction {
    /// One line per topic: name, subscribers, messages, created_at (tab-separated).
    List {
        /// Print the server's JSON instead.
        #[arg(long)]
        json: bool,
    },
    Create {
        name: String,
    },
    Delete {
        name: String,
    },
    /// Print a topic's metadata as JSON.
    Show {
        name: String,
    },
}

/// Why a command failed: the server's refusal (exit 1) or anything else (exit 2).
enum Failure {
    Refused(String),
    Broken(String),
}

type Outcome = Result<(), Failure>;

/// Where `sub` starts, from its flags.
enum SubStart {
    Now,
    LastN(u64),
    /// A seq, and its epoch (the topic's current one when not given).
    Since(u64, Option<String>),
}

impl From<client::Error> for Failure {
    fn from(e: client::Error) -> Self {
        match e {
            client::Error::Refused { .. } => Failure::Refused(e.to_string()),
            client::Error::Transport(_) | client::Error::Body(_) => Failure::Broken(e.to_string()),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = Client::new(&cli.server).with_api_key(cli.api_key.clone());
    let mut library = PubsubClient::new(&cli.server);
    if let Some(key) = &cli.api_key {
        library = library.with_credential(key.clone());
    }
    let outcome = match cli.command {
        Command::Token(args) => token(&args).map(|t| println!("{t}")),
        Command::Topics { action } => topics(&client, action).await,
        Command::Pub { topic, payload, id } if payload == "-" => {
            if id.is_some() {
                Err(Failure::Broken(
                    "--id applies to a single payload, not to stdin".into(),
                ))
            } else {
                publish_lines(&library, &topic).await
            }
        }
        Command::Pub { topic, payload, id } => publish_one(&library, &topic, &payload, id).await,
        Command::Sub {
            topic,
            last_n,
            since,
            epoch,
            count,
            client_id,
        } => {
            // `since` wins over `last_n`, as in the contract.
            let start = match (since, last_n) {
                (Some(seq), _) => SubStart::Since(seq, epoch),
                (None, Some(n)) => SubStart::LastN(n),
                (None, None) => SubStart::Now,
            };
            subscribe(&library, &topic, start, client_id, count).await
        }
        Command::History { topic, last_n } => history(&client, &topic, last_n).await,
        Command::Stats => client
            .get::<serde_json::Value>("/api/stats")
            .await
            .map_err(Failure::from)
            .map(|v| println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())),
        Command::Health => client
            .get::<serde_json::Value>("/api/health")
            .await
            .map_err(Failure::from)
            .and_then(|v| {
                if v["status"] == "ok" {
                    println!("ok");
                    Ok(())
                } else {
                    Err(Failure::Refused(format!("unhealthy: {v}")))
                }
            }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(message)) => {
            eprintln!("pubsub: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Broken(message)) => {
            eprintln!("pubsub: {message}");
            ExitCode::from(2)
        }
    }
}

async fn topics(client: &Client, action: TopicsAction) -> Outcome {
    match action {
        TopicsAction::List { json } => {
            let list = client.topics().await?;
            let mut out = std::io::stdout().lock();
            if json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else {
                for t in list.topics {
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{}",
                        t.name, t.subscribers, t.messages, t.created_at
                    );
                }
            }
            Ok(())
        }
        TopicsAction::Create { name } => {
            client.create_topic(&name).await?;
            println!("created {name}");
            Ok(())
        }
        TopicsAction::Delete { name } => {
            client.delete_topic(&name).await?;
            println!("deleted {name}");
            Ok(())
        }
        TopicsAction::Show { name } => {
            let t = client.topic(&name).await?;
            println!("{}", serde_json::to_string_pretty(&t).unwrap_or_default());
            Ok(())
        }
    }
}

fn parse_payload(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not a JSON value ({e}): {text}"))
}

/// Prints a receipt as `{"seq","id"}`, plus `"duplicate": true` when the
/// server had the id already.
fn print_receipt(out: &mut impl Write, r: &Receipt) {
    let mut line = serde_json::json!({ "seq": r.seq, "id": r.id });
    if r.duplicate {
        line["duplicate"] = true.into();
    }
    let _ = writeln!(out, "{line}");
}

async fn publish_one(
    client: &PubsubClient,
    topic: &str,
    payload: &str,
    id: Option<String>,
) -> Outcome {
    let payload = parse_payload(payload).map_err(Failure::Broken)?;
    let receipt = client.publish(topic, payload, id).await?;
    print_receipt(&mut std::io::stdout(), &receipt);
    Ok(())
}

/// One payload per stdin line, each published as `pub` publishes one: with
/// an id of its own and retried under it, in order (one at a time, so a
/// retry never reorders lines).
async fn publish_lines(client: &PubsubClient, topic: &str) -> Outcome {
    // Read stdin on a blocking thread; publish as lines arrive.
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::channel::<String>(1024);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut refused: u64 = 0;
    let mut number: u64 = 0;
    let mut out = std::io::stdout();
    while let Some(line) = lines_rx.recv().await {
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let payload = match parse_payload(&line) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("pubsub: line {number} skipped: {e}");
                refused += 1;
                continue;
            }
        };
        match client.publish(topic, payload, None).await {
            Ok(receipt) => print_receipt(&mut out, &receipt),
            Err(e @ client::Error::Refused { .. }) => {
                eprintln!("pubsub: line {number}: {e}");
                refused += 1;
            }
            // Retried until the deadline: the server is gone.
            Err(e) => return Err(e.into()),
        }
    }
    if refused > 0 {
        Err(Failure::Refused(format!("{refused} line(s) not published")))
    } else {
        Ok(())
    }
}

/// Follows a topic or pattern across reconnects and server restarts: events
/// on stdout, one JSON line each (the `event` frame); on stderr, a line for
/// each reconnect saying whether it recovered everything, and what may be
/// missing when not.
async fn subscribe(
    client: &PubsubClient,
    topic: &str,
    start: SubStart,
    client_id: String,
    count: Option<u64>,
) -> Outcome {
    let start = match start {
        SubStart::Since(seq, epoch) => {
            if protocol::pattern::is_pattern(topic) {
                return Err(Failure::Broken(
                    "--since applies to a topic, not a pattern".into(),
                ));
            }
            let epoch = match epoch {
                Some(e) => e,
                None => client.rest().topic(topic).await?.epoch,
            };
            Start::Since(Since { seq, epoch })
        }
        SubStart::LastN(n) => Start::LastN(n),
        SubStart::Now => Start::Now,
    };
    let options = SubscribeOptions::new(topic)
        .start(start)
        .client_id(client_id);
    let mut sub = client.subscribe(options).await?;
    let ack = sub.ack();
    match &ack.topics {
        Some(topics) => eprintln!(
            "subscribed to {topic}: {} topic(s) match now, replaying {}",
            topics.len(),
            topics.values().map(|t| t.replayed).sum::<u64>()
        ),
        None => {
            let recovered = ack
                .recovered
                .map(|r| format!(", recovered: {r}"))
                .unwrap_or_default();
            eprintln!(
                "subscribed to {topic} at seq {} (epoch {}), replaying {}{recovered}",
                ack.seq.unwrap_or(0),
                ack.epoch.clone().unwrap_or_default(),
                ack.replayed.unwrap_or(0)
            );
        }
    }
    let mut out = std::io::stdout();
    let mut events = 0;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    while count.is_none_or(|c| events < c) {
        let delivery = tokio::select! {
            d = sub.next() => d,
            _ = &mut interrupted => break,
        };
        let Some(delivery) = delivery else { break };
        match delivery {
            Delivery::Event(e) => {
                events += 1;
                let frame = ServerFrame::Event(EventFrame {
                    topic: e.topic,
                    message: protocol::Message {
                        id: e.id,
                        payload: e.payload,
                    },
                    seq: e.seq,
                    ts: e.ts,
                });
                let line = serde_json::to_string(&frame).unwrap_or_default();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    break; // stdout closed (e.g. `| head`)
                }
            }
            resumed @ Delivery::Resumed { .. } => {
                eprintln!("pubsub: {}", describe_resume(&resumed))
            }
            Delivery::Gap {
                topic, first, last, ..
            } => eprintln!(
                "pubsub: GAP in {topic}: seq {first} to {last} ({} message(s)) not delivered",
                last - first + 1
            ),
            Delivery::SlowConsumer { topic, dropped } => {
                eprintln!("pubsub: SLOW_CONSUMER: {dropped} event(s) of {topic} dropped")
            }
            Delivery::TopicCreated { topic, epoch } => {
                eprintln!("pubsub: topic {topic} created (epoch {epoch})")
            }
            Delivery::TopicDeleted { topic } => eprintln!("pubsub: topic {topic} was deleted"),
            Delivery::Disconnected { reason } => {
                eprintln!("pubsub: disconnected: {reason}; reconnecting")
            }
            Delivery::Closed(CloseReason::Refused(e)) => return Err(e.into()),
            Delivery::Closed(CloseReason::Unsubscribed) => {
                return Err(Failure::Refused(format!(
                    "the server ended the subscription to {topic}"
                )))
            }
            Delivery::Closed(_) => return Ok(()),
        }
    }
    sub.close().await;
    Ok(())
}

/// The server refuses shorter HS256 secrets (RFC 7518 §3.2).
const MIN_SECRET_BYTES: usize = 32;

/// A token as `pubsub token` prints it: what the server would refuse
/// (an unknown role, a malformed pattern, a short secret) is refused here.
fn token(args: &TokenArgs) -> Result<String, Failure> {
    let bad = |message: String| Err(Failure::Broken(message));
    if args.secret.len() < MIN_SECRET_BYTES {
        return bad(format!(
            "the secret is {} bytes; the server needs at least {MIN_SECRET_BYTES}",
            args.secret.len()
        ));
    }
    if let Some(problem) = protocol::client_id_problem(&args.sub) {
        return bad(format!("--sub: {problem}"));
    }
    let roles: Vec<&str> = args
        .roles
        .iter()
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .collect();
    if let Some(role) = roles
        .iter()
        .find(|r| !["admin", "publish", "subscribe"].contains(r))
    {
        return bad(format!(
            "unknown role {role:?} (roles: admin, publish, subscribe)"
        ));
    }
    for pattern in args.publish.iter().chain(&args.subscribe) {
        if let Err(e) = protocol::pattern::Pattern::parse(pattern) {
            return bad(e);
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| Failure::Broken(e.to_string()))?
        .as_secs();
    let mut claims = serde_json::json!({
        "sub": args.sub,
        "iat": now,
        "exp": now.saturating_add(args.ttl.as_secs().max(1)),
        "roles": roles,
    });
    let mut topics = serde_json::Map::new();
    for (role, patterns) in [("publish", &args.publish), ("subscribe", &args.subscribe)] {
        if !patterns.is_empty() {
            topics.insert(role.into(), serde_json::json!(patterns));
        }
    }
    if !topics.is_empty() {
        claims["topics"] = topics.into();
    }
    let key = jsonwebtoken::EncodingKey::from_secret(args.secret.as_bytes())
        .map_err(|e| Failure::Broken(e.to_string()))?;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &key,
    )
    .map_err(|e| Failure::Broken(format!("cannot sign the token: {e}")))
}

/// The stderr line for a resume: recovered, or what may be missing.
fn describe_resume(resumed: &Delivery) -> String {
    let Delivery::Resumed {
        topic,
        recovered,
        after,
        now,
    } = resumed
    else {
        return String::new();
    };
    if *recovered {
        return format!(
            "resumed {topic} after seq {}: recovered, nothing missed",
            after.seq
        );
    }
    match resumed.missing() {
        Some(Missing::Range { first, last }) => format!(
            "resumed {topic} at seq {}: NOT recovered, {} message(s) may be missing (seq {first} to {last})",
            now.seq,
            (last + 1).saturating_sub(first)
        ),
        _ => {
            let new_ones = if now.seq > 0 {
                format!(" and seq 1 to {} of the new one", now.seq)
            } else {
                String::new()
            };
            format!(
                "resumed {topic}: NOT recovered, the topic was created again (epoch {}, was {}): \
                 messages after seq {} of the old epoch{new_ones} may be missing",
                now.epoch, after.epoch, after.seq
            )
        }
    }
}

async fn history(client: &Client, topic: &str, last_n: Option<u64>) -> Outcome {
    let query = last_n.map(|n| format!("last_n={n}")).unwrap_or_default();
    let page = client.history(topic, &query).await?;
    let mut out = std::io::stdout().lock();
    for m in page.messages {
        let _ = writeln!(out, "{}", serde_json::to_string(&m).unwrap_or_default());
    }
    Ok(())
}
