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
    /// `stop` as a flag: read without a lock (a token's `is_cancelled`
    /// takes one), by every WebSocket writer each time it parks.
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the shutdown.
    pub fn trigger(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::SeqCst)
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

/// Takes over SIGINT and SIGTERM now (from this call on, neither kills the
/// process) and returns a future that resolves on the first of them. Call
/// it before saying the server listens: a supervisor may stop the server
/// the moment it reads that line.
#[cfg(unix)]
pub fn signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut i), Ok(mut t)) => {
                tokio::select! {
                    _ = i.recv() => {},
                    _ = t.recv() => {},
                }
            }
            (Ok(mut only), Err(_)) | (Err(_), Ok(mut only)) => {
                only.recv().await;
            }
            (Err(_), Err(_)) => std::future::pending::<()>().await,
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await
        }
    }
}
