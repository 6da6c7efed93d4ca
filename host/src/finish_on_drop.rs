//! A future that, if its caller stops waiting for it, is not cancelled but
//! finishes in a task of its own: the one way the host keeps work going
//! when its caller goes away. An invocation runs inline while its caller
//! waits (no task to spawn, no thread to wake), yet a command that commits
//! always runs what follows it, and a deploy that started always ends in
//! storage and in memory alike, even if the client hangs up.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs `F` to completion, in the caller's task or, once the caller drops
/// it, in a spawned one (whose output is discarded).
pub(crate) struct FinishOnDrop<F: Future<Output: Send> + Send + 'static> {
    future: Option<Pin<Box<F>>>,
}

impl<F: Future<Output: Send> + Send + 'static> FinishOnDrop<F> {
    pub(crate) fn new(future: F) -> Self {
        Self { future: Some(Box::pin(future)) }
    }
}

impl<F: Future<Output: Send> + Send + 'static> Future for FinishOnDrop<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let future = self.future.as_mut().expect("polled after completion");
        let output = std::task::ready!(future.as_mut().poll(cx));
        self.future = None;
        Poll::Ready(output)
    }
}

impl<F: Future<Output: Send> + Send + 'static> Drop for FinishOnDrop<F> {
    fn drop(&mut self) {
        if let Some(future) = self.future.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(future);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn finishes_when_awaited_and_when_abandoned() {
        assert_eq!(FinishOnDrop::new(async { 7 }).await, 7);

        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let work = FinishOnDrop::new(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
        });
        let abandoned = tokio::time::timeout(Duration::from_millis(10), work).await;
        assert!(abandoned.is_err(), "the caller stopped waiting");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(finished.load(Ordering::SeqCst), "the work went on without it");
    }
}
