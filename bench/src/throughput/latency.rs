//! Latency at a fixed offered rate: percentiles of send-to-receive time.

use super::*;

#[derive(Serialize)]
pub struct LatencyResult {
    scenario: &'static str,
    target: Target,
    label: String,
    subscribers: usize,
    rate: f64,
    /// The window with the median p99.
    step: Step,
    /// Every window's p99, in the order they ran.
    p99_windows_us: Vec<f64>,
}

pub async fn run(a: LatencyArgs) -> std::io::Result<LatencyResult> {
    let c = a.common.clone();
    let topics = topic_names(1);
    create_topic(&c, TOPIC).await?;
    let base = Instant::now();
    let tally = Tally::new(base);
    subscribers(&c, a.subscribers, &topics, &tally).await?;
    let mut outs = [publisher(&c).await?];
    // Warm up for a second, then measure.
    publish_at(&c, &mut outs, &topics, base, a.rate, 1.0).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut windows = Vec::with_capacity(a.repeat.max(1));
    for _ in 0..a.repeat.max(1) {
        let step = run_step(
            &c,
            &mut outs,
            &topics,
            base,
            &tally,
            a.subscribers,
            a.rate,
            a.secs,
            Duration::from_secs(2),
        )
        .await?;
        eprintln!(
            "{:?} latency at {:.0}/s: p50 {:.0} µs p99 {:.0} µs p99.9 {:.0} µs",
            c.target, a.rate, step.p50_us, step.p99_us, step.p999_us
        );
        windows.push(step);
    }
    let p99_windows_us: Vec<f64> = windows.iter().map(|w| w.p99_us).collect();
    windows.sort_by(|x, y| x.p99_us.total_cmp(&y.p99_us));
    let step = windows.swap_remove(windows.len() / 2);
    Ok(LatencyResult {
        scenario: if c.publish_addr.is_some() {
            "cluster-latency"
        } else {
            "latency"
        },
        target: c.target,
        label: c.label.clone(),
        subscribers: a.subscribers,
        rate: a.rate,
        step,
        p99_windows_us,
    })
}
