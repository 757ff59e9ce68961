//! JSON-lines framing: one message per line, at most [`MAX_MESSAGE_BYTES`] bytes before the
//! newline. The reader never holds more than that cap of one line in memory; an over-long line
//! is reported once and the rest of it skipped, so the connection can go on.

use crate::wire::MAX_MESSAGE_BYTES;
use serde::Serialize;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// Why a line could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The line is longer than the cap; the rest of it is skipped by the next read.
    #[error("message longer than {limit} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The line is not UTF-8.
    #[error("message is not valid UTF-8")]
    NotUtf8,
    /// The message could not be encoded as JSON.
    #[error("message could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    /// The stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads newline-terminated lines with a length cap. Cancel-safe: every byte taken from the
/// stream is kept in `self`, so dropping a pending [`LineReader::next_line`] loses nothing.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    line: Vec<u8>,
    limit: usize,
    /// Inside an over-long line that has been reported: drop bytes up to its newline.
    skipping: bool,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// A reader with the protocol's cap, [`MAX_MESSAGE_BYTES`].
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, MAX_MESSAGE_BYTES)
    }

    /// A reader with another cap (for tests).
    pub fn with_limit(inner: R, limit: usize) -> Self {
        Self {
            inner,
            line: Vec::new(),
            limit,
            skipping: false,
        }
    }

    /// The next line without its newline (a trailing `\r` is dropped too); `Ok(None)` at the end
    /// of the stream. A final line without a newline is returned as a line. An over-long line
    /// gives [`FrameError::TooLarge`] as soon as the cap is passed, and the following call
    /// starts after that line's newline.
    pub async fn next_line(&mut self) -> Result<Option<String>, FrameError> {
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                // End of stream.
                self.skipping = false;
                if self.line.is_empty() {
                    return Ok(None);
                }
                return self.take_line().map(Some);
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let chunk_len = newline.unwrap_or(available.len());
            if self.skipping {
                let used = newline.map_or(chunk_len, |n| n + 1);
                self.inner.consume(used);
                if newline.is_some() {
                    self.skipping = false;
                }
                continue;
            }
            if self.line.len() + chunk_len > self.limit {
                // Over the cap: drop what we hold and skip up to the newline.
                let used = newline.map_or(chunk_len, |n| n + 1);
                self.inner.consume(used);
                self.line.clear();
                self.line.shrink_to(self.limit.min(4096));
                self.skipping = newline.is_none();
                return Err(FrameError::TooLarge { limit: self.limit });
            }
            self.line.extend_from_slice(&available[..chunk_len]);
            match newline {
                Some(n) => {
                    self.inner.consume(n + 1);
                    return self.take_line().map(Some);
                }
                None => self.inner.consume(chunk_len),
            }
        }
    }

    fn take_line(&mut self) -> Result<String, FrameError> {
        let mut bytes = std::mem::take(&mut self.line);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        String::from_utf8(bytes).map_err(|_| FrameError::NotUtf8)
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

/// `message` as one JSON line, newline included. Fails with [`FrameError::TooLarge`] when it
/// would pass the cap.
pub fn encode_line<T: Serialize + ?Sized>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut bytes = serde_json::to_vec(message)?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(FrameError::TooLarge {
            limit: MAX_MESSAGE_BYTES,
        });
    }
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes `message` as one JSON line and flushes.
pub async fn write_message<W, T>(writer: &mut W, message: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize + ?Sized,
{
    let bytes = encode_line(message)?;
    writer.write_all(&bytes).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn lines(input: &[u8], limit: usize, buf: usize) -> Vec<Result<String, String>> {
        let mut reader = LineReader::with_limit(BufReader::with_capacity(buf, input), limit);
        let mut out = Vec::new();
        loop {
            match reader.next_line().await {
                Ok(Some(line)) => out.push(Ok(line)),
                Ok(None) => break,
                Err(e) => out.push(Err(e.to_string())),
            }
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_the_last_without_newline() {
        let got = lines(b"{\"a\":1}\r\n\nabc", 64, 3).await;
        assert_eq!(
            got,
            vec![Ok("{\"a\":1}".into()), Ok(String::new()), Ok("abc".into())]
        );
    }

    #[tokio::test]
    async fn over_long_line_is_reported_once_and_skipped() {
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\nok\n");
        for buf in [1, 7, 64, 4096] {
            let got = lines(&input, 10, buf).await;
            assert_eq!(got.len(), 2, "buffer {buf}: {got:?}");
            assert!(got[0].as_ref().is_err_and(|e| e.contains("longer than 10")));
            assert_eq!(got[1], Ok("ok".into()));
        }
        // Exactly at the cap is fine.
        assert_eq!(
            lines(b"0123456789\n", 10, 4).await,
            vec![Ok("0123456789".into())]
        );
    }

    #[tokio::test]
    async fn holds_no_more_than_the_cap() {
        let input = vec![b'y'; 1 << 20];
        let mut reader = LineReader::with_limit(BufReader::with_capacity(512, &input[..]), 1000);
        assert!(matches!(
            reader.next_line().await,
            Err(FrameError::TooLarge { limit: 1000 })
        ));
        assert!(reader.line.capacity() <= 4096);
        assert!(matches!(reader.next_line().await, Ok(None)));
    }

    #[tokio::test]
    async fn non_utf8_is_an_error_and_the_next_line_still_reads() {
        let got = lines(b"\xff\xfe\nfine\n", 64, 8).await;
        assert_eq!(got[0], Err("message is not valid UTF-8".into()));
        assert_eq!(got[1], Ok("fine".into()));
    }

    #[tokio::test]
    async fn writes_one_line() {
        let mut out = Vec::new();
        write_message(&mut out, &serde_json::json!({"id":1,"method":"status"}))
            .await
            .unwrap();
        assert_eq!(out, b"{\"id\":1,\"method\":\"status\"}\n");
        let big = "z".repeat(MAX_MESSAGE_BYTES);
        assert!(matches!(
            encode_line(&big),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
