//! The soak's section of BENCHMARKS.md, from its result line (the newest
//! one in `soak-results.jsonl`). Read as JSON values, so an older line with
//! fewer fields still renders.

use serde_json::Value;
use std::fmt::Write;

fn n(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// A number with thousands separators.
pub fn int(v: &Value) -> String {
    let s = format!("{:.0}", n(v));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && c != '-' && (s.len() - i).is_multiple_of(3) && !(i == 1 && s.starts_with('-')) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(v: &Value) -> String {
    format!("{:.1} MiB", n(v) / 1_048_576.0)
}

/// `close 12, reset 3` from a JSON object of counts.
fn counts(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, c)| format!("{k} {}", int(c)))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "none".into(),
    }
}

/// The errors of a result, by kind, in one line ("0" when none).
pub fn errors_line(e: &Value) -> String {
    let mut parts = Vec::new();
    for (label, key) in [
        ("error frames", "error_frames"),
        ("unexpected closes", "unexpected_closes"),
        ("HTTP/upgrade failures", "http"),
        ("unexpected frames", "unexpected_frames"),
    ] {
        if e[key].as_object().is_some_and(|m| !m.is_empty()) {
            parts.push(format!("{label}: {}", counts(&e[key])));
        }
    }
    if n(&e["malformed"]) > 0.0 {
        parts.push(format!("malformed frames: {}", int(&e["malformed"])));
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join("; ")
    }
}

/// The section, in Markdown.
pub fn section(r: &Value) -> String {
    let mut md = String::new();
    let c = &r["config"];
    let k = &r["checks"];
    let m = &r["memory"];
    let inv = &r["invariant"];
    let _ = writeln!(md, "\n## Soak and chaos (issue 5): correctness over time\n");
    let _ = writeln!(
        md,
        "Run on {} ({}), {}, pubsub-server {}:\n\n```sh\n{}\n```\n",
        r["machine"].as_str().unwrap_or("?"),
        r["date"].as_str().unwrap_or("?"),
        if r["ok"].as_bool() == Some(true) {
            "**every check passed**"
        } else {
            "**some checks failed** (below)"
        },
        r["version"].as_str().unwrap_or("?"),
        r["command"].as_str().unwrap_or("?"),
    );
    let _ = writeln!(
        md,
        "For {:.0} s, {} publishers published {} messages/s in total ({} deliveries/s: {}) over {} topics, \
         {}-byte payloads, to {} subscriber connections of {} topics each ({:.0} subscriptions per topic). The \
         server ran as `{}`, pinned to CPU 0, the generator on CPU 1; the soak's clients answer pings, so \
         the {} s heartbeat also exercises dead-peer detection. A subscriber connection lives {:.0} s on \
         average (exponentially distributed), then lets go abruptly in one of five ways: close (FIN, or RST \
         when data is unread), reset (RST), mid-frame (part of a frame, then close), half-close (FIN, still \
         reading) or stall (no reads and no pongs for ½ to 5 heartbeats, then close); {} % of the connections \
         read slowly (2 KB every 100 ms) for the first half of their life. Each comes back within {:.0} ms \
         and subscribes with `since` the last event it saw. Seed {}.\n",
        n(&c["duration_secs"]),
        int(&c["publishers"]),
        int(&r["rate"]["messages_per_sec"]),
        int(&r["rate"]["deliveries_per_sec"]),
        r["rate"]["basis"].as_str().unwrap_or("?"),
        int(&c["topics"]),
        int(&c["payload"]),
        int(&c["subscribers"]),
        int(&c["topics_per_subscriber"]),
        n(&c["subscriptions_per_topic"]),
        c["server_command"].as_str().unwrap_or("?"),
        n(&c["heartbeat_secs"]),
        n(&c["mean_lifetime_secs"]),
        int(&c["slow_percent"]),
        n(&c["max_reconnect_delay_ms"]),
        c["seed"],
    );
    let since = n(&k["since_subscribes"]).max(1.0);
    let rows: Vec<(&str, String)> = vec![
        (
            "published (acked)",
            format!(
                "{} ({}/s achieved)",
                int(&r["published"]),
                int(&(n(&r["published"]) / n(&r["elapsed_secs"]).max(1e-9)).into())
            ),
        ),
        (
            "CPU over the soak: server / generator",
            format!(
                "{:.0} % / {:.0} % of one core",
                100.0 * n(&r["cpu"]["server"]),
                100.0 * n(&r["cpu"]["generator"])
            ),
        ),
        (
            "events read: live / replayed",
            format!("{} / {}", int(&k["live_events"]), int(&k["replayed_events"])),
        ),
        ("reconnects", int(&k["reconnects"])),
        ("ways of letting go", counts(&k["chaos"])),
        ("slow readers", int(&k["slow_readers"])),
        (
            "`since` subscribes recovered",
            format!(
                "{} of {} ({:.1} %); not recovered {} (history of {} exceeded), of which history still held them: **{}**",
                int(&k["recovered"]),
                int(&k["since_subscribes"]),
                100.0 * n(&k["recovered"]) / since,
                int(&k["not_recovered"]),
                int(&c["history_size"]),
                int(&k["not_recovered_but_held"]),
            ),
        ),
        (
            "recovered replays gapless (first = since.seq + 1, contiguous, count = `replayed`)",
            format!("{} checked, **{}** not", int(&k["replays_checked"]), int(&k["replays_bad"])),
        ),
        (
            "`seq` gaps without a `SLOW_CONSUMER` notice",
            format!(
                "**{}** (gaps announced by a notice: {}, notices {}, events dropped {}; count ≠ gap: {})",
                int(&k["gaps_without_notice"]),
                int(&k["gaps_with_notice"]),
                int(&k["slow_consumer_notices"]),
                int(&k["slow_consumer_dropped"]),
                int(&k["notice_gap_mismatch"]),
            ),
        ),
        (
            "events out of order / epoch changes",
            format!("**{}** / **{}**", int(&k["out_of_order"]), int(&k["epoch_changes"])),
        ),
        ("errors", errors_line(&r["errors"])),
        (
            "clients stalled ≥ 4 heartbeats (events flowing to them) that the server closed; the others resumed and caught up",
            format!(
                "{} of {} (how: {})",
                int(&k["long_stalls_closed_by_server"]),
                int(&k["long_stalls"]),
                counts(&k["stall_ends"])
            ),
        ),
        (
            "half-closed clients the server closed within 2 s",
            format!("{} of {}", int(&k["half_closes_answered"]), int(&k["half_closes"])),
        ),
        (
            "server RSS: start / after warm-up / end / max",
            format!(
                "{} / {} (at {:.0} s) / {} / {}",
                mib(&m["start"]),
                mib(&m["after_warmup"]),
                n(&m["warmup_secs"]),
                mib(&m["end"]),
                mib(&m["max"])
            ),
        ),
        (
            "server RSS drift (end − after warm-up); once every client left",
            format!("{:+.1} MiB; {}", n(&m["drift"]) / 1_048_576.0, mib(&m["after_settle"])),
        ),
    ];
    let _ = writeln!(md, "| figure | value |\n|---|---|");
    for (label, value) in rows {
        let _ = writeln!(md, "| {label} | {value} |");
    }
    if let Some(samples) = m["samples"].as_array() {
        let step = (samples.len() / 12).max(1);
        let line: Vec<String> = samples
            .iter()
            .step_by(step)
            .chain(samples.last().filter(|_| samples.len() % step != 1))
            .map(|s| {
                let queued = if s[4].is_null() {
                    String::new()
                } else {
                    format!(" ({})", int(&s[4]))
                };
                format!("{:.0} s {:.1}{queued}", n(&s[0]), n(&s[1]) / 1_048_576.0)
            })
            .collect();
        let _ = writeln!(
            md,
            "\nServer RSS over time in MiB (events queued to connections, `pubsub_queued_events`): {}.\n",
            line.join(", ")
        );
    }

    let _ = writeln!(
        md,
        "**Counter invariant** ({}). After the soak the publishers stopped (every publish answered), each \
         subscriber read to the last acked `seq` and closed, and the server settled in {:.1} s: {} connections, \
         {} subscriptions, `pubsub_queued_events` {}. Per topic, the server's `messages` must equal the acks \
         the publishers got, and `delivered` + `dropped` (= Σ subscribers at publish time, nothing being queued) \
         must lie between what the clients' books prove (each subscription surely covered the `seq`s acked \
         between its subscribe and the moment its client let go) and that plus whatever was sent in the \
         {:.0} s after a client let go; `delivered` must be at least what the clients read. The server \
         counted {:.1} events per ended subscription ({}) beyond the proven share: mostly publishes during \
         stalls (the books stop where a stall begins, the subscription lives on until the server or the \
         client closes it), the rest between a client letting go and the server noticing.\n",
        if inv["ok"].as_bool() == Some(true) { "holds" } else { "**fails**" },
        n(&inv["settle_secs"]),
        int(&inv["connections"]),
        int(&inv["subscribers"]),
        if inv["queued_events"].is_null() { "unknown".to_string() } else { int(&inv["queued_events"]) },
        n(&inv["grace_secs"]),
        n(&inv["excess_per_ended"]),
        int(&inv["ended_subscriptions"]),
    );
    let _ = writeln!(
        md,
        "| topic | messages | acked | delivered | dropped | read by clients | proven ≤ delivered + dropped ≤ | ok |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---|---|");
    for t in inv["topics"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} ≤ {} ≤ {} | {} |",
            t["name"].as_str().unwrap_or("?"),
            int(&t["messages"]),
            int(&t["acked"]),
            int(&t["delivered"]),
            int(&t["dropped"]),
            int(&t["received"]),
            int(&t["lower"]),
            int(&(n(&t["delivered"]) + n(&t["dropped"])).into()),
            int(&t["upper"]),
            if t["ok"].as_bool() == Some(true) {
                "yes"
            } else {
                "**no**"
            },
        );
    }
    shutdown(&mut md, &r["shutdown"]);

    let _ = writeln!(
        md,
        "\n**Verified:** every frame the server sent parsed as the contract says; per topic and subscriber, \
         `seq`s strictly increased and never jumped without a `SLOW_CONSUMER` notice; every recovered resume \
         replayed exactly since.seq + 1 … ack.seq; `since` was refused only when history no longer held the \
         messages; the server's per-topic counters matched the clients' books once everyone had left; and a \
         SIGTERM under load closed every client with `shutting_down` and 1001, lost no acked event and exited 0 \
         within the deadline — except where listed below."
    );
    let log = &r["server_log"];
    let _ = writeln!(
        md,
        "\nServer log: {} lines, {} warnings, {} errors, {} non-JSON lines{}.",
        int(&log["lines"]),
        int(&log["warnings"]),
        int(&log["errors"]),
        int(&log["unparsed"]),
        if n(&log["refusals_503"]) > 0.0 {
            format!(
                " ({} ERROR line(s) of tower-http for the 503 the soak provokes after SIGTERM are not counted)",
                int(&log["refusals_503"])
            )
        } else {
            String::new()
        }
    );
    let failures: Vec<&str> = r["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str())
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(md, "\nFailed checks:\n");
        for f in failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    md
}

fn shutdown(md: &mut String, s: &Value) {
    if s.is_null() {
        let _ = writeln!(md, "\nNo shutdown phase: the server had exited.");
        return;
    }
    let clients = n(&s["subscribers"]) + n(&s["publishers"]);
    let _ = writeln!(
        md,
        "\n**Graceful shutdown under load.** Then {} fresh subscribers and {} publishers at the same rate; after \
         {:.0} s, SIGTERM while publishing. The server's counters die with it, so this check stands on the \
         order it guarantees: a publish acked before SIGTERM was sent was queued to every subscriber before its \
         `shutting_down`, so with contiguous `seq`s each subscriber must have it. A publish acked after SIGTERM \
         may miss a subscriber whose connection closed first; the server then counts it dropped, which cannot be \
         read back after exit.\n",
        int(&s["subscribers"]),
        int(&s["publishers"]),
        n(&s["publish_secs"]),
    );
    let ending = if s["other_endings"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
    {
        format!(" (others: {})", counts(&s["other_endings"]))
    } else {
        String::new()
    };
    let rows = [
        (
            "clients that got `info shutting_down`, then close 1001",
            format!("{} of {:.0}{ending}", int(&s["clean_closes"]), clients),
        ),
        (
            "events acked before SIGTERM / (subscriber, event) pairs missing",
            format!(
                "{} / **{}**",
                int(&s["acked_before"]),
                int(&s["missing_before"])
            ),
        ),
        (
            "events acked after SIGTERM / pairs received / not received (counted dropped)",
            format!(
                "{} / {} / {}",
                int(&s["acked_after"]),
                int(&s["after_received"]),
                int(&s["after_not_received"])
            ),
        ),
        (
            "events received whose ack never came (the publisher's connection closed first)",
            int(&s["received_unacked"]),
        ),
        (
            "`seq` gaps / out of order / errors",
            format!(
                "{} / {} / {}",
                int(&s["checks"]["gaps_without_notice"]),
                int(&s["checks"]["out_of_order"]),
                errors_line(&s["errors"])
            ),
        ),
        (
            "SIGTERM → last client closed / process exited",
            format!(
                "{:.0} ms / **{} ms** (deadline `--shutdown-timeout` {:.0} ms)",
                n(&s["last_close_ms"]),
                s["exit_ms"]
                    .as_f64()
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or("–".into()),
                n(&s["deadline_ms"])
            ),
        ),
        ("exit", s["exit"].as_str().unwrap_or("?").to_string()),
        (
            "a WebSocket upgrade right after SIGTERM",
            s["new_connection"].as_str().unwrap_or("?").to_string(),
        ),
    ];
    let _ = writeln!(md, "| shutdown | value |\n|---|---|");
    for (label, value) in rows {
        let _ = writeln!(md, "| {label} | {value} |");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_minimal_line_and_an_empty_one() {
        let r = serde_json::json!({
            "ok": false,
            "config": {"duration_secs": 60.0, "topics": 10},
            "checks": {"chaos": {"close": 3}},
            "memory": {"samples": [[0.0, 1048576, 0, 0, 0], [5.0, 2097152, 10, 20, 3]]},
            "invariant": {"ok": true, "topics": [{"name": "soak-0", "delivered": 10, "dropped": 2, "ok": true}]},
            "failures": ["2 errors"],
            "shutdown": {"subscribers": 2, "publishers": 1, "exit_ms": 12.6}
        });
        let md = section(&r);
        assert!(md.contains("| soak-0 |"));
        assert!(md.contains("close 3"));
        assert!(md.contains("5 s 2.0 (3)"), "{md}");
        assert!(md.contains("- 2 errors"));
        assert!(md.contains("**13 ms**"));
        assert!(!section(&Value::Null).is_empty());
        assert_eq!(int(&(-1234567.0).into()), "-1,234,567");
        assert_eq!(int(&(123.0).into()), "123");
    }
}
