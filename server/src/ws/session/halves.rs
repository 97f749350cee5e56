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

use crate::signal::Signal;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// One half's waker: raises the half's signal, which wakes the task. Each
/// half has its own (no state shared between them), so a wake-up touches
/// one small allocation besides the task.
struct Half(Signal);

impl Wake for Half {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.raise();
    }
}

impl Half {
    /// Due from the start: both halves are polled first.
    fn new() -> Arc<Self> {
        Arc::new(Half(Signal::new(true)))
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
        let first = poll_if_due(this.first.as_mut(), &halves[0], &wakers[0], cx);
        let second = poll_if_due(this.second.as_mut(), &halves[1], &wakers[1], cx);
        if first && second {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Polls the half in `slot` with its own waker if it was woken (the task
/// registered to be woken with it); a finished half is dropped. Whether
/// the half is done.
fn poll_if_due<F: Future<Output = ()>>(
    mut slot: Pin<&mut Option<F>>,
    half: &Half,
    waker: &Waker,
    cx: &mut Context<'_>,
) -> bool {
    let Some(future) = slot.as_mut().as_pin_mut() else {
        return true;
    };
    if half.0.take(cx.waker()) && future.poll(&mut Context::from_waker(waker)).is_ready() {
        slot.set(None);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
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
