//! The endpoint on Windows: a named pipe per user, `\\.\pipe\identity-agent-<SID>`. Pipe names
//! are one namespace for the whole machine, so the name carries the user's SID (from the
//! process token, which the environment cannot change) to keep users' agents apart; who may
//! open the pipe is the agent's security descriptor's to say, not the name's.

mod security;
mod token;

pub use security::dacl_sddl;
pub use token::{current_user_sid, process_user_sid};

use super::Stream;
use interprocess::local_socket::{ConnectOptions, GenericFilePath, ToFsName};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a connect waits for a free instance of a busy pipe (as long as the Unix client's
/// retries of a full backlog) before it reports `WouldBlock`.
const BUSY_WAIT: Duration = Duration::from_secs(1);

/// Connects to the named pipe `path` (`\\.\pipe\…`). A pipe that does not exist is `NotFound`;
/// one whose instances stay busy for [`BUSY_WAIT`] is `WouldBlock`.
///
/// `interprocess`'s tokio pipe client waits for a busy pipe without bound, so the wait is
/// bounded here.
pub(super) async fn connect(path: &Path) -> io::Result<Stream> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    let options = ConnectOptions::new().name(name);
    match tokio::time::timeout(BUSY_WAIT, options.connect_tokio()).await {
        Ok(connected) => connected,
        Err(_elapsed) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "every instance of the agent's pipe stayed busy",
        )),
    }
}

/// `\\.\pipe\identity-agent-<SID>`; with `%USERNAME%` in place of the SID if the process token
/// cannot be read (every process of the user falls back alike).
pub(super) fn default_path() -> PathBuf {
    let user = token::current_user_sid()
        .ok()
        .or_else(|| std::env::var("USERNAME").ok())
        .unwrap_or_else(|| "user".to_owned());
    PathBuf::from(format!(r"\\.\pipe\identity-agent-{user}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pipe_is_named_for_the_users_sid() {
        let sid = token::current_user_sid().unwrap();
        assert!(sid.starts_with("S-1-5-"), "{sid}");
        assert_eq!(
            default_path(),
            PathBuf::from(format!(r"\\.\pipe\identity-agent-{sid}"))
        );
    }
}
