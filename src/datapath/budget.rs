//! Fairness between the streams of one worker thread.
//!
//! A pump that still has data when its read budget runs out must run again soon, but not before
//! the event loop has looked at its other fds. Waking itself at once is not enough: tokio's
//! current-thread scheduler polls its I/O driver only every few dozen task polls, so a busy
//! stream waking itself would starve every other stream of its worker for tens of milliseconds.
//! [`Yield`] uses `tokio::task::yield_now`, whose wake-up is deferred until the driver has run.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type YieldNow = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A pending yield to the event loop, or none. Boxed twice, so a stream that is not yielding
/// spends one pointer on it, not a fat one.
#[derive(Default)]
pub struct Yield(Option<Box<YieldNow>>);

impl Yield {
    /// Gives the event loop its turn: the caller returns `Pending` now and is polled again
    /// after the I/O driver has run.
    pub fn start(&mut self, cx: &mut Context<'_>) {
        let mut f: YieldNow = Box::pin(tokio::task::yield_now());
        if f.as_mut().poll(cx).is_pending() {
            self.0 = Some(Box::new(f));
        } else {
            cx.waker().wake_by_ref();
        }
    }

    /// `Pending` while a yield is still in progress; the caller then returns `Pending` too.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            None => Poll::Ready(()),
            Some(f) => match f.as_mut().as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.0 = None;
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
