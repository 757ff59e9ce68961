//! agent-ipc's JSON-lines framing: `LineReader` over arbitrary bytes, through a buffer of any
//! size, with a small cap, gives exactly what splitting the input at its newlines gives: each
//! line without its newline and one trailing `\r`, a line over the cap reported once as too
//! large, a line that is not UTF-8 as such, and a last line without a newline as a line.
//!
//! Input: the reader's buffer size and cap (one byte each), then the stream.
#![no_main]

use agent_ipc::{FrameError, LineReader};
use libfuzzer_sys::fuzz_target;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use tokio::io::BufReader;

#[derive(Debug, PartialEq)]
enum Got {
    Line(String),
    TooLarge,
    NotUtf8,
}

/// What the reader should give, from splitting the input.
fn expected(input: &[u8], limit: usize) -> Vec<Got> {
    if input.is_empty() {
        return Vec::new();
    }
    let body = input.strip_suffix(b"\n").unwrap_or(input);
    body.split(|&b| b == b'\n')
        .map(|line| {
            if line.len() > limit {
                return Got::TooLarge;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match std::str::from_utf8(line) {
                Ok(text) => Got::Line(text.to_owned()),
                Err(_) => Got::NotUtf8,
            }
        })
        .collect()
}

/// Polls a future that reads from memory, which is ready at once.
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a read from memory is pending"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [buffer, limit, input @ ..] = data else {
        return;
    };
    let buffer = usize::from(*buffer).max(1);
    let limit = usize::from(*limit);
    let mut reader = LineReader::with_limit(BufReader::with_capacity(buffer, input), limit);
    let mut got = Vec::new();
    loop {
        match now(reader.next_line()) {
            Ok(Some(line)) => {
                assert!(line.len() <= limit && !line.contains('\n'));
                got.push(Got::Line(line));
            }
            Ok(None) => break,
            Err(FrameError::TooLarge { limit: l }) => {
                assert_eq!(l, limit);
                got.push(Got::TooLarge);
            }
            Err(FrameError::NotUtf8) => got.push(Got::NotUtf8),
            Err(e) => panic!("unexpected error from memory: {e}"),
        }
        assert!(got.len() <= input.len() + 1, "more lines than bytes");
    }
    assert_eq!(got, expected(input, limit));
});
