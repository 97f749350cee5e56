//! `pubsub`: script a pubsub-server from a shell.
//!
//! REST for topics, stats and single publishes; one WebSocket for `sub` and
//! for publishing stdin line by line. Output is meant for pipes: `sub`
//! prints each event as one JSON line on stdout and notices on stderr.
//! Exit codes: 0 success, 1 the server refused (its error is printed),
//! 2 bad usage or the server cannot be reached. `token` mints a signed
//! token for development (see [`token`]).

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use protocol::client::{self, Client};
use protocol::{ClientFrame, ErrorCode, PublishMessage, ServerFrame, Since};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use tokio_tungstenite::tungstenite::Message;

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
    /// (prints `{"seq","id"}` per message).
    Pub {
        topic: String,
        /// A JSON value, or `-` to read one per line from stdin.
        payload: String,
        /// The message id (single payload only; assigned by the server otherwise).
        #[arg(long)]
        id: Option<String>,
    },
    /// Subscribe and print every event as one JSON line.
    Sub {
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
    let outcome = match cli.command {
        Command::Token(args) => token(&args).map(|t| println!("{t}")),
        Command::Topics { action } => topics(&client, action).await,
        Command::Pub { topic, payload, id } if payload == "-" => {
            if id.is_some() {
                Err(Failure::Broken(
                    "--id applies to a single payload, not to stdin".into(),
                ))
            } else {
                publish_lines(&client, &topic).await
            }
        }
        Command::Pub { topic, payload, id } => publish_one(&client, &topic, &payload, id).await,
        Command::Sub {
            topic,
            last_n,
            since,
            epoch,
            count,
        } => subscribe(&client, &topic, last_n, since, epoch, count).await,
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

async fn publish_one(client: &Client, topic: &str, payload: &str, id: Option<String>) -> Outcome {
    let payload = parse_payload(payload).map_err(Failure::Broken)?;
    let message = PublishMessage { id, payload };
    let p = client.publish(topic, &message).await?;
    println!("{}", serde_json::json!({ "seq": p.seq, "id": p.id }));
    Ok(())
}

/// One payload per stdin line over one WebSocket, pipelined: requests are
/// numbered and each ack is printed as it comes.
async fn publish_lines(client: &Client, topic: &str) -> Outcome {
    let ws = client.websocket().await?;
    let (mut sink, mut stream) = ws.split();
    // Read stdin on a blocking thread; send as lines arrive.
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::channel::<String>(1024);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut sent: u64 = 0;
    let mut answered: u64 = 0;
    let mut refused: u64 = 0;
    let mut input_done = false;
    let mut out = std::io::stdout();
    while !(input_done && answered == sent) {
        tokio::select! {
            line = lines_rx.recv(), if !input_done => match line {
                None => input_done = true,
                Some(line) if line.trim().is_empty() => {}
                Some(line) => match parse_payload(&line) {
                    Err(e) => {
                        eprintln!("pubsub: line skipped: {e}");
                        refused += 1;
                    }
                    Ok(payload) => {
                        sent += 1;
                        let frame = ClientFrame::Publish {
                            topic: topic.to_owned(),
                            message: PublishMessage { id: None, payload },
                            request_id: Some(sent.to_string()),
                        };
                        let text = serde_json::to_string(&frame).unwrap_or_default();
                        sink.send(Message::text(text)).await.map_err(|e| Failure::Broken(format!("send failed: {e}")))?;
                    }
                },
            },
            frame = stream.next() => {
                let Some(Ok(Message::Text(text))) = frame else {
                    if matches!(frame, Some(Ok(_))) { continue; }
                    return Err(Failure::Broken("the server closed the connection".into()));
                };
                match serde_json::from_str::<ServerFrame>(text.as_str()) {
                    Ok(ServerFrame::Ack(ack)) => {
                        answered += 1;
                        let _ = writeln!(out, "{}", serde_json::json!({ "seq": ack.seq, "id": ack.id }));
                    }
                    Ok(ServerFrame::Error(e)) => {
                        answered += 1;
                        refused += 1;
                        eprintln!("pubsub: line {}: {}: {}", e.request_id.unwrap_or_default(), e.error.code, e.error.message);
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = sink.close().await;
    if refused > 0 {
        Err(Failure::Refused(format!("{refused} line(s) not published")))
    } else {
        Ok(())
    }
}

async fn subscribe(
    client: &Client,
    topic: &str,
    last_n: Option<u64>,
    since: Option<u64>,
    epoch: Option<String>,
    count: Option<u64>,
) -> Outcome {
    let since = match (since, epoch) {
        (Some(seq), Some(epoch)) => Some(Since { seq, epoch }),
        (Some(seq), None) => {
            let t = client.topic(topic).await?;
            Some(Since {
                seq,
                epoch: t.epoch,
            })
        }
        (None, _) => None,
    };
    let mut ws = client.websocket().await?;
    let frame = ClientFrame::Subscribe {
        topic: topic.to_owned(),
        client_id: Some("pubsub-cli".into()),
        last_n,
        since: since.map(protocol::SinceArg::Topic),
        presence_events: false,
        request_id: Some("sub".into()),
    };
    ws.send(Message::text(
        serde_json::to_string(&frame).unwrap_or_default(),
    ))
    .await
    .map_err(|e| Failure::Broken(format!("send failed: {e}")))?;
    let mut out = std::io::stdout();
    let mut events = 0;
    while count.is_none_or(|c| events < c) {
        let Some(frame) = ws.next().await else {
            return Err(Failure::Broken("the server closed the connection".into()));
        };
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(close)) => {
                let why = close
                    .map(|c| format!("{} {}", u16::from(c.code), c.reason))
                    .unwrap_or_default();
                return Err(Failure::Broken(format!(
                    "the server closed the connection {why}"
                )));
            }
            Ok(_) => continue,
            Err(e) => return Err(Failure::Broken(format!("connection failed: {e}"))),
        };
        match serde_json::from_str::<ServerFrame>(text.as_str()) {
            Ok(ServerFrame::Event(_)) => {
                events += 1;
                if writeln!(out, "{}", text.as_str())
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    return Ok(()); // stdout closed (e.g. `| head`)
                }
            }
            Ok(ServerFrame::Ack(ack)) if ack.request_id.as_deref() == Some("sub") => {
                let recovered = ack
                    .recovered
                    .map(|r| format!(", recovered: {r}"))
                    .unwrap_or_default();
                eprintln!(
                    "subscribed to {topic} at seq {} (epoch {}), replaying {}{recovered}",
                    ack.seq.unwrap_or(0),
                    ack.epoch.unwrap_or_default(),
                    ack.replayed.unwrap_or(0)
                );
            }
            Ok(ServerFrame::Error(e)) if e.error.code == ErrorCode::SlowConsumer => {
                eprintln!(
                    "pubsub: SLOW_CONSUMER: {} event(s) dropped",
                    e.dropped.unwrap_or(0)
                );
            }
            Ok(ServerFrame::Error(e)) => {
                return Err(Failure::Refused(format!(
                    "{}: {}",
                    e.error.code, e.error.message
                )))
            }
            Ok(ServerFrame::Info(info)) if info.msg == protocol::InfoKind::TopicDeleted => {
                eprintln!("pubsub: topic {topic} was deleted");
                return Ok(());
            }
            _ => {}
        }
    }
    let _ = ws.close(None).await;
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

async fn history(client: &Client, topic: &str, last_n: Option<u64>) -> Outcome {
    let query = last_n.map(|n| format!("last_n={n}")).unwrap_or_default();
    let page = client.history(topic, &query).await?;
    let mut out = std::io::stdout().lock();
    for m in page.messages {
        let _ = writeln!(out, "{}", serde_json::to_string(&m).unwrap_or_default());
    }
    Ok(())
}
