//! The identity agent (see `docs/ARCHITECTURE.md`): one owner per concern, talking over
//! channels. `card` owns PC/SC, `session` owns the session, `ipc` owns the socket's
//! connections, `bridge` serves the same API to the web portal's pages on 127.0.0.1; `main.rs`
//! only wires them together.
//!
//! The modules depend on each other without cycles: `session` (the owner) uses `doctor` and
//! `operation`; `doctor` uses `operation`; both use `card` (reaching a card, naming it) and
//! `errors` (refusals in the socket API's words), which use neither of them.
#![warn(missing_docs)]

pub mod audit;
pub mod bridge;
pub mod card;
pub mod cli;
pub mod cms;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod errors;
pub mod hardening;
pub mod heap;
pub mod ipc;
pub mod logging;
pub mod operation;
pub mod pinentry;
pub mod private_files;
pub mod screen_lock;
pub mod session;
pub mod time;
pub mod user_manager;
#[cfg(windows)]
pub mod windows_acl;
