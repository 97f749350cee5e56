use pubsub_server::config::{Config, ConfigError, LogFormat};
use pubsub_server::shutdown::{self, Shutdown};
use pubsub_server::AppState;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        // --help, --version and flag errors: clap prints and picks the code.
        Err(ConfigError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("pubsub-server: {e}");
            return ExitCode::from(2);
        }
    };
    if config.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    init_logs(config.log_format);
    // Signals are ours before anyone can read that we listen.
    let signalled = shutdown::signal();
    let listener = match tokio::net::TcpListener::bind(config.addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %config.addr, error = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, "pubsub-server listening: UI at http://{addr}/, REST at /api, WebSocket at /ws");
    let stop = Shutdown::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        signalled.await;
        // Trigger first: nothing may stand between the signal and the
        // shutdown, not even a log line to a stderr that is gone.
        trigger.trigger();
        tracing::info!("shutting down");
    });
    let state = match AppState::start(config, stop).await {
        Ok(state) => state,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    if let Some(url) = &state.config.cluster_nats {
        tracing::info!(%url, "cluster mode: topics, seq and history live in NATS JetStream");
    }
    match pubsub_server::serve(listener, state).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr);
    match format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

/// stderr for the logs, ignoring write errors: when whoever reads our
/// stderr is gone (EPIPE), a log line is lost, never a panic that would take
/// the shutdown or a session down with it.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
