//! The wire contract of the identity agent's local socket API (see `docs/ARCHITECTURE.md` and
//! `PROTOCOL.md`): every message type, the framing, the closed set of error codes, and the
//! async client library that `iactl`, the tray and the tests use.
#![warn(missing_docs)]

pub mod client;
pub mod endpoint;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod framing;
pub mod paths;
pub mod wire;

pub use client::{Client, ClientError, Subscription};
pub use framing::{encode_line, write_message, FrameError, LineReader};
pub use paths::{default_socket_path, SOCKET_ENV};
pub use wire::*;

#[cfg(test)]
mod protocol_doc {
    //! `PROTOCOL.md` stays true to the types: its examples parse and its error table is whole.

    use crate::wire::*;
    use std::collections::HashSet;

    const DOC: &str = include_str!("../PROTOCOL.md");

    #[test]
    fn examples_parse() {
        let mut requests = 0;
        let mut replies = 0;
        let mut events = HashSet::new();
        for line in DOC.lines() {
            if let Some(request) = line.strip_prefix("→ ") {
                let request: Request =
                    serde_json::from_str(request).unwrap_or_else(|e| panic!("{request}: {e}"));
                assert!(METHODS.contains(&request.call.method()));
                requests += 1;
            } else if let Some(reply) = line.strip_prefix("← ") {
                let reply: ServerMessage =
                    serde_json::from_str(reply).unwrap_or_else(|e| panic!("{reply}: {e}"));
                assert!(matches!(reply, ServerMessage::Reply(_)), "{line}");
                replies += 1;
            } else if line.starts_with("{\"event\":") {
                let event: Event =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
                events.insert(event.name());
            }
        }
        // One request and one reply per method.
        assert_eq!(requests, METHODS.len());
        assert_eq!(replies, METHODS.len());
        // Every event (there are 14).
        assert_eq!(events.len(), 14, "{events:?}");
    }

    #[test]
    fn the_error_table_lists_every_code_once() {
        let mut codes = HashSet::new();
        // The table of the "Error codes" section (other sections have tables of their own).
        let section = DOC
            .lines()
            .skip_while(|line| *line != "## Error codes")
            .skip(1)
            .take_while(|line| !line.starts_with("## "));
        for line in section {
            let Some(rest) = line.strip_prefix("| `") else {
                continue;
            };
            let name = &rest[..rest.find('`').unwrap()];
            let code: ErrorCode = serde_json::from_value(serde_json::json!(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(code.as_str(), name);
            assert!(codes.insert(code), "{name} twice");
        }
        // ErrorCode has 31 variants.
        assert_eq!(codes.len(), 31);
    }
}
