//! A flag and one waiter's waker: what wakes a connection's writer (its
//! outbox's signal) and each half of a connection's task
//! (`ws::session::halves`), without the lock a `Notify` takes per wake-up
//! (a publish to many parked writers raises one per writer). Like
//! `Notify::notify_one`, a signal raised while nobody waits is kept for the
//! next wait.

use futures_util::task::AtomicWaker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct Signal {
    raised: AtomicBool,
    waiter: AtomicWaker,
}

impl Signal {
    /// A signal, raised from the start or not.
    pub fn new(raised: bool) -> Self {
        Signal {
            raised: AtomicBool::new(raised),
            waiter: AtomicWaker::new(),
        }
    }

    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.waiter.wake();
    }

    /// Whether it was raised since the last take. `waiter` is registered
    /// first, so a raise right after the check wakes it.
    pub fn take(&self, waiter: &Waker) -> bool {
        self.waiter.register(waiter);
        self.raised.swap(false, Ordering::AcqRel)
    }

    /// Waits for a raise since the last wait returned. One waiter at a time.
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.take(cx.waker()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
