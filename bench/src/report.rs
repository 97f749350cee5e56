//! BENCHMARKS.md and its chart, from the JSON lines the scenarios printed.

use serde_json::Value;
use std::fmt::Write;
use std::path::{Path, PathBuf};

mod targets;

const ORDER: [&str; 5] = ["pubsub", "nats-tcp", "nats-ws", "redis", "floor"];

fn name(target: &str) -> &str {
    match target {
        "pubsub" => "pubsub (this server, WebSocket)",
        "nats-tcp" => "nats-server (TCP)",
        "nats-ws" => "nats-server (WebSocket)",
        "redis" => "redis-server (RESP)",
        "floor" => "floor (pre-encoded frames, no broker)",
        other => other,
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn fmt_int(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 && ours > 0.0 {
        format!("{:.2}×", ours / theirs)
    } else {
        "–".into()
    }
}

const SEARCH: &str = "The offered rate grows by 1.4× per 2-second step until a step loses a message, then three steps \
     bisect between the last clean rate and the lossy one; the table shows the highest rate delivered in full (every \
     message to every subscriber).";

/// Deliveries per second at the best clean step, with pubsub's ratio to each.
fn throughput_table(md: &mut String, rows: &[&Value]) {
    let ours = rows
        .iter()
        .find(|r| r["target"] == "pubsub")
        .map(|r| num(&r["best"]["deliveries_per_sec"]))
        .unwrap_or(0.0);
    let _ = writeln!(md, "| broker | messages/s in | deliveries/s | p50 | p99 | broker CPU | generator CPU | pubsub ÷ this |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let b = &r["best"];
        let d = num(&b["deliveries_per_sec"]);
        let _ = writeln!(
            md,
            "| {} | {} | **{}** | {:.0} µs | {:.0} µs | {:.0} % | {:.0} % | {} |",
            name(r["target"].as_str().unwrap_or("")),
            fmt_int(num(&b["rate"])),
            fmt_int(d),
            num(&b["p50_us"]),
            num(&b["p99_us"]),
            num(&b["server_cpu"]) * 100.0,
            num(&b["generator_cpu"]) * 100.0,
            ratio(ours, d)
        );
    }
}

fn by_target<'a>(rows: &'a [Value], scenario: &str) -> Vec<&'a Value> {
    let mut out: Vec<&Value> = rows.iter().filter(|r| r["scenario"] == scenario).collect();
    out.sort_by_key(|r| ORDER.iter().position(|t| r["target"] == *t).unwrap_or(99));
    out
}

/// A results file's lines; lines that are not JSON are skipped.
fn read_rows(path: &Path) -> std::io::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The runs to take the spread over: each readable file with every
/// scenario, named by its file name (unreadable or partial runs are left
/// out, and said so on stderr).
fn spread_runs(paths: &[PathBuf]) -> Vec<(String, Vec<Value>)> {
    let mut runs = Vec::new();
    for path in paths {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        match read_rows(path) {
            Ok(rows) if targets::complete(&rows) => runs.push((name, rows)),
            Ok(_) => eprintln!("spread: {name} lacks a scenario, left out"),
            Err(e) => eprintln!("spread: {name}: {e}, left out"),
        }
    }
    runs
}

/// The newest soak result in `path` (JSON lines), if any.
fn latest_soak(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["scenario"] == "soak")
}

/// Writes the report from the main results and, when given, the newest
/// soak result (kept in its own file, so a main run keeps the soak section
/// and a soak run keeps the main tables).
pub fn write(
    results: &Path,
    out: &Path,
    chart: &Path,
    command: &str,
    soak: Option<&Path>,
    spread: &[PathBuf],
) -> std::io::Result<()> {
    let rows = read_rows(results)?;
    let meta = rows
        .iter()
        .find(|r| r["scenario"] == "meta")
        .cloned()
        .unwrap_or(Value::Null);
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Measured side by side in one run on {} ({}), {}. Each broker ran alone, pinned to CPU {}; the generator \
         (`pubsub-bench`, one thread, raw sockets) was pinned to CPU {}. Its own CPU use is shown beside every figure: \
         near 100 % means the generator, not the broker, set the limit.\n",
        meta["machine"].as_str().unwrap_or("this machine"),
        meta["cpu"].as_str().unwrap_or("?"),
        meta["date"].as_str().unwrap_or("?"),
        meta["server_cpu"].as_str().unwrap_or("0"),
        meta["generator_cpu"].as_str().unwrap_or("1"),
    );
    let _ = writeln!(
        md,
        "Versions: {}.\n",
        meta["versions"].as_str().unwrap_or("?")
    );
    let _ = writeln!(md, "Reproduce with:\n\n```sh\n{command}\n```\n");

    // (a) fan-out and (b) many topics: the same search, the same table.
    let fanout = by_target(&rows, "fanout");
    let _ = writeln!(
        md,
        "## (a) Fan-out: 1 publisher, 1 topic, {} subscribers, {}-byte payloads\n\n{SEARCH}\n",
        fanout
            .first()
            .map(|r| num(&r["subscribers"]))
            .unwrap_or(0.0),
        fanout.first().map(|r| num(&r["payload"])).unwrap_or(0.0),
    );
    throughput_table(&mut md, &fanout);
    let topics = by_target(&rows, "topics");
    if !topics.is_empty() {
        let first = topics[0];
        let _ = writeln!(
            md,
            "\n## (b) Many topics: {} topics × {} subscribers, {} publishers\n\nEach subscriber connection holds one \
             subscription; each publisher owns every {}th topic. {SEARCH}\n",
            fmt_int(num(&first["topics"])),
            num(&first["subscribers"]) / num(&first["topics"]).max(1.0),
            num(&first["publishers"]),
            num(&first["publishers"]),
        );
        throughput_table(&mut md, &topics);
    }

    // (c) latency
    let lat = by_target(&rows, "latency");
    if !lat.is_empty() {
        let _ = writeln!(
            md,
            "\n## (c) Latency at a fixed {} messages/s to {} subscribers\n\nPublish-to-receive time, measured by the \
             generator (the send time travels in the payload). Each broker ran several measurement windows back to \
             back; the row is the window with the median p99, and every window's p99 is listed.\n",
            fmt_int(lat.first().map(|r| num(&r["rate"])).unwrap_or(0.0)),
            lat.first().map(|r| num(&r["subscribers"])).unwrap_or(0.0)
        );
        let _ = writeln!(
            md,
            "| broker | p50 | p99 | p99.9 | p99 per window | delivered | broker CPU | generator CPU |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in &lat {
            let s = &r["step"];
            let windows: Vec<String> = r["p99_windows_us"]
                .as_array()
                .map(|w| {
                    w.iter()
                        .map(|p| format!("{:.1}", num(p) / 1000.0))
                        .collect()
                })
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "| {} | {:.0} µs | **{:.0} µs** | {:.0} µs | {} ms | {} / {} | {:.0} % | {:.0} % |",
                name(r["target"].as_str().unwrap_or("")),
                num(&s["p50_us"]),
                num(&s["p99_us"]),
                num(&s["p999_us"]),
                windows.join(", "),
                fmt_int(num(&s["received"])),
                fmt_int(num(&s["expected"])),
                num(&s["server_cpu"]) * 100.0,
                num(&s["generator_cpu"]) * 100.0
            );
        }
    }

    // (d) idle
    let idle = by_target(&rows, "idle");
    if !idle.is_empty() {
        let _ = writeln!(
            md,
            "\n## (d) Idle connections with one subscription each, then one broadcast\n"
        );
        let _ = writeln!(
            md,
            "| broker | connections | connects/s | RSS per connection | broadcast to all |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        for r in &idle {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                name(r["target"].as_str().unwrap_or("")),
                fmt_int(num(&r["connections"])),
                fmt_int(num(&r["connects_per_sec"])),
                r["rss_per_connection_bytes"]
                    .as_f64()
                    .map(|b| format!("{:.1} KiB", b / 1024.0))
                    .unwrap_or("–".into()),
                r["broadcast_ms"]
                    .as_f64()
                    .map(|m| format!("{m:.1} ms"))
                    .unwrap_or("not all received".into()),
            );
        }
    }

    cluster_section(&mut md, &rows, &fanout, &lat);
    targets::section(&mut md, &rows, &spread_runs(spread), spread.len(), command);

    let notes = rows
        .iter()
        .filter(|r| r["scenario"] == "note")
        .filter_map(|r| r["text"].as_str());
    let notes: Vec<&str> = notes.collect();
    if !notes.is_empty() {
        let _ = writeln!(md, "\n## Notes\n");
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    let _ = writeln!(md, "\n![throughput and latency]({})", link(out, chart));
    if let Some(row) = soak.and_then(latest_soak) {
        md.push_str(&crate::soak::report::section(&row));
        // What the figures mean, written by hand after a run.
        let notes = Path::new(env!("CARGO_MANIFEST_DIR")).join("SOAK-NOTES.md");
        if let Ok(text) = std::fs::read_to_string(notes) {
            let _ = writeln!(md, "\n{}", text.trim_end());
        }
    }
    // The last full runs of the attack suite and the cluster chaos soak
    // (scripts/bench.sh --attack, --chaos).
    for section in ["results/attacks.md", "results/chaos.md"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(section);
        if let Ok(text) = std::fs::read_to_string(path) {
            let _ = writeln!(md, "\n{}", text.trim_end());
        }
    }
    // The hand-written part (targets, profile, what changed) lives beside
    // the generator and is appended to every regenerated report.
    let analysis = Path::new(env!("CARGO_MANIFEST_DIR")).join("ANALYSIS.md");
    if let Ok(text) = std::fs::read_to_string(analysis) {
        let _ = writeln!(md, "\n{}", text.trim_end());
    }
    std::fs::write(out, md)?;
    std::fs::write(chart, svg(&fanout, &lat))?;
    Ok(())
}

/// Cluster mode beside the single node: the same fan-out search and the
/// same fixed-rate latency, with the publisher on one instance and the
/// subscribers on another.
fn cluster_section(md: &mut String, rows: &[Value], fanout: &[&Value], lat: &[&Value]) {
    let cluster_fanout = rows.iter().find(|r| r["scenario"] == "cluster-fanout");
    let cluster_latency = rows.iter().find(|r| r["scenario"] == "cluster-latency");
    if cluster_fanout.is_none() && cluster_latency.is_none() {
        return;
    }
    let single = |rows: &[&Value]| {
        rows.iter()
            .find(|r| r["target"] == "pubsub")
            .map(|r| (*r).clone())
    };
    let _ = writeln!(
        md,
        "\n## Cluster mode (issue 7): the cost of crossing nodes\n\nTwo pubsub-server instances in cluster mode \
         and their nats-server (JetStream, file storage) share CPU 0, the core the single node had to itself; the \
         generator stays on CPU 1. The publisher connects to instance A, every subscriber to instance B: each message \
         goes A → JetStream (stored, acknowledged) → B's stream consumer → B's subscribers. Broker CPU is instance \
         B's.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | setup | messages/s in | deliveries/s | p50 | p99 | p99.9 | broker CPU | cluster ÷ single |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let fanout_row = |md: &mut String, setup: &str, r: &Value, base: f64| {
        let b = &r["best"];
        let d = num(&b["deliveries_per_sec"]);
        let _ = writeln!(
            md,
            "| (a) fan-out to {} | {setup} | {} | **{}** | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} % | {} |",
            num(&r["subscribers"]),
            fmt_int(num(&b["rate"])),
            fmt_int(d),
            num(&b["p50_us"]),
            num(&b["p99_us"]),
            num(&b["p999_us"]),
            num(&b["server_cpu"]) * 100.0,
            if base > 0.0 { ratio(d, base) } else { "1.00×".into() },
        );
    };
    let single_fanout = single(fanout);
    let base = single_fanout
        .as_ref()
        .map(|r| num(&r["best"]["deliveries_per_sec"]))
        .unwrap_or(0.0);
    if let Some(r) = &single_fanout {
        fanout_row(md, "single node", r, 0.0);
    }
    if let Some(r) = cluster_fanout {
        fanout_row(md, "cluster, A → B", r, base);
    }
    let latency_row = |md: &mut String, setup: &str, r: &Value, base: f64| {
        let s = &r["step"];
        let p99 = num(&s["p99_us"]);
        let _ = writeln!(
            md,
            "| (c) {} msg/s to {} | {setup} | {} | {} of {} delivered | {:.0} µs | **{:.0} µs** | {:.0} µs | {:.0} % | {} |",
            fmt_int(num(&r["rate"])),
            num(&r["subscribers"]),
            fmt_int(num(&r["rate"])),
            fmt_int(num(&s["received"])),
            fmt_int(num(&s["expected"])),
            num(&s["p50_us"]),
            p99,
            num(&s["p999_us"]),
            num(&s["server_cpu"]) * 100.0,
            if base > 0.0 { format!("p99 {}", ratio(p99, base)) } else { "–".into() },
        );
    };
    let single_latency = single(lat);
    let base = single_latency
        .as_ref()
        .map(|r| num(&r["step"]["p99_us"]))
        .unwrap_or(0.0);
    if let Some(r) = &single_latency {
        latency_row(md, "single node", r, 0.0);
    }
    if let Some(r) = cluster_latency {
        latency_row(md, "cluster, A → B", r, base);
    }
}

/// Two bar groups: fan-out deliveries/s, and latency percentiles.
fn svg(fanout: &[&Value], lat: &[&Value]) -> String {
    let (w, h) = (820.0, 360.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
    );
    let colors = ["#2f6fde", "#12a150", "#f79009", "#d92d20", "#667085"];
    // Left: deliveries/s.
    let max = fanout
        .iter()
        .map(|r| num(&r["best"]["deliveries_per_sec"]))
        .fold(1.0, f64::max);
    let _ = write!(s, "<text x=\"20\" y=\"24\" font-size=\"14\" font-weight=\"bold\">(a) fan-out deliveries/s (more is better)</text>");
    for (i, r) in fanout.iter().enumerate() {
        let v = num(&r["best"]["deliveries_per_sec"]);
        let y = 50.0 + i as f64 * 44.0;
        let bw = 260.0 * v / max;
        let _ = write!(
            s,
            "<text x=\"20\" y=\"{}\">{}</text><rect x=\"120\" y=\"{}\" width=\"{bw:.1}\" height=\"22\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{}\">{}</text>",
            y + 15.0,
            r["target"].as_str().unwrap_or(""),
            y,
            colors[i % colors.len()],
            125.0 + bw,
            y + 15.0,
            fmt_int(v)
        );
    }
    // Right: latency p50 / p99 / p99.9 (log-free: linear to the largest p99).
    let _ = write!(s, "<text x=\"440\" y=\"24\" font-size=\"14\" font-weight=\"bold\">(c) latency µs: p50 / p99 / p99.9 (less is better)</text>");
    let lmax = lat
        .iter()
        .map(|r| num(&r["step"]["p999_us"]))
        .fold(1.0, f64::max);
    for (i, r) in lat.iter().enumerate() {
        let y = 50.0 + i as f64 * 60.0;
        let _ = write!(
            s,
            "<text x=\"440\" y=\"{}\">{}</text>",
            y + 15.0,
            r["target"].as_str().unwrap_or("")
        );
        for (j, key) in ["p50_us", "p99_us", "p999_us"].iter().enumerate() {
            let v = num(&r["step"][key]);
            let bw = 240.0 * v / lmax;
            let yy = y + j as f64 * 16.0;
            let _ = write!(
                s,
                "<rect x=\"520\" y=\"{yy}\" width=\"{bw:.1}\" height=\"13\" fill=\"{}\" opacity=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{}\" font-size=\"10\">{:.0}</text>",
                colors[i % colors.len()],
                1.0 - j as f64 * 0.3,
                525.0 + bw,
                yy + 11.0,
                v
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// The chart's path as BENCHMARKS.md links it: relative to the report's
/// folder (both are written by one command, usually the report at the root
/// and the chart in `bench/results/`).
fn link(out: &Path, chart: &Path) -> String {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let folder = absolute(out)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let chart = absolute(chart);
    chart
        .strip_prefix(&folder)
        .unwrap_or(&chart)
        .display()
        .to_string()
}
