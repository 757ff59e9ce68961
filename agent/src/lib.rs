//! The identity agent: card watcher, sessions, renewal and the local socket API.
//!
//! The daemon is built in the agent-core issue on top of the `piv` crate; see `DESIGN.md`.
