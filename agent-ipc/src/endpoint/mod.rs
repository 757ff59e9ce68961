//! Reaching the agent's endpoint: the local-socket stream a client speaks over (`interprocess`'s)
//! and where this user's agent listens when nothing says otherwise. The agent's side of the
//! same endpoint is its `ipc` module.
//!
//! The platform files beside this one are the only code of the crate that knows the platform;
//! each has the same two items, `connect` and `default_path`:
//! - `unix.rs`: a Unix domain socket under `$XDG_RUNTIME_DIR`;
//! - `windows.rs`: a named pipe whose name carries the user's SID.

pub use interprocess::local_socket::tokio::Stream;
use std::io;
use std::path::{Path, PathBuf};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;
/// Who a Windows process runs as (its token's user SID): the agent admits a pipe client only
/// when it is its own user; and who may open an object (its DACL), read back by the tests.
#[cfg(windows)]
pub use windows::{current_user_sid, dacl_sddl, process_user_sid};

/// Connects to the agent's endpoint at `path`, once. `NotFound` or `ConnectionRefused`: no
/// agent there; `WouldBlock`: it is busy accepting others (not gone: try again).
pub async fn connect(path: &Path) -> io::Result<Stream> {
    platform::connect(path).await
}

/// This user's endpoint when neither the environment nor the configuration names one (see
/// [`crate::default_socket_path`]).
pub(crate) fn default_path() -> PathBuf {
    platform::default_path()
}
