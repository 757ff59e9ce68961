//! The wire contract of the identity agent's local socket API (see `DESIGN.md` §4 and
//! `PROTOCOL.md`): every message type, the framing, the closed set of error codes, and the
//! async client library that `iactl`, the tray and the tests use.
#![warn(missing_docs)]

pub mod client;
pub mod framing;
pub mod paths;
pub mod wire;

pub use client::{Client, ClientError, Subscription};
pub use framing::{encode_line, write_message, FrameError, LineReader};
pub use paths::{default_socket_path, SOCKET_ENV};
pub use wire::*;
