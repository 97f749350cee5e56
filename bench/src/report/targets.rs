//! Issue 16's targets ("fan-out at the floor"), each computed from one
//! results file, and their spread over several runs.
//!
//! Every target is a figure (a ratio to a peer, or an absolute value) and
//! a goal (at least or at most some bound). A figure that a run lacks (a
//! scenario missing or failed, a broker without a clean step, a CPU share
//! of zero) is `None` and shows as "–"; nothing here panics on odd input.

use super::{fmt_int, num, ORDER};
use serde_json::Value;
use std::fmt::Write;

/// Two step rates are the same step of the shared schedule (500, 700,
/// 980, …) when they agree to this relative precision.
const SAME_RATE: f64 = 1e-6;
/// "Near 100 %": a generator this busy may be what set the limit.
const GENERATOR_CAP: f64 = 0.9;
/// "Within noise" and "nothing measurable": 5 % either way.
const NOISE: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    pub fn met(self, x: f64) -> bool {
        match self {
            Goal::AtLeast(g) => x >= g,
            Goal::AtMost(g) => x <= g,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    /// A ratio, 0.93×.
    Times,
    /// Deliveries a second, in millions.
    Millions,
    /// Bytes, shown in KiB.
    KiB,
    /// Allocations per delivery.
    Count,
}

impl Unit {
    pub fn fmt(self, x: f64) -> String {
        match self {
            Unit::Times => format!("{x:.2}×"),
            Unit::Millions => format!("{}/s", count(x)),
            Unit::KiB => format!("{:.1} KiB", x / 1024.0),
            Unit::Count => format!("{x:.3}"),
        }
    }
}

/// A count in millions from one million up ("3.77 M"), in full below
/// ("27,333"), so that the small figures of a smoke run still show.
fn count(x: f64) -> String {
    if x.abs() >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else {
        fmt_int(x)
    }
}

/// One row of the targets table.
#[derive(Debug, Clone)]
pub struct Target {
    /// Stable across runs: rows of several runs are matched by it.
    pub key: String,
    pub label: String,
    /// This run's figures behind the ratio (rates, CPU shares).
    pub detail: String,
    pub figure: Option<f64>,
    pub unit: Unit,
    pub goal: Goal,
    pub goal_text: String,
}

impl Target {
    pub fn met(&self) -> Option<bool> {
        self.figure.map(|x| self.goal.met(x))
    }
}

/// The row of `scenario` for `target`.
fn row<'a>(rows: &'a [Value], scenario: &str, target: &str) -> Option<&'a Value> {
    rows.iter()
        .find(|r| r["scenario"] == scenario && r["target"] == target)
}

/// Fan-out to one topic, or (`many`) the many-topics scenario, which is
/// recorded as "topics" (or as "fanout" with more than one topic).
pub fn fanout_row<'a>(rows: &'a [Value], target: &str, many: bool) -> Option<&'a Value> {
    rows.iter().find(|r| {
        r["target"] == target
            && if many {
                r["scenario"] == "topics" || (r["scenario"] == "fanout" && num(&r["topics"]) > 1.0)
            } else {
                r["scenario"] == "fanout" && num(&r["topics"]) <= 1.0
            }
    })
}

/// Every step of a fan-out search: the best one (kept apart in the
/// results) and the others.
pub fn all_steps(fanout: &Value) -> Vec<&Value> {
    let mut steps: Vec<&Value> = fanout["steps"].as_array().into_iter().flatten().collect();
    if fanout["best"].is_object() {
        steps.push(&fanout["best"]);
    }
    steps
}

fn clean(step: &Value) -> bool {
    step["clean"].as_bool().unwrap_or(false)
}

fn same_rate(a: f64, b: f64) -> bool {
    (a - b).abs() <= SAME_RATE * a.abs().max(b.abs())
}

/// The highest step rate, at most `at_most`, at which both searches had a
/// clean step: their steps at that rate.
pub fn highest_common_clean<'a>(
    a: &'a Value,
    b: &'a Value,
    at_most: f64,
) -> Option<(&'a Value, &'a Value)> {
    let mut ours: Vec<&Value> = all_steps(a)
        .into_iter()
        .filter(|s| clean(s) && num(&s["rate"]) > 0.0)
        .filter(|s| num(&s["rate"]) <= at_most * (1.0 + SAME_RATE))
        .collect();
    ours.sort_by(|x, y| num(&y["rate"]).total_cmp(&num(&x["rate"])));
    let theirs = all_steps(b);
    ours.into_iter().find_map(|s| {
        theirs
            .iter()
            .find(|t| clean(t) && same_rate(num(&s["rate"]), num(&t["rate"])))
            .map(|t| (s, *t))
    })
}

/// The rate of the highest clean step of a search (its `best`).
pub fn best_rate(fanout: &Value) -> Option<f64> {
    all_steps(fanout)
        .into_iter()
        .filter(|s| clean(s))
        .map(|s| num(&s["rate"]))
        .filter(|r| *r > 0.0)
        .max_by(f64::total_cmp)
}

/// The common clean step at most 80 % of `ours`'s best rate.
pub fn step_at_80<'a>(ours: &'a Value, theirs: &'a Value) -> Option<(&'a Value, &'a Value)> {
    highest_common_clean(ours, theirs, 0.8 * best_rate(ours)?)
}

/// Deliveries per broker CPU-second of a step.
pub fn per_cpu_second(step: &Value) -> Option<f64> {
    let cpu = num(&step["server_cpu"]);
    let d = num(&step["deliveries_per_sec"]);
    (cpu > 0.0 && d > 0.0).then_some(d / cpu)
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn positive(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| *x > 0.0)
}

fn short(target: &str) -> &str {
    match target {
        "nats-tcp" => "nats TCP",
        "nats-ws" => "nats WS",
        "redis" => "redis",
        other => other,
    }
}

/// "2.69 M/s (broker 99 %, generator 75 %)": a throughput figure with
/// both CPU shares beside it.
fn with_cpu(d: f64, step: &Value) -> String {
    format!(
        "{} (broker {:.0} %, generator {:.0} %)",
        Unit::Millions.fmt(d),
        num(&step["server_cpu"]) * 100.0,
        num(&step["generator_cpu"]) * 100.0
    )
}

fn missing(what: &str) -> String {
    format!("– ({what} missing)")
}

/// Every target of issue 16 from one run's result lines, always in the
/// same order and with the same keys (core variants add one row each).
pub fn compute(rows: &[Value]) -> Vec<Target> {
    let mut out = Vec::new();
    fanout_vs_floor(rows, &mut out);
    for (peer, goal) in [("nats-tcp", 1.5), ("redis", 1.3)] {
        fanout_vs_peer(rows, peer, goal, &mut out);
    }
    p50_at_80(rows, &mut out);
    topics_vs_floor(rows, &mut out);
    latency_vs_floor(rows, &mut out);
    broadcast_vs_floor(rows, &mut out);
    core(rows, &mut out);
    memory(rows, &mut out);
    cluster(rows, &mut out);
    core_variants(rows, &mut out);
    out
}

fn fanout_vs_floor(rows: &[Value], out: &mut Vec<Target>) {
    let mut t = Target {
        key: "1-floor".into(),
        label: "1. Fan-out to 1,000: deliveries per broker CPU-second at the highest rate both sustain, ÷ floor"
            .into(),
        detail: missing("fan-out of pubsub or the floor"),
        figure: None,
        unit: Unit::Times,
        goal: Goal::AtLeast(0.9),
        goal_text: "≥ 0.90×".into(),
    };
    if let (Some(p), Some(f)) = (
        fanout_row(rows, "pubsub", false),
        fanout_row(rows, "floor", false),
    ) {
        t.detail = "– (no rate clean for both)".into();
        if let Some((ps, fs)) = highest_common_clean(p, f, f64::INFINITY) {
            t.figure = div(per_cpu_second(ps), per_cpu_second(fs));
            t.detail = format!(
                "at {} msg/s: pubsub {} = {} per CPU-s; floor {} = {} per CPU-s",
                fmt_int(num(&ps["rate"])),
                with_cpu(num(&ps["deliveries_per_sec"]), ps),
                per_cpu_second(ps).map_or("–".into(), count),
                with_cpu(num(&fs["deliveries_per_sec"]), fs),
                per_cpu_second(fs).map_or("–".into(), count),
            );
        }
    }
    out.push(t);
}

fn fanout_vs_peer(rows: &[Value], peer: &str, goal: f64, out: &mut Vec<Target>) {
    let mut t = Target {
        key: format!("1-{peer}"),
        label: format!(
            "1. Fan-out to 1,000: sustained deliveries/s (best clean step) ÷ {} (per CPU-second where the generator caps both)",
            super::name(peer)
        ),
        detail: missing(&format!("fan-out of pubsub or {}", short(peer))),
        figure: None,
        unit: Unit::Times,
        goal: Goal::AtLeast(goal),
        goal_text: format!("≥ {goal:.2}×"),
    };
    if let (Some(p), Some(n)) = (
        fanout_row(rows, "pubsub", false),
        fanout_row(rows, peer, false),
    ) {
        let (pb, nb) = (&p["best"], &n["best"]);
        if !pb.is_object() || !nb.is_object() {
            t.detail = "– (a broker had no clean step)".into();
        } else if num(&pb["generator_cpu"]) >= GENERATOR_CAP
            && num(&nb["generator_cpu"]) >= GENERATOR_CAP
        {
            // The generator, not the brokers, set both maxima: compare
            // what each delivered per CPU-second at a rate both sustained.
            t.detail = "– (generator-capped, no rate clean for both)".into();
            if let Some((ps, ns)) = highest_common_clean(p, n, f64::INFINITY) {
                t.figure = div(per_cpu_second(ps), per_cpu_second(ns));
                t.detail = format!(
                    "generator-capped, per CPU-second at {} msg/s: pubsub {}; {} {}",
                    fmt_int(num(&ps["rate"])),
                    with_cpu(num(&ps["deliveries_per_sec"]), ps),
                    short(peer),
                    with_cpu(num(&ns["deliveries_per_sec"]), ns),
                );
            }
        } else {
            let (dp, dn) = (
                num(&pb["deliveries_per_sec"]),
                num(&nb["deliveries_per_sec"]),
            );
            t.figure = div(Some(dp), Some(dn));
            t.detail = format!(
                "pubsub {}; {} {}",
                with_cpu(dp, pb),
                short(peer),
                with_cpu(dn, nb)
            );
        }
    }
    out.push(t);
}

fn p50_at_80(rows: &[Value], out: &mut Vec<Target>) {
    let mut t = Target {
        key: "2-p50".into(),
        label: "2. Fan-out p50 at 80 % of pubsub's maximum ÷ redis-server's at the same rate"
            .into(),
        detail: missing("fan-out of pubsub or redis"),
        figure: None,
        unit: Unit::Times,
        goal: Goal::AtMost(2.0),
        goal_text: "≤ 2.00×".into(),
    };
    if let (Some(p), Some(r)) = (
        fanout_row(rows, "pubsub", false),
        fanout_row(rows, "redis", false),
    ) {
        t.detail = "– (no common clean step at or below 80 % of pubsub's best)".into();
        if let Some((ps, rs)) = step_at_80(p, r) {
            t.figure = div(positive(&ps["p50_us"]), positive(&rs["p50_us"]));
            t.detail = format!(
                "at {} msg/s ({:.0} % of pubsub's best {}): pubsub p50 {:.0} µs, redis {:.0} µs",
                fmt_int(num(&ps["rate"])),
                100.0 * num(&ps["rate"]) / best_rate(p).unwrap_or(f64::INFINITY),
                fmt_int(best_rate(p).unwrap_or(0.0)),
                num(&ps["p50_us"]),
                num(&rs["p50_us"]),
            );
        }
    }
    out.push(t);
}

fn topics_vs_floor(rows: &[Value], out: &mut Vec<Target>) {
    let mut t = Target {
        key: "3-topics".into(),
        label: "3. 1,000 topics × 10: best deliveries/s ÷ floor".into(),
        detail: missing("many-topics fan-out of pubsub or the floor"),
        figure: None,
        unit: Unit::Times,
        goal: Goal::AtLeast(1.0 - NOISE),
        goal_text: format!("≥ 1.00× within noise (≥ {:.2}×)", 1.0 - NOISE),
    };
    if let (Some(p), Some(f)) = (
        fanout_row(rows, "pubsub", true),
        fanout_row(rows, "floor", true),
    ) {
        let (pb, fb) = (&p["best"], &f["best"]);
        let (dp, df) = (
            num(&pb["deliveries_per_sec"]),
            num(&fb["deliveries_per_sec"]),
        );
        t.figure = div(Some(dp), Some(df));
        t.detail = format!(
            "{} topics: pubsub {}; floor {}",
            fmt_int(num(&p["topics"])),
            with_cpu(dp, pb),
            with_cpu(df, fb)
        );
    }
    out.push(t);
}

fn latency_vs_floor(rows: &[Value], out: &mut Vec<Target>) {
    let (p, f) = (
        row(rows, "latency", "pubsub"),
        row(rows, "latency", "floor"),
    );
    let setup = p.map_or(String::new(), |p| {
        format!(
            "at {} msg/s to {}: ",
            fmt_int(num(&p["rate"])),
            num(&p["subscribers"])
        )
    });
    for (key, label, field, goal, what) in [
        (
            "4-cpu",
            "4. 100 subscribers × 5,000 msg/s: broker CPU ÷ floor",
            "server_cpu",
            1.15,
            "broker CPU",
        ),
        (
            "4-p99",
            "4. 100 subscribers × 5,000 msg/s: p99 ÷ floor (same run)",
            "p99_us",
            1.2,
            "p99",
        ),
    ] {
        let mut t = Target {
            key: key.into(),
            label: label.into(),
            detail: missing("latency of pubsub or the floor"),
            figure: None,
            unit: Unit::Times,
            goal: Goal::AtMost(goal),
            goal_text: format!("≤ {goal:.2}×"),
        };
        if let (Some(p), Some(f)) = (p, f) {
            let (ps, fs) = (&p["step"], &f["step"]);
            t.figure = div(positive(&ps[field]), positive(&fs[field]));
            let show = |s: &Value| {
                if field == "server_cpu" {
                    format!("{:.0} %", num(&s[field]) * 100.0)
                } else {
                    format!("{:.0} µs", num(&s[field]))
                }
            };
            t.detail = format!(
                "{setup}{what} pubsub {}, floor {} (generator {:.0} % / {:.0} %)",
                show(ps),
                show(fs),
                num(&ps["generator_cpu"]) * 100.0,
                num(&fs["generator_cpu"]) * 100.0
            );
        }
        out.push(t);
    }
}

fn broadcast_vs_floor(rows: &[Value], out: &mut Vec<Target>) {
    let mut t = Target {
        key: "5-broadcast".into(),
        label: "5. Broadcast to 19,000 idle connections: time ÷ floor".into(),
        detail: missing("idle scenario of pubsub or the floor"),
        figure: None,
        unit: Unit::Times,
        goal: Goal::AtMost(1.2),
        goal_text: "≤ 1.20×".into(),
    };
    if let (Some(p), Some(f)) = (row(rows, "idle", "pubsub"), row(rows, "idle", "floor")) {
        let ms = |r: &Value| {
            r["broadcast_ms"]
                .as_f64()
                .map_or("not all received".into(), |m| format!("{m:.1} ms"))
        };
        t.figure = div(positive(&p["broadcast_ms"]), positive(&f["broadcast_ms"]));
        t.detail = format!(
            "{} connections: pubsub {}, floor {}",
            fmt_int(num(&p["connections"])),
            ms(p),
            ms(f)
        );
    }
    out.push(t);
}

fn core_bench<'a>(rows: &'a [Value], bench: &str) -> Option<&'a Value> {
    rows.iter()
        .find(|r| r["scenario"] == "core" && r["bench"] == bench)
}

/// Deliveries a second on one core: one iteration's deliveries over its median time.
fn core_rate(r: &Value) -> Option<f64> {
    div(positive(&r["deliveries"]), positive(&r["median_ns"])).map(|x| x * 1e9)
}

const PLAIN: &str = "publish+drain to 1000";

fn core(rows: &[Value], out: &mut Vec<Target>) {
    let mut t = Target {
        key: "6-core".into(),
        label: "6. Core: one publish, one drain, to 1,000 subscribers, deliveries/s on one core"
            .into(),
        detail: missing("core microbenchmark"),
        figure: None,
        unit: Unit::Millions,
        goal: Goal::AtLeast(25e6),
        goal_text: "≥ 25 M/s".into(),
    };
    if let Some(r) = core_bench(rows, PLAIN) {
        t.figure = core_rate(r);
        let others: Vec<String> = rows
            .iter()
            .filter(|o| o["scenario"] == "core" && o["bench"] != PLAIN)
            .filter(|o| {
                !o["bench"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("publish+drain to 1000 ")
            })
            .filter_map(|o| {
                Some(format!(
                    "{}: {}",
                    o["bench"].as_str()?,
                    Unit::Millions.fmt(core_rate(o)?)
                ))
            })
            .collect();
        t.detail = format!(
            "median {:.1} µs per publish and drain (criterion, pinned){}",
            num(&r["median_ns"]) / 1000.0,
            if others.is_empty() {
                String::new()
            } else {
                format!("; {}", others.join("; "))
            }
        );
    }
    out.push(t);
    let mut t = Target {
        key: "6-alloc".into(),
        label: "6. Core: allocations per delivery (publish and drain, 1,000 subscribers)".into(),
        detail: missing("core allocation count"),
        figure: None,
        unit: Unit::Count,
        goal: Goal::AtMost(NOISE),
        goal_text: format!("0: only the publish's own (≤ {NOISE:.2})"),
    };
    if let Some(a) = rows.iter().find(|r| r["scenario"] == "core-allocations") {
        let subscribers = positive(&a["subscribers"]);
        t.figure = a["publish_and_drain"]
            .as_f64()
            .zip(subscribers)
            .map(|(x, n)| x / n);
        t.detail = format!(
            "{:.1} per publish with draining, {:.1} while queues fill, to {} subscribers",
            num(&a["publish_and_drain"]),
            num(&a["publish_only"]),
            fmt_int(num(&a["subscribers"]))
        );
    }
    out.push(t);
}

/// Server memory per subscriber under fan-out load: at the end of the best
/// clean step, less what the server held before the subscribers came.
pub fn rss_per_subscriber(fanout: &Value) -> Option<f64> {
    let before = fanout["rss_before_bytes"].as_f64()?;
    let at_load = fanout["best"]["server_rss_bytes"].as_f64()?;
    let subscribers = positive(&fanout["subscribers"])?;
    Some((at_load - before).max(0.0) / subscribers)
}

/// The same, less what pubsub's topics' id windows held at that moment
/// (its `pubsub_dedup_bytes` gauge, recorded with the step): idempotent
/// publish remembers up to `dedup_ids` (100,000) ids per topic, server-made
/// ids included, about 7 MB for the one topic here, which is the same for
/// 10 subscribers or 100,000. Measured directly, fan-out to 1,000 with
/// `--dedup-window 0` held 8.1-8.3 KiB per subscriber where the default
/// held 15.5-15.9 (two runs each, side by side).
pub fn rss_per_subscriber_net(fanout: &Value) -> Option<f64> {
    let raw = rss_per_subscriber(fanout)?;
    let subscribers = positive(&fanout["subscribers"])?;
    let window = fanout["best"]["server_dedup_bytes"].as_f64().unwrap_or(0.0);
    Some((raw - window / subscribers).max(0.0))
}

fn memory(rows: &[Value], out: &mut Vec<Target>) {
    let others = |f: &dyn Fn(&str) -> Option<f64>| -> String {
        let shown: Vec<String> = ORDER[1..]
            .iter()
            .filter_map(|t| Some(format!("{} {}", short(t), Unit::KiB.fmt(f(t)?))))
            .collect();
        if shown.is_empty() {
            String::new()
        } else {
            format!(" ({})", shown.join(", "))
        }
    };
    let idle = |t: &str| row(rows, "idle", t).and_then(|r| r["rss_per_connection_bytes"].as_f64());
    out.push(Target {
        key: "7-idle".into(),
        label: "7. RSS per idle subscribed connection".into(),
        detail: match idle("pubsub") {
            Some(b) => format!("pubsub {}{}", Unit::KiB.fmt(b), others(&idle)),
            None => missing("idle scenario of pubsub"),
        },
        figure: idle("pubsub"),
        unit: Unit::KiB,
        goal: Goal::AtMost(6.0 * 1024.0),
        goal_text: "≤ 6 KiB".into(),
    });
    let load = |t: &str| fanout_row(rows, t, false).and_then(rss_per_subscriber);
    let net = fanout_row(rows, "pubsub", false).and_then(rss_per_subscriber_net);
    let window = fanout_row(rows, "pubsub", false)
        .and_then(|f| f["best"]["server_dedup_bytes"].as_f64())
        .filter(|b| *b > 0.0);
    out.push(Target {
        key: "7-load".into(),
        label: "7. RSS per subscribed connection under fan-out load (end of the best clean step)"
            .into(),
        detail: match (net, load("pubsub"), window) {
            (Some(n), Some(b), Some(w)) => format!(
                "pubsub {} without its topic's id window ({:.1} MB by its gauge, per topic, not per connection), {} with it{}",
                Unit::KiB.fmt(n),
                w / 1e6,
                Unit::KiB.fmt(b),
                others(&load)
            ),
            (_, Some(b), _) => format!("pubsub {}{}", Unit::KiB.fmt(b), others(&load)),
            _ => missing("fan-out RSS of pubsub"),
        },
        figure: net,
        unit: Unit::KiB,
        goal: Goal::AtMost(10.0 * 1024.0),
        goal_text: "≤ 10 KiB".into(),
    });
}

fn cluster(rows: &[Value], out: &mut Vec<Target>) {
    let mut t = Target {
        key: "8-cluster".into(),
        label: "8. Cluster fan-out (A → B) ÷ the single node".into(),
        detail: missing("cluster or single-node fan-out"),
        figure: None,
        unit: Unit::Times,
        goal: Goal::AtLeast(0.8),
        goal_text: "≥ 0.80×".into(),
    };
    let cluster = rows.iter().find(|r| r["scenario"] == "cluster-fanout");
    if let (Some(c), Some(s)) = (cluster, fanout_row(rows, "pubsub", false)) {
        let (cb, sb) = (&c["best"], &s["best"]);
        let (dc, ds) = (
            num(&cb["deliveries_per_sec"]),
            num(&sb["deliveries_per_sec"]),
        );
        t.figure = div(Some(dc), Some(ds));
        t.detail = format!("cluster {}; single {}", with_cpu(dc, cb), with_cpu(ds, sb));
    }
    out.push(t);
}

/// "publish+drain to 1000 <variant>" against the plain bench: what the
/// variant's feature costs the fan-out path of exact subscribers.
fn core_variants(rows: &[Value], out: &mut Vec<Target>) {
    let plain = core_bench(rows, PLAIN);
    let variants: Vec<&Value> = rows
        .iter()
        .filter(|r| r["scenario"] == "core")
        .filter(|r| {
            r["bench"].as_str().is_some_and(|b| {
                b.starts_with("publish+drain to 1000 ") || b.starts_with("publish+drain to 1000,")
            })
        })
        .collect();
    let goal = Goal::AtMost(1.0 + NOISE);
    let goal_text = format!("≤ {:.2}× (nothing measurable)", 1.0 + NOISE);
    if variants.is_empty() {
        out.push(Target {
            key: "9".into(),
            label: "9. Patterns, presence, SSE: core \"publish+drain to 1000 …\" ÷ plain".into(),
            detail: missing("core microbenchmark"),
            figure: None,
            unit: Unit::Times,
            goal,
            goal_text,
        });
        return;
    }
    for v in variants {
        let bench = v["bench"].as_str().unwrap_or("");
        let variant = bench
            .trim_start_matches(PLAIN)
            .trim_start_matches(',')
            .trim();
        let figure = div(
            positive(&v["median_ns"]),
            plain.and_then(|p| positive(&p["median_ns"])),
        );
        out.push(Target {
            key: format!("9-{variant}"),
            label: format!("9. Core fan-out to 1,000 {variant}: time ÷ plain"),
            detail: format!(
                "{:.1} µs against {}",
                num(&v["median_ns"]) / 1000.0,
                plain.map_or("– (no plain bench)".into(), |p| format!(
                    "{:.1} µs",
                    num(&p["median_ns"]) / 1000.0
                ))
            ),
            figure,
            unit: Unit::Times,
            goal,
            goal_text: goal_text.clone(),
        });
    }
}

/// min, median, max.
pub fn spread(figures: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = figures.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((v[0], median, v[n - 1]))
}

/// The scenarios a run must have for its spread to count.
pub const EVERY_SCENARIO: [&str; 7] = [
    "fanout",
    "topics",
    "latency",
    "idle",
    "cluster-fanout",
    "core",
    "core-allocations",
];

/// A run whose results file has every scenario (the many-topics one may
/// be recorded as "fanout" with more than one topic).
pub fn complete(rows: &[Value]) -> bool {
    EVERY_SCENARIO.iter().all(|s| {
        rows.iter().any(|r| {
            r["scenario"] == *s
                || (*s == "topics" && r["scenario"] == "fanout" && num(&r["topics"]) > 1.0)
        })
    })
}

/// The section: this run's targets and, with `runs` (each a results file's
/// rows and its name), their spread.
/// `given` is how many runs were asked for (some may have been left out).
pub fn section(
    md: &mut String,
    rows: &[Value],
    runs: &[(String, Vec<Value>)],
    given: usize,
    command: &str,
) {
    let this = compute(rows);
    let per_run: Vec<Vec<Target>> = runs.iter().map(|(_, r)| compute(r)).collect();
    let _ = writeln!(
        md,
        "\n## Fan-out at the floor (issue 16): targets\n\nEvery figure from the one run above (the same results \
         file as the tables). \"At the highest rate both sustain\" is the highest step of the shared rate schedule \
         (500, 700, 980, … ×1.4, then bisection) that both brokers delivered in full; deliveries per CPU-second are \
         that step's deliveries/s over the broker's CPU share. The generator counts as the limit when its CPU \
         share is {:.0} % or more for both brokers. Missing figures show as –. Reproduce with `{command}`.\n",
        GENERATOR_CAP * 100.0
    );
    if runs.is_empty() {
        if given > 0 {
            let _ = writeln!(
                md,
                "No spread over runs: {} had every scenario ({}).\n",
                if given == 1 {
                    "the one results file given".to_string()
                } else {
                    format!("none of the {given} results files given")
                },
                EVERY_SCENARIO.join(", ")
            );
        }
        let _ = writeln!(md, "| target | this run | goal | met? |\n|---|---|---|---|");
    } else {
        let _ = writeln!(
            md,
            "Spread: min / median / max of each figure over {} full run{} with every scenario ({}), and how many \
             met the goal{}.\n",
            runs.len(),
            if runs.len() == 1 { "" } else { "s" },
            runs.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", "),
            if given > runs.len() {
                format!(" ({} more given, left out: a scenario missing)", given - runs.len())
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            md,
            "| target | this run | goal | met? | min / median / max over {} run{} | runs met |\n|---|---|---|---|---|---|",
            runs.len(),
            if runs.len() == 1 { "" } else { "s" }
        );
    }
    for t in &this {
        // The figure in bold, then what it was computed from; the detail
        // alone (it starts with "–") when the figure is missing.
        let this_run = t.figure.map_or_else(
            || t.detail.clone(),
            |x| format!("**{}**: {}", t.unit.fmt(x), t.detail),
        );
        let met = match t.met() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "–",
        };
        let _ = write!(md, "| {} | {this_run} | {} | {met} |", t.label, t.goal_text);
        if !runs.is_empty() {
            let same: Vec<&Target> = per_run
                .iter()
                .filter_map(|r| r.iter().find(|o| o.key == t.key))
                .collect();
            let figures: Vec<f64> = same.iter().filter_map(|o| o.figure).collect();
            let met_runs = same.iter().filter(|o| o.met() == Some(true)).count();
            let range = spread(&figures).map_or("–".into(), |(lo, mid, hi)| {
                format!(
                    "{} / {} / {}",
                    t.unit.fmt(lo),
                    t.unit.fmt(mid),
                    t.unit.fmt(hi)
                )
            });
            let _ = write!(md, " {range} | {met_runs} of {} |", runs.len());
        }
        let _ = writeln!(md);
    }
    let judged: Vec<bool> = this.iter().filter_map(Target::met).collect();
    let _ = writeln!(
        md,
        "\nThis run: {} of {} targets met; {} without a figure.",
        judged.iter().filter(|m| **m).count(),
        this.len(),
        this.len() - judged.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(rate: f64, clean: bool, d: f64, cpu: f64, p50: f64) -> Value {
        json!({"rate": rate, "clean": clean, "deliveries_per_sec": d, "server_cpu": cpu,
               "generator_cpu": 0.5, "p50_us": p50, "p99_us": p50 * 3.0})
    }

    fn fanout(target: &str, steps: Vec<Value>) -> Value {
        // As the generator writes it: the best clean step apart.
        let best = steps
            .iter()
            .filter(|s| s["clean"] == true)
            .max_by(|a, b| num(&a["rate"]).total_cmp(&num(&b["rate"])))
            .cloned();
        let rest: Vec<Value> = steps
            .into_iter()
            .filter(|s| Some(s) != best.as_ref())
            .collect();
        json!({"scenario": "fanout", "target": target, "topics": 1, "subscribers": 1000,
               "best": best, "steps": rest, "rss_before_bytes": 1_000_000.0})
    }

    #[test]
    fn highest_common_clean_step() {
        let ours = fanout(
            "pubsub",
            vec![
                step(500.0, true, 5e5, 0.5, 100.0),
                step(700.0, true, 7e5, 0.6, 100.0),
                step(980.0, true, 9.8e5, 0.9, 100.0),
                step(1372.0, false, 1e6, 1.0, 100.0),
                step(1176.0, true, 1.17e6, 1.0, 100.0),
            ],
        );
        let floor = fanout(
            "floor",
            vec![
                step(500.0, true, 5e5, 0.4, 50.0),
                step(700.0, true, 7e5, 0.5, 50.0),
                // Lost messages at 980: 700 is the highest rate both sustain.
                step(980.0 * (1.0 + 1e-12), false, 9e5, 0.6, 50.0),
                step(840.0, true, 8.4e5, 0.55, 50.0),
            ],
        );
        let (a, b) = highest_common_clean(&ours, &floor, f64::INFINITY).expect("common step");
        assert_eq!(num(&a["rate"]), 700.0);
        assert_eq!(num(&b["rate"]), 700.0);
        // Below a cap, the highest common step under it.
        let (a, _) = highest_common_clean(&ours, &floor, 600.0).expect("common step");
        assert_eq!(num(&a["rate"]), 500.0);
        assert!(highest_common_clean(&ours, &floor, 400.0).is_none());

        let rows = vec![ours, floor];
        let t = &compute(&rows)[0];
        assert_eq!(t.key, "1-floor");
        // 7e5 / 0.6 against 7e5 / 0.5.
        let f = t.figure.expect("figure");
        assert!((f - 0.5 / 0.6).abs() < 1e-9, "{f}");
        assert_eq!(t.met(), Some(false));
    }

    #[test]
    fn step_at_eighty_percent_and_p50_ratio() {
        // pubsub's best clean rate 1,372: 80 % is 1,097.6, so 980.
        let ours = fanout(
            "pubsub",
            vec![
                step(500.0, true, 5e5, 0.5, 100.0),
                step(980.0, true, 9.8e5, 0.9, 300.0),
                step(1372.0, true, 1.37e6, 1.0, 900.0),
                step(1920.8, false, 1.5e6, 1.0, 9000.0),
            ],
        );
        let redis = fanout(
            "redis",
            vec![
                step(500.0, true, 5e5, 0.5, 80.0),
                step(980.0, true, 9.8e5, 0.9, 100.0),
                step(1372.0, false, 1.2e6, 1.0, 5000.0),
            ],
        );
        assert_eq!(best_rate(&ours), Some(1372.0));
        let (a, b) = step_at_80(&ours, &redis).expect("a step");
        assert_eq!((num(&a["rate"]), num(&b["rate"])), (980.0, 980.0));
        let rows = vec![ours, redis];
        let t = compute(&rows)
            .into_iter()
            .find(|t| t.key == "2-p50")
            .expect("row");
        assert_eq!(t.figure, Some(3.0));
        assert_eq!(t.met(), Some(false));
    }

    #[test]
    fn generator_capped_peers_compare_per_cpu_second() {
        let mut ours = fanout(
            "pubsub",
            vec![
                step(500.0, true, 5e5, 0.5, 1.0),
                step(700.0, true, 7e5, 0.5, 1.0),
            ],
        );
        let mut nats = fanout(
            "nats-tcp",
            vec![
                step(500.0, true, 5e5, 0.8, 1.0),
                step(700.0, true, 7e5, 0.8, 1.0),
            ],
        );
        // Not capped: best deliveries/s, 1.0×.
        let rows = vec![ours.clone(), nats.clone()];
        let t = compute(&rows)
            .into_iter()
            .find(|t| t.key == "1-nats-tcp")
            .expect("row");
        assert_eq!(t.figure, Some(1.0));
        ours["best"]["generator_cpu"] = json!(0.97);
        nats["best"]["generator_cpu"] = json!(0.95);
        let rows = vec![ours, nats];
        let t = compute(&rows)
            .into_iter()
            .find(|t| t.key == "1-nats-tcp")
            .expect("row");
        assert_eq!(t.figure, Some(0.8 / 0.5));
        assert_eq!(t.met(), Some(true));
    }

    #[test]
    fn core_and_memory_figures() {
        let mut f = fanout("pubsub", vec![step(500.0, true, 5e5, 0.5, 1.0)]);
        f["best"]["server_rss_bytes"] = json!(1_000_000.0 + 1000.0 * 8192.0);
        let rows = vec![
            f,
            json!({"scenario": "core", "bench": "publish+drain to 1000", "median_ns": 40000.0, "deliveries": 1000}),
            json!({"scenario": "core", "bench": "publish+drain to 1000 with 10,000 idle patterns", "median_ns": 41000.0, "deliveries": 1000}),
            json!({"scenario": "core-allocations", "publish_only": 23.0, "publish_and_drain": 17.0, "subscribers": 1000}),
        ];
        let t = compute(&rows);
        let get = |k: &str| t.iter().find(|t| t.key == k).and_then(|t| t.figure);
        assert_eq!(get("6-core"), Some(25e6));
        assert_eq!(get("6-alloc"), Some(0.017));
        assert_eq!(get("7-load"), Some(8192.0));
        assert_eq!(get("7-idle"), None);
        // The topic's id window (per topic) is not counted per connection.
        let mut rows = rows;
        rows[0]["best"]["server_dedup_bytes"] = json!(1000.0 * 2048.0);
        let t = compute(&rows);
        let load = t.iter().find(|t| t.key == "7-load").expect("row");
        assert_eq!(load.figure, Some(6144.0));
        assert!(load.detail.contains("8.0 KiB with it"), "{}", load.detail);
        assert_eq!(get("9-with 10,000 idle patterns"), Some(1.025));
    }

    #[test]
    fn spread_min_median_max() {
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&[2.0]), Some((2.0, 2.0, 2.0)));
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((1.0, 2.0, 3.0)));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), Some((1.0, 2.5, 4.0)));
        assert_eq!(spread(&[1.0, f64::NAN, 3.0]), Some((1.0, 2.0, 3.0)));
    }

    #[test]
    fn renders_without_data_and_with_spread() {
        let mut md = String::new();
        section(&mut md, &[], &[], 0, "scripts/bench.sh");
        assert!(md.contains(
            "| 8. Cluster fan-out (A → B) ÷ the single node | – (cluster or single-node fan-out missing) | ≥ 0.80× | – |"
        ));
        // Tiny numbers: zero CPU, no best step.
        let rows = vec![
            json!({"scenario": "fanout", "target": "pubsub", "topics": 1, "best": null, "steps": [step(200.0, false, 0.0, 0.0, 0.0)]}),
            json!({"scenario": "fanout", "target": "floor", "topics": 1, "best": step(200.0, true, 1e4, 0.0, 5.0), "steps": []}),
            json!({"scenario": "latency", "target": "pubsub", "rate": 500, "subscribers": 20, "step": step(500.0, true, 1e4, 0.0, 9.0)}),
        ];
        let runs = vec![
            ("a.jsonl".to_string(), rows.clone()),
            ("b.jsonl".to_string(), vec![]),
        ];
        let mut md = String::new();
        section(&mut md, &rows, &runs, 3, "scripts/bench.sh --runs 3");
        assert!(md.contains("over 2 runs"));
        assert!(md.contains("| – | 0 of 2 |"));
        assert!(
            md.contains("This run: 0 of 14 targets met; 14 without a figure."),
            "{md}"
        );
        assert!(!complete(&rows));
    }
}
