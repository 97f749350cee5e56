//! What an idle WebSocket connection costs starts with the size of its
//! session's future, allocated once per connection: every future it awaits
//! is inside it. The cluster log's futures are several KiB and are
//! boxed for that reason, and so is the handling of one client frame; this
//! keeps the next one from slipping in unboxed. Measured with rustc 1.95:
//! 1,680 bytes before cluster mode, 5,688 with it unboxed, 1,864 then;
//! 2,088 when the facade was three words wide (now one pointer); 2,040
//! before tokens, 2,160 with the connection's credential and its expiry
//! timer, 2,008 once the publishes in flight were boxed and the writer
//! took only the heartbeat of the settings; 2,128 when a batch's latency
//! bins joined the writer's drain buffer, which is boxed since.

use pubsub_server::broker::Permits;
use pubsub_server::config::Config;
use pubsub_server::shutdown::Shutdown;
use pubsub_server::ws::session;
use pubsub_server::AppState;
use std::time::Duration;

#[tokio::test]
async fn a_session_future_stays_small() {
    let state = AppState::new(Config::default_for_tests(), Shutdown::new());
    let (client, server) = tokio::io::duplex(64);
    let (input, _) = tokio::io::split(client);
    let (_, output) = tokio::io::split(server);
    let settings = session::Settings {
        heartbeat: Duration::from_secs(30),
        permits: Permits::ALL,
        max_message: 1 << 20,
        remote: None,
    };
    let session = session::run(
        input,
        output,
        bytes::Bytes::new(),
        state.broker.clone(),
        settings,
        session::Standing::open(),
        state.shutdown.clone(),
        None,
    );
    let size = std::mem::size_of_val(&session);
    assert!(size <= 2 * 1024, "a session's future is {size} bytes");
}
