//! Graceful shutdown under load: fresh subscribers and publishers at the
//! soak's rate, then SIGTERM while the publishers keep publishing.
//!
//! What can be checked, and how. The server's counters die with it, so
//! the check stands on what the clients saw and on the order the server
//! guarantees:
//!
//! - every connection gets `info shutting_down`, then a close frame 1001;
//! - a publish acked before SIGTERM was sent had been queued to every
//!   subscriber before shutdown began, hence before its `shutting_down`:
//!   with contiguous `seq`s (checked), every subscriber must have it;
//! - a publish acked after SIGTERM may reach a subscriber or not (its
//!   connection may have closed first); one that did not is counted
//!   dropped by the server, which cannot be read back after exit: the
//!   result gives the number, marked unverifiable;
//! - the process exits 0, within `--shutdown-timeout` of the signal;
//! - a new connection after SIGTERM is refused.

use super::ledger::{Checks, Errors};
use super::server::Server;
use super::session::Ended;
use super::{read_topics, spawn_publishers, spawn_subscribers, Config, Ctx, SoakArgs};
use serde::Serialize;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Debug, Default, Serialize)]
pub struct ShutdownResult {
    pub subscribers: usize,
    pub publishers: usize,
    pub publish_secs: f64,
    /// From SIGTERM to the process's exit.
    pub exit_ms: Option<f64>,
    pub exit_code: Option<i32>,
    pub exit: String,
    pub deadline_ms: f64,
    /// Clients that got `shutting_down` and then close 1001.
    pub clean_closes: usize,
    /// The others, by what they got instead.
    pub other_endings: BTreeMap<String, usize>,
    /// From SIGTERM to the last client's close.
    pub last_close_ms: f64,
    /// Publishes acked before SIGTERM, summed over topics.
    pub acked_before: u64,
    /// Of those, (subscriber, event) pairs not received: must be 0.
    pub missing_before: u64,
    /// Publishes acked after SIGTERM.
    pub acked_after: u64,
    /// Their (subscriber, event) pairs received, and not received (counted
    /// dropped by the server; unverifiable once it has exited).
    pub after_received: u64,
    pub after_not_received: u64,
    /// Events received after the connection's `shutting_down`.
    pub events_after_notice: u64,
    /// Events received whose publish was never acked (the publisher's
    /// connection closed first): allowed, for information.
    pub received_unacked: u64,
    /// A connection attempted right after SIGTERM.
    pub new_connection: String,
    pub checks: Checks,
    pub errors: Errors,
    pub failures: Vec<String>,
}

pub async fn run(
    server: &Server,
    soak: &Ctx,
    a: &SoakArgs,
    config: &Config,
    rate: f64,
    seed: u64,
) -> ShutdownResult {
    let mut r = ShutdownResult {
        subscribers: config.subscribers,
        publishers: config.publishers,
        publish_secs: a.shutdown_after.as_secs_f64(),
        deadline_ms: a.shutdown_timeout.as_secs_f64() * 1000.0,
        ..ShutdownResult::default()
    };
    let names: Vec<String> = soak
        .ledger
        .borrow()
        .topics
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let topics = match read_topics(a.addr, &names).await {
        Ok(t) => t,
        Err(e) => {
            r.failures.push(format!("reading the topics: {e}"));
            return r;
        }
    };
    // The soak's clients, without churn or slow readers: every one of them
    // must end by the server's hand.
    let ctx = Rc::new(Ctx {
        lifetime: None,
        max_reconnect_delay: Duration::ZERO,
        slow_percent: 0,
        expect_shutdown: true,
        seed: seed ^ 0x5348_5554,
        ..Ctx::for_soak(a, topics, seed)
    });
    let wanted = (config.subscribers * config.topics_per_subscriber) as u64;
    let mut tasks = spawn_subscribers(&ctx, config).await;
    let waiting = Instant::now();
    while ctx.ledger.borrow().checks.subscribes < wanted
        && waiting.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let subscribed = ctx.ledger.borrow().checks.subscribes;
    if subscribed < wanted {
        r.failures.push(format!(
            "only {subscribed} of {wanted} subscriptions acked before SIGTERM"
        ));
    }
    tasks.extend(spawn_publishers(&ctx, config, rate));
    tokio::time::sleep(a.shutdown_after).await;

    let acked_before: Vec<u64> = ctx
        .ledger
        .borrow()
        .topics
        .iter()
        .map(|t| t.acked_seq)
        .collect();
    let sigterm_at = ctx.ledger.borrow().now();
    let sent = match server.terminate() {
        Ok(at) => at,
        Err(e) => {
            r.failures.push(format!("SIGTERM: {e}"));
            return r;
        }
    };
    r.new_connection = try_new_connection(a.addr).await;
    let clients = config.subscribers + config.publishers;
    let limit = a.shutdown_timeout + Duration::from_secs(5);
    while ctx.endings.borrow().len() < clients && sent.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let exit = server
        .wait_exit(limit.saturating_sub(sent.elapsed()) + Duration::from_secs(5))
        .await;
    for t in tasks {
        t.abort();
    }
    if let Some(exit) = &exit {
        r.exit_ms = Some(exit.at.saturating_duration_since(sent).as_secs_f64() * 1000.0);
        r.exit_code = exit.code;
        r.exit = exit.describe.clone();
    } else {
        r.exit = "still running".into();
    }
    judge(&mut r, &ctx, &acked_before, sigterm_at, clients);
    r
}

/// Compares what each client saw with the acks and the order guarantees.
fn judge(r: &mut ShutdownResult, ctx: &Ctx, acked_before: &[u64], sigterm_at: f64, clients: usize) {
    let endings = ctx.endings.borrow();
    let mut ledger = ctx.ledger.borrow_mut();
    let acked_final: Vec<u64> = ledger.topics.iter().map(|t| t.acked_seq).collect();
    for (t, topic) in ledger.topics.iter().enumerate() {
        r.acked_before += acked_before[t] - topic.base.seq;
        r.acked_after += acked_final[t] - acked_before[t];
    }
    for e in endings.iter() {
        let clean =
            e.shutting_down_at.is_some() && matches!(e.ended, Some(Ended::Close(Some(1001), _)));
        if clean {
            r.clean_closes += 1;
        } else {
            let mut kind = e
                .ended
                .as_ref()
                .map(Ended::key)
                .unwrap_or_else(|| "no end".into());
            if e.shutting_down_at.is_none() {
                kind = format!("no shutting_down, {kind}");
            }
            let role = if e.publisher {
                "publisher"
            } else {
                "subscriber"
            };
            *r.other_endings
                .entry(format!("{role}: {kind}"))
                .or_default() += 1;
        }
        r.last_close_ms = r.last_close_ms.max((e.ended_at - sigterm_at) * 1000.0);
        r.events_after_notice += e.events_after_notice;
        if e.publisher {
            continue;
        }
        for &(t, last) in &e.last {
            r.missing_before += acked_before[t].saturating_sub(last);
            r.after_received += last.min(acked_final[t]).saturating_sub(acked_before[t]);
            r.after_not_received += acked_final[t].saturating_sub(last.max(acked_before[t]));
            r.received_unacked += last.saturating_sub(acked_final[t]);
        }
    }
    let unreported = clients.saturating_sub(endings.len());
    if unreported > 0 {
        r.other_endings
            .insert("not closed by the deadline".into(), unreported);
    }
    let f = &mut r.failures;
    if r.clean_closes < clients {
        f.push(format!(
            "{} of {clients} clients got shutting_down then close 1001 ({:?})",
            r.clean_closes, r.other_endings
        ));
    }
    if r.missing_before > 0 {
        f.push(format!(
            "{} events acked before SIGTERM never reached a subscriber",
            r.missing_before
        ));
    }
    match (r.exit_code, r.exit_ms) {
        (Some(0), Some(ms)) if ms <= r.deadline_ms => {}
        (Some(0), Some(ms)) => f.push(format!(
            "exit after {ms:.0} ms, over the {:.0} ms deadline",
            r.deadline_ms
        )),
        _ => f.push(format!("exit: {}", r.exit)),
    }
    if !r.new_connection.starts_with("refused") {
        f.push(format!("a connection after SIGTERM: {}", r.new_connection));
    }
    let c = &ledger.checks;
    for (what, n) in [
        ("gaps without a SLOW_CONSUMER notice", c.gaps_without_notice),
        ("events out of order", c.out_of_order),
    ] {
        if n > 0 {
            f.push(format!("{n} {what}"));
        }
    }
    if ledger.errors.total() > 0 {
        let errors = serde_json::to_value(&ledger.errors).unwrap_or_default();
        f.push(format!(
            "{} errors: {}",
            ledger.errors.total(),
            super::report::errors_line(&errors)
        ));
    }
    r.checks = std::mem::take(&mut ledger.checks);
    r.errors = std::mem::take(&mut ledger.errors);
}

/// A WebSocket upgrade right after SIGTERM: `refused (…)` is right.
async fn try_new_connection(addr: std::net::SocketAddr) -> String {
    let attempt = async {
        let mut s = crate::proto::connect(addr, None).await?;
        crate::ws::handshake(&mut s, &addr.to_string(), "/ws").await
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Ok(_)) => "accepted (101)".into(),
        Ok(Err(e)) => {
            let text = e.to_string();
            match text.strip_prefix("upgrade refused: ") {
                Some(status) => format!("refused ({})", status.lines().next().unwrap_or("")),
                None if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    "refused (connection refused)".into()
                }
                None => format!("refused ({text})"),
            }
        }
        Err(_) => "no answer within 2 s".into(),
    }
}
