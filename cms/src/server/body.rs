//! The whole-body deadline: a request body that has not fully arrived by its deadline fails,
//! and the request's connection is closed unanswered.

use hyper::body::{Body, Frame, SizeHint};
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use thiserror::Error;

/// The request body did not arrive in full before its deadline.
#[derive(Debug, Error)]
#[error("the request body did not arrive within {0:?}")]
pub(super) struct BodyTimedOut(pub Duration);

/// A request body that fails once its deadline passes before its end has arrived, however its
/// bytes are spread out (one byte a second is cut off like no byte at all). Whether it failed
/// so is kept in a flag the server reads after the handler answers.
#[derive(Debug)]
pub(super) struct DeadlineBody<B> {
    inner: B,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl<B> DeadlineBody<B> {
    /// `inner`, which must end within `timeout` from now; `timed_out` is set if it does not.
    pub(super) fn new(inner: B, timeout: Duration, timed_out: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timed_out,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that yields one byte, then nothing ever again.
    struct OneByteThenSilence(bool);

    impl Body for OneByteThenSilence {
        type Data = axum::body::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            if self.0 {
                Poll::Pending
            } else {
                self.0 = true;
                Poll::Ready(Some(Ok(Frame::data(axum::body::Bytes::from_static(b"{")))))
            }
        }
    }

    #[tokio::test]
    async fn a_body_that_stops_fails_at_its_deadline_and_says_so() {
        let flag = Arc::new(AtomicBool::new(false));
        let body = DeadlineBody::new(
            OneByteThenSilence(false),
            Duration::from_millis(200),
            flag.clone(),
        );
        let started = std::time::Instant::now();
        let result = body.collect().await;
        assert!(result.is_err());
        assert!(flag.load(Ordering::SeqCst));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[tokio::test]
    async fn a_complete_body_passes_untouched() {
        let flag = Arc::new(AtomicBool::new(false));
        let body = DeadlineBody::new(
            http_body_util::Full::new(axum::body::Bytes::from_static(b"{}")),
            Duration::from_secs(5),
            flag.clone(),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{}");
        assert!(!flag.load(Ordering::SeqCst));
    }
}
