//! Starting and stopping: in the background, the starting process returns only once the
//! agent's endpoint is ready (so no client races it) or the agent has failed; and the requests
//! to stop that the platform sends.
//!
//! The platform's part is in the file beside this one: `unix.rs` (fork, a readiness pipe,
//! systemd's `READY=1`, SIGTERM and SIGINT), `windows.rs` (the agent started again detached,
//! ready once its pipe exists; console close, logoff and shutdown events). Each has `start`,
//! `Readiness` and `StopRequests`.

/// What the starting process prints when the agent dies before it is ready (followed by the
/// log's path).
pub const FAILED_TO_START: &str = "identity-agent failed to start; see its log";

/// The log file of an agent started in the background, in its state directory.
pub const LOG_FILE: &str = "agent.log";

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::{sd_notify, start, Readiness, StopRequests};
#[cfg(windows)]
mod session_end;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{start, Readiness, StopRequests};
