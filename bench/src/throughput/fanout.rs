//! Fan-out: one topic (or many, with several publishers), N subscribers,
//! the offered rate stepped up until the target loses or lags; the best
//! step without loss is the result.

use super::*;

#[derive(Serialize)]
pub struct FanoutResult {
    scenario: &'static str,
    target: Target,
    topics: usize,
    publishers: usize,
    label: String,
    subscribers: usize,
    payload: usize,
    connect_secs: f64,
    /// The highest step delivered without loss.
    best: Option<Step>,
    steps: Vec<Step>,
    /// The server's resident memory before the subscribers connected (the
    /// topics exist already); each step records it at its end.
    rss_before_bytes: Option<u64>,
    server_rss_bytes: Option<u64>,
}

pub async fn run(a: FanoutArgs) -> std::io::Result<FanoutResult> {
    let c = a.common.clone();
    let topics = topic_names(a.topics);
    for t in &topics {
        create_topic(&c, t).await?;
    }
    let rss_before = c.server_pid.and_then(procstat::sample).map(|s| s.rss_bytes);
    let base = Instant::now();
    let tally = Tally::new(base);
    let connect = subscribers(&c, a.subscribers, &topics, &tally).await?;
    let mut outs = Vec::with_capacity(a.publishers);
    for _ in 0..a.publishers.max(1) {
        outs.push(publisher(&c).await?);
    }
    let per_topic = a.subscribers / topics.len();
    let mut steps: Vec<Step> = Vec::new();
    let mut rate = a.start_rate;
    let (mut low, mut high, mut bisections) = (0.0f64, None::<f64>, 0);
    while rate <= a.max_rate {
        let step = run_step(
            &c,
            &mut outs,
            &topics,
            base,
            &tally,
            per_topic,
            rate,
            a.step_secs,
            Duration::from_secs(1),
        )
        .await?;
        let (clean, server_cpu, generator_cpu) = (step.clean, step.server_cpu, step.generator_cpu);
        eprintln!(
            "{:?} rate {rate:.0}/s: {:.0} deliveries/s, p99 {:.0} µs, server cpu {:.0}%, generator cpu {:.0}%{}",
            c.target,
            step.deliveries_per_sec,
            step.p99_us,
            server_cpu * 100.0,
            generator_cpu * 100.0,
            if clean { "" } else { "  ← loss" }
        );
        let errors = tally.borrow().errors;
        steps.push(step);
        // Grow geometrically until a step loses messages, then bisect
        // between the last clean rate and the lossy one (while no
        // subscriber was disconnected, which would spoil later steps).
        if clean {
            low = rate;
        } else {
            high = Some(rate);
        }
        match high {
            None => rate *= a.factor,
            Some(h) if errors == 0 && bisections < a.bisections && low > 0.0 => {
                bisections += 1;
                rate = (low + h) / 2.0;
                // Let the backlog of the lossy step drain first.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = tally.borrow().received;
            }
            Some(_) => break,
        }
    }
    let best_index = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.clean)
        .max_by(|a, b| a.1.rate.total_cmp(&b.1.rate))
        .map(|(i, _)| i);
    let best = best_index.map(|i| steps.remove(i));
    Ok(FanoutResult {
        scenario: match (c.publish_addr.is_some(), topics.len() > 1) {
            (true, _) => "cluster-fanout",
            (false, true) => "topics",
            (false, false) => "fanout",
        },
        target: c.target,
        topics: topics.len(),
        publishers: outs.len(),
        label: c.label.clone(),
        subscribers: a.subscribers,
        payload: c.payload,
        connect_secs: connect.as_secs_f64(),
        best,
        steps,
        rss_before_bytes: rss_before,
        server_rss_bytes: c.server_pid.and_then(procstat::sample).map(|s| s.rss_bytes),
    })
}
