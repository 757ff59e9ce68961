//! The endpoint on Unix: a Unix domain socket in a private directory of the user's runtime
//! directory.

use super::Stream;
use std::io;
use std::path::{Path, PathBuf};

/// Connects to the socket at `path`.
///
/// The connect itself is tokio's: `interprocess` 2.4 takes the `EAGAIN` of a full backlog for a
/// connection in progress and hands back a socket that is not connected, where tokio reports
/// `WouldBlock`. The stream is `interprocess`'s all the same.
pub(super) async fn connect(path: &Path) -> io::Result<Stream> {
    let stream = tokio::net::UnixStream::connect(path).await?;
    Ok(interprocess::os::unix::uds_local_socket::tokio::Stream::from(stream).into())
}

/// `$XDG_RUNTIME_DIR/identity-agent/agent.sock`, else `/tmp/identity-agent-<uid>/agent.sock`.
pub(super) fn default_path() -> PathBuf {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        Some(runtime) => PathBuf::from(runtime).join("identity-agent"),
        // SAFETY: geteuid has no preconditions and cannot fail.
        None => std::env::temp_dir().join(format!("identity-agent-{}", unsafe { libc::geteuid() })),
    };
    dir.join("agent.sock")
}
