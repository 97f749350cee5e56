//! The core microbenchmark (`cargo bench -p pubsub-server --bench core`)
//! as result lines for the report: each criterion bench's median from
//! `target/criterion/<group>/<bench>/new/estimates.json`, and the
//! allocation counts the bench binary prints.

use serde_json::{json, Value};
use std::path::Path;
use std::time::SystemTime;

/// One `{"scenario":"core",...}` line per bench in the criterion group's
/// folder whose estimates were written at or after `since` (older folders
/// are benches of earlier runs, renamed or removed since).
pub fn medians(group: &Path, since: Option<SystemTime>) -> Vec<Value> {
    let Ok(dirs) = std::fs::read_dir(group) else {
        return Vec::new();
    };
    let mut out: Vec<Value> = dirs
        .filter_map(Result::ok)
        .filter_map(|d| one(&d.path(), since))
        .collect();
    out.sort_by(|a, b| a["bench"].as_str().cmp(&b["bench"].as_str()));
    out
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn one(dir: &Path, since: Option<SystemTime>) -> Option<Value> {
    let estimates = dir.join("new").join("estimates.json");
    if let Some(since) = since {
        let modified = std::fs::metadata(&estimates).ok()?.modified().ok()?;
        if modified < since {
            return None;
        }
    }
    let id = read_json(&dir.join("new").join("benchmark.json"))
        .or_else(|| read_json(&dir.join("benchmark.json")))?;
    // criterion names the folder after a sanitised name; the real one is here.
    let name = id["function_id"].as_str().map(str::to_owned).or_else(|| {
        id["title"]
            .as_str()
            .map(|t| t.split_once('/').map_or(t, |(_, f)| f).to_owned())
    })?;
    let median = read_json(&estimates)?["median"]["point_estimate"].as_f64()?;
    let deliveries = id["throughput"]["Elements"]
        .as_f64()
        .or_else(|| deliveries_from_name(&name))?;
    Some(json!({"scenario": "core", "bench": name, "median_ns": median, "deliveries": deliveries}))
}

/// "publish+drain to 1000 …" → 1000; "32 publishes, one drain, 10000" →
/// 320,000: the deliveries of one iteration, when criterion did not record
/// the throughput.
fn deliveries_from_name(name: &str) -> Option<f64> {
    let numbers: Vec<f64> = name
        .split(|c: char| !c.is_ascii_digit() && c != ',')
        .map(|w| w.trim_matches(','))
        .filter(|w| !w.is_empty() && !w.contains(','))
        .filter_map(|w| w.parse().ok())
        .collect();
    if let Some(rest) = name.strip_prefix("publish+drain to ") {
        return rest.split_whitespace().next()?.parse().ok();
    }
    match numbers.as_slice() {
        [publishes, subscribers] => Some(publishes * subscribers),
        _ => None,
    }
}

/// The `{"scenario":"core-allocations",...}` line from the bench binary's
/// "allocations per publish to 1000 subscribers: X (publish only, queues
/// filling), Y (publish and drain)".
pub fn allocations(log: &str) -> Option<Value> {
    let line = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("allocations per publish to "))?;
    let (subscribers, rest) = line.split_once(" subscribers: ")?;
    let (publish_only, rest) = rest.split_once(' ')?;
    let (_, and_drain) = rest.split_once("), ")?;
    let and_drain = and_drain.split_whitespace().next()?;
    Some(json!({
        "scenario": "core-allocations",
        "publish_only": publish_only.parse::<f64>().ok()?,
        "publish_and_drain": and_drain.parse::<f64>().ok()?,
        "subscribers": subscribers.parse::<f64>().ok()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_line() {
        let log = "Running benches/core.rs\nallocations per publish to 1000 subscribers: 23.0 (publish only, queues filling), 17.5 (publish and drain)\nfanout/x time: ...";
        let v = allocations(log).expect("parsed");
        assert_eq!(v["publish_only"], 23.0);
        assert_eq!(v["publish_and_drain"], 17.5);
        assert_eq!(v["subscribers"], 1000.0);
        assert!(allocations("nothing here").is_none());
        assert!(allocations("allocations per publish to many subscribers: x").is_none());
    }

    #[test]
    fn deliveries_of_a_bench_name() {
        assert_eq!(deliveries_from_name("publish+drain to 1000"), Some(1000.0));
        assert_eq!(
            deliveries_from_name("publish+drain to 1000 with 10,000 idle patterns"),
            Some(1000.0)
        );
        assert_eq!(
            deliveries_from_name("32 publishes, one drain, 10000"),
            Some(320_000.0)
        );
    }

    #[test]
    fn medians_from_criterion_folders() {
        let root = std::env::temp_dir().join(format!("corebench-test-{}", std::process::id()));
        let bench = root.join("publish_drain to 1000").join("new");
        std::fs::create_dir_all(&bench).expect("temp dir");
        std::fs::write(
            bench.join("benchmark.json"),
            r#"{"group_id":"fanout","function_id":"publish+drain to 1000","title":"fanout/publish+drain to 1000","throughput":{"Elements":1000}}"#,
        )
        .expect("write");
        std::fs::write(
            bench.join("estimates.json"),
            r#"{"mean":{"point_estimate":41000.0},"median":{"point_estimate":40000.0}}"#,
        )
        .expect("write");
        // A folder without estimates is skipped, not fatal.
        std::fs::create_dir_all(root.join("broken").join("new")).expect("temp dir");
        let lines = medians(&root, None);
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["bench"], "publish+drain to 1000");
        assert_eq!(lines[0]["median_ns"], 40000.0);
        assert_eq!(lines[0]["deliveries"], 1000.0);
    }
}
