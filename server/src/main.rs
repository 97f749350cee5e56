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
        shutdown::signal().await;
        tracing::info!("shutting down");
        trigger.trigger();
    });
    match pubsub_server::serve(listener, AppState::new(config, stop)).await {
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
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}
