//! The connection's two halves run in its one task, each polled only when
//! something it waits on woke it.
//!
//! `tokio::join!` hands both halves the task's one waker, so every wake-up
//! polls both: each event written to an idle subscriber also polled its
//! reader (the socket's readiness, the shutdown and close tokens, whose
//! `is_cancelled` takes a lock, the token's expiry timer). Profiled during a
//! broadcast to 19,000 idle connections, that was about a tenth of the
//! server's CPU. Here each half gets a waker of its own that marks it due
//! and wakes the task; the task polls the halves that are due.

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// One half's waker: marks the half due, then wakes the task. Each half
/// has its own (no state shared between them), so a wake-up touches one
/// small allocation besides the task.
struct Half {
    due: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Half {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.due.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Half {
    fn new() -> Arc<Self> {
        Arc::new(Half {
            due: AtomicBool::new(true),
            task: AtomicWaker::new(),
        })
    }

    /// Whether it was woken since the last call; the task is registered
    /// first, so a wake-up right after the check polls again.
    fn take_due(&self, task: &Waker) -> bool {
        self.task.register(task);
        self.due.swap(false, Ordering::AcqRel)
    }
}

/// Runs `first` and `second` to completion in the calling task, like
/// `tokio::join!`, but polls each only when its own waker fired (both at
/// the start).
pub(super) fn join<A, B>(first: A, second: B) -> Join<A, B>
where
    A: Future<Output = ()>,
    B: Future<Output = ()>,
{
    let halves = [Half::new(), Half::new()];
    Join {
        first: Some(first),
        second: Some(second),
        wakers: [
            Waker::from(Arc::clone(&halves[0])),
            Waker::from(Arc::clone(&halves[1])),
        ],
        halves,
    }
}

pin_project! {
    /// A struct, not an `async fn`: the halves are pinned where they are,
    /// not moved into a second slot of a generator (the session's future
    /// would hold both).
    pub(super) struct Join<A, B> {
        #[pin]
        first: Option<A>,
        #[pin]
        second: Option<B>,
        halves: [Arc<Half>; 2],
        // The same two, as wakers for the halves' contexts.
        wakers: [Waker; 2],
    }
}

impl<A, B> Future for Join<A, B>
where
    A: Future<Output = ()>,
    B: Future<Output = ()>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let (halves, wakers) = (&*this.halves, &*this.wakers);
        if let Some(first) = this.first.as_mut().as_pin_mut() {
            if halves[0].take_due(cx.waker())
                && first.poll(&mut Context::from_waker(&wakers[0])).is_ready()
            {
                this.first.set(None);
            }
        }
        if let Some(second) = this.second.as_mut().as_pin_mut() {
            if halves[1].take_due(cx.waker())
                && second.poll(&mut Context::from_waker(&wakers[1])).is_ready()
            {
                this.second.set(None);
            }
        }
        if this.first.is_none() && this.second.is_none() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Notify;

    /// Counts its polls and finishes after `rounds` notifications.
    async fn counted(notify: &Notify, polls: &AtomicUsize, rounds: usize) {
        for _ in 0..rounds {
            let notified = notify.notified();
            let mut notified = pin!(notified);
            poll_fn(|cx| {
                polls.fetch_add(1, Ordering::Relaxed);
                notified.as_mut().poll(cx)
            })
            .await;
        }
    }

    #[tokio::test]
    async fn a_wake_up_polls_only_the_half_it_woke_and_both_finish() {
        let (a, b) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (polls_a, polls_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = {
            let (a, b, polls_a, polls_b) = (a.clone(), b.clone(), polls_a.clone(), polls_b.clone());
            tokio::spawn(async move {
                join(counted(&a, &polls_a, 5), counted(&b, &polls_b, 1)).await;
            })
        };
        tokio::task::yield_now().await;
        // Five wake-ups of the first half.
        for _ in 0..5 {
            a.notify_one();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The second half was polled once, at the start, and not by the
        // first half's wake-ups.
        assert_eq!(polls_b.load(Ordering::Relaxed), 1);
        assert!(polls_a.load(Ordering::Relaxed) >= 6);
        assert!(!task.is_finished());
        b.notify_one();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("both halves finish")
            .expect("no panic");
        assert_eq!(polls_b.load(Ordering::Relaxed), 2);
    }
}
