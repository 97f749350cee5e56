//! Many idle connections with one subscription each, then one broadcast:
//! RSS per connection and the time until every one has it.

use super::*;

#[derive(Serialize)]
pub struct IdleResult {
    scenario: &'static str,
    target: Target,
    label: String,
    connections: usize,
    connect_secs: f64,
    connects_per_sec: f64,
    rss_before_bytes: Option<u64>,
    rss_after_bytes: Option<u64>,
    rss_per_connection_bytes: Option<f64>,
    broadcast_ms: Option<f64>,
    received: u64,
}

pub async fn run(a: IdleArgs) -> std::io::Result<IdleResult> {
    let c = a.common.clone();
    create_topic(&c, TOPIC).await?;
    let rss_before = c.server_pid.and_then(procstat::sample).map(|s| s.rss_bytes);
    let base = Instant::now();
    let tally = Tally::new(base);
    let connect = subscribers(&c, a.connections, &topic_names(1), &tally).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = c.server_pid.and_then(procstat::sample).map(|s| s.rss_bytes);
    let mut out = publisher(&c).await?;
    let t0 = Instant::now();
    out.write_all(&publish_bytes(&c, TOPIC, base, 1)).await?;
    let mut done = None;
    while t0.elapsed() < Duration::from_secs(10) {
        if tally.borrow().received >= a.connections as u64 {
            done = Some(t0.elapsed());
            break;
        }
        tokio::task::yield_now().await;
    }
    let received = tally.borrow().received;
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a2)) => Some(a2.saturating_sub(b) as f64 / a.connections as f64),
        _ => None,
    };
    eprintln!(
        "{:?} idle: {} connections in {:.1} s, {:.0} B/connection, broadcast {:?}",
        c.target,
        a.connections,
        connect.as_secs_f64(),
        per_conn.unwrap_or(0.0),
        done
    );
    Ok(IdleResult {
        scenario: "idle",
        target: c.target,
        label: c.label.clone(),
        connections: a.connections,
        connect_secs: connect.as_secs_f64(),
        connects_per_sec: a.connections as f64 / connect.as_secs_f64().max(1e-9),
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        rss_per_connection_bytes: per_conn,
        broadcast_ms: done.map(|d| d.as_secs_f64() * 1000.0),
        received,
    })
}
