//! What carries a connection's lines: a [`LineSource`] that reads requests and a [`LineSink`]
//! that writes replies and events. The socket's are here; the web bridge's WebSocket brings its
//! own (`crate::bridge`), so both speak the protocol through the same connection code.

use super::endpoint::Stream;
use agent_ipc::{ErrorCode, ErrorObject, FrameError, LineReader};
use std::future::Future;
use tokio::io::{AsyncWriteExt, BufReader, ReadHalf, WriteHalf};

/// What the next read of a connection gave.
#[derive(Debug)]
pub enum Inbound {
    /// One request line, without its newline.
    Line(String),
    /// A message that is not a request (too large, not text): answered with this error
    /// (without an id), and the connection goes on.
    Unreadable(ErrorObject),
    /// The client has finished sending.
    End,
    /// The transport failed; the connection is dropped.
    Failed,
}

/// Reads a connection's messages. `next` must be cancel-safe: it is raced against timers.
pub trait LineSource: Send {
    /// The next message.
    fn next(&mut self) -> impl Future<Output = Inbound> + Send;
}

/// Writes a connection's messages.
pub trait LineSink: Send + 'static {
    /// Writes `line` (one encoded message, its newline included) and flushes it.
    fn send(&mut self, line: &[u8]) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// The socket's read half, one line a request.
pub(super) struct SocketSource(LineReader<BufReader<ReadHalf<Stream>>>);

/// The socket's write half.
pub(super) struct SocketSink(WriteHalf<Stream>);

/// The two halves of a socket connection.
pub(super) fn socket(stream: Stream) -> (SocketSource, SocketSink) {
    let (read, write) = tokio::io::split(stream);
    (
        SocketSource(LineReader::new(BufReader::new(read))),
        SocketSink(write),
    )
}

impl LineSource for SocketSource {
    async fn next(&mut self) -> Inbound {
        match self.0.next_line().await {
            Ok(Some(line)) => Inbound::Line(line),
            Ok(None) => Inbound::End,
            Err(FrameError::TooLarge { limit }) => Inbound::Unreadable(ErrorObject::new(
                ErrorCode::MessageTooLarge,
                format!("message longer than {limit} bytes; it was skipped"),
            )),
            Err(FrameError::NotUtf8) => Inbound::Unreadable(ErrorObject::new(
                ErrorCode::BadRequest,
                "message is not valid UTF-8",
            )),
            Err(e) => {
                tracing::debug!(error = %e, "connection read failed");
                Inbound::Failed
            }
        }
    }
}

impl LineSink for SocketSink {
    async fn send(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.0.write_all(line).await?;
        self.0.flush().await
    }
}
