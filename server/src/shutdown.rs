//! Graceful shutdown as a value passed down, not a global.
//!
//! `stop` is cancelled on SIGINT/SIGTERM (or by a test). The HTTP server
//! stops accepting; every WebSocket session sees it, sends
//! `info shutting_down`, flushes its queue and closes with 1001. axum does
//! not wait for upgraded connections, so each session runs inside `tasks`,
//! and `main` waits for them, up to a deadline.

use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Shutdown {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the shutdown.
    pub fn trigger(&self) {
        self.stop.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.stop.is_cancelled()
    }

    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub async fn triggered(&self) {
        self.stop.cancelled().await
    }

    /// Runs `session` as a tracked task: shutdown waits for it.
    pub fn track<F>(
        &self,
        session: F,
    ) -> impl std::future::Future<Output = F::Output> + Send + 'static
    where
        F: std::future::Future + Send + 'static,
    {
        self.tasks.track_future(session)
    }

    /// Waits until every tracked session ended, or `deadline` passed.
    /// Returns how many sessions were still running at the deadline.
    pub async fn drain(&self, deadline: Duration) -> usize {
        self.tasks.close();
        match tokio::time::timeout(deadline, self.tasks.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tasks.len(),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
