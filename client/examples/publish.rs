//! Publishes numbered messages, one a second, each under its own id:
//! a publish that fails in transit (kill and restart a cluster node
//! meanwhile) is retried under that id, so it is stored once. A refusal
//! (`TOPIC_NOT_FOUND`: an in-memory server restarted without the topic)
//! ends it.
//!
//! ```sh
//! cargo run -p pubsub-client --example publish -- http://127.0.0.1:4000 demo.eu 10
//! ```

use pubsub_client::Client;
use serde_json::json;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), pubsub_client::Error> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:4000".into());
    let topic = args.next().unwrap_or_else(|| "demo".into());
    let count: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);

    let mut client = Client::new(&server);
    if let Ok(key) = std::env::var("PUBSUB_API_KEY") {
        client = client.with_credential(key);
    }
    // A run-unique prefix: ids are compared within the server's dedup
    // window, so a second run must not reuse the first one's.
    let run = std::process::id();
    for n in 1..=count {
        let id = format!("example-{run}-{n}");
        let receipt = client.publish(&topic, json!({ "n": n }), Some(id)).await?;
        println!(
            "{topic} #{} id {} ({} attempt(s){})",
            receipt.seq,
            receipt.id,
            receipt.attempts,
            if receipt.duplicate { ", duplicate" } else { "" }
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}
