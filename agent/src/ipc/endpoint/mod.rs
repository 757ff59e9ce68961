//! The user's endpoint of the local socket API: binding it (or adopting the one the service
//! manager passed), accepting on it, and telling who the peer of a connection is. This module
//! and the platform file beside it are the only code that knows the platform; the server and
//! the connections see an [`interprocess`] local-socket [`Stream`] and nothing else.
//!
//! The transport is `interprocess`'s tokio local socket: a Unix domain socket (`unix.rs`) or a
//! Windows named pipe (`windows.rs`), each file with the same items (`Endpoint`, `bind`,
//! `from_systemd`, which finds nothing on Windows, and `peer`).

use interprocess::local_socket::tokio::Listener as Accepting;
pub use interprocess::local_socket::tokio::Stream;
use std::fmt;
use std::io;
use std::path::Path;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;

/// A bound endpoint, ready to serve. Dropping it removes the socket file (if it is still the
/// one this listener bound).
#[derive(Debug)]
pub struct Listener {
    endpoint: platform::Endpoint,
}

impl Listener {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        self.endpoint.path()
    }

    /// The endpoint, ready to accept on the current tokio runtime; `None` once taken or closed.
    pub(super) fn accepting(&mut self) -> Option<io::Result<Accepting>> {
        self.endpoint.accepting()
    }

    /// Closes the listening socket and removes its file.
    pub(super) fn close(&mut self) {
        self.endpoint.close();
    }
}

/// Creates the socket's directory (0700, owned by us), removes a stale socket (not one a live
/// agent answers on: that is an error), and binds.
pub fn bind(path: &Path) -> io::Result<Listener> {
    platform::bind(path).map(|endpoint| Listener { endpoint })
}

/// The listening socket systemd passed this process (`identity-agent.socket`, `LISTEN_FDS`), if
/// any; its file belongs to systemd and is left in place on close.
///
/// Call before any thread is started (it changes the environment).
pub fn from_systemd() -> io::Result<Option<Listener>> {
    Ok(platform::from_systemd()?.map(|endpoint| Listener { endpoint }))
}

/// Who is on the other end of a connection.
#[derive(Debug)]
pub(super) enum Peer {
    /// The user this agent runs for.
    ThisUser,
    /// Someone else.
    Stranger(PeerId),
}

/// How the platform names a peer that is not us, for the log.
#[derive(Debug)]
pub(super) struct PeerId(platform::PeerId);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who the peer of `stream` is; an error when the platform cannot tell.
pub(super) fn peer(stream: &Stream) -> io::Result<Peer> {
    Ok(match platform::peer(stream)? {
        None => Peer::ThisUser,
        Some(id) => Peer::Stranger(PeerId(id)),
    })
}
