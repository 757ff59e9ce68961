//! Reaching the agent's endpoint: the local-socket stream a client speaks over (`interprocess`'s,
//! a Unix domain socket here; a Windows named pipe will get its own `connect` beside this one)
//! and how a client connects to it. The agent's side of the same endpoint is its `ipc` module.

pub use interprocess::local_socket::tokio::Stream;
use std::io;
use std::path::Path;

/// Connects to the agent's socket at `path`, once. `NotFound` or `ConnectionRefused`: no agent
/// there; `WouldBlock`: its accept backlog is full (busy, not gone: try again).
///
/// The connect itself is tokio's: `interprocess` 2.4 takes the `EAGAIN` of a full backlog for a
/// connection in progress and hands back a socket that is not connected, where tokio reports
/// `WouldBlock`. The stream is `interprocess`'s all the same.
#[cfg(unix)]
pub async fn connect(path: &Path) -> io::Result<Stream> {
    let stream = tokio::net::UnixStream::connect(path).await?;
    Ok(interprocess::os::unix::uds_local_socket::tokio::Stream::from(stream).into())
}
