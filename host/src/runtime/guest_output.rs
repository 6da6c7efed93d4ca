//! A guest's stderr: writing to it never fails, however much the guest
//! writes over the life of its instance; the last bytes written during
//! the current call are kept, so that a trap's reply can quote its panic
//! message, and each line goes to the host's log (`guest_log.rs`).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;

use super::guest_log::{LineLog, LogBudget};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How many of the last bytes of a call's output are kept.
const KEPT_BYTES: usize = 4096;
/// How much the guest may write in one go.
const WRITE_PERMIT: usize = 64 << 10;

/// The output of one guest instance; clones share it.
#[derive(Clone)]
pub struct GuestOutput {
    tail: Arc<Mutex<Tail>>,
}

/// The last [`KEPT_BYTES`] written since the current call started, and the
/// lines on their way to the log.
struct Tail {
    bytes: Vec<u8>,
    /// Whether earlier bytes of this call were dropped.
    truncated: bool,
    log: LineLog,
}

impl GuestOutput {
    /// The stderr of an instance whose lines are logged under `budget`.
    pub fn new(budget: Arc<LogBudget>) -> Self {
        let tail = Tail { bytes: Vec::new(), truncated: false, log: LineLog::new(budget) };
        Self { tail: Arc::new(Mutex::new(tail)) }
    }

    /// Logs the call's last line if it had no newline: called at the end of
    /// each call, still in its invocation's span.
    pub fn finish_call(&self) {
        self.lock().log.end_line();
    }

    /// Forgets what earlier calls wrote.
    pub fn start_call(&self) {
        let mut tail = self.lock();
        tail.bytes.clear();
        tail.truncated = false;
    }

    /// What the guest wrote during the current call (its end, if it wrote
    /// more than is kept), lossily decoded and trimmed.
    pub fn current_call(&self) -> String {
        let tail = self.lock();
        let text = String::from_utf8_lossy(&tail.bytes);
        let text = text.trim();
        if tail.truncated && !text.is_empty() { format!("…{text}") } else { text.to_string() }
    }

    fn append(&self, bytes: &[u8]) {
        let mut tail = self.lock();
        tail.log.write(bytes);
        let keep_new = &bytes[bytes.len().saturating_sub(KEPT_BYTES)..];
        let overflow = (tail.bytes.len() + keep_new.len()).saturating_sub(KEPT_BYTES);
        if overflow > 0 || keep_new.len() < bytes.len() {
            tail.truncated = true;
        }
        tail.bytes.drain(..overflow);
        tail.bytes.extend_from_slice(keep_new);
    }

    fn lock(&self) -> MutexGuard<'_, Tail> {
        // The tail is plain bytes: a panic while it was held leaves it valid.
        self.tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    /// Always ready: writes never wait.
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_end_of_the_current_call_only() {
        let mut output = GuestOutput::new(LogBudget::new());
        for _ in 0..100 {
            output.write(Bytes::from(vec![b'x'; 1000])).unwrap();
        }
        assert_eq!(output.check_write().unwrap(), WRITE_PERMIT, "output never fills up");
        output.write(Bytes::from_static(b"\npanicked at the end\n")).unwrap();
        let text = output.current_call();
        assert!(text.starts_with('…') && text.ends_with("panicked at the end"), "{text}");
        assert!(text.len() <= KEPT_BYTES + '…'.len_utf8());

        output.start_call();
        assert_eq!(output.current_call(), "");
        output.write(Bytes::from_static(b" short ")).unwrap();
        assert_eq!(output.current_call(), "short");
    }

    #[test]
    fn one_write_larger_than_what_is_kept_keeps_its_end() {
        let mut output = GuestOutput::new(LogBudget::new());
        let mut bytes = vec![b'a'; 2 * KEPT_BYTES];
        bytes.extend_from_slice(b"end");
        output.write(Bytes::from(bytes)).unwrap();
        let text = output.current_call();
        assert!(text.starts_with("…aaa") && text.ends_with("aend"));
        assert_eq!(text.len(), KEPT_BYTES + '…'.len_utf8());
    }
}
