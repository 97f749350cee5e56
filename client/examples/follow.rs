//! Follows a topic or pattern and prints what arrives, across reconnects
//! and server restarts, saying whenever a resume could not recover.
//!
//! ```sh
//! cargo run -p pubsub-client --example follow -- http://127.0.0.1:4000 'demo.*'
//! ```
//!
//! Stop it with Ctrl-C: the subscription is closed gracefully.

use futures_util::StreamExt;
use pubsub_client::{Client, Delivery, Start, SubscribeOptions};

#[tokio::main]
async fn main() -> Result<(), pubsub_client::Error> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:4000".into());
    let topic = args.next().unwrap_or_else(|| "demo".into());

    let mut client = Client::new(&server);
    if let Ok(key) = std::env::var("PUBSUB_API_KEY") {
        client = client.with_credential(key);
    }
    // Refusals (no such topic, a bad pattern) and an unreachable server are
    // errors here; after this, the subscription reconnects by itself.
    let mut sub = client
        .subscribe(SubscribeOptions::new(&topic).start(Start::LastN(5)))
        .await?;
    println!("following {topic} on {server}");

    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let delivery = tokio::select! {
            d = sub.next() => d,
            _ = &mut stop => break,
        };
        let Some(delivery) = delivery else { break };
        match &delivery {
            Delivery::Event(e) => println!("{} #{} ({}): {}", e.topic, e.seq, e.id, e.payload),
            Delivery::Resumed {
                topic,
                recovered: true,
                after,
                ..
            } => println!("-- {topic}: back, nothing missed after #{}", after.seq),
            Delivery::Resumed { topic, .. } => {
                println!("-- {topic}: back, NOT recovered: {:?}", delivery.missing())
            }
            Delivery::Gap {
                topic, first, last, ..
            } => println!("-- {topic}: #{first} to #{last} were dropped"),
            Delivery::Disconnected { reason } => println!("-- disconnected ({reason})"),
            Delivery::Closed(reason) => {
                println!("-- closed: {reason:?}");
                return Ok(());
            }
            other => println!("-- {other:?}"),
        }
    }
    sub.close().await;
    Ok(())
}
