//! The endpoint on Unix: a socket file in a private directory (0700, ours), never a live
//! agent's socket and never anything that is not a socket; or the listening socket systemd
//! passes (`identity-agent.socket`, `LISTEN_FDS`), which systemd owns. The peer is told by its
//! effective UID (`SO_PEERCRED`, through `interprocess`'s `peer_creds`).
//!
//! `interprocess` binds the socket (with its mode set before `bind`) but cannot adopt an
//! inherited descriptor through its portable API; the systemd socket is taken as an `OwnedFd`
//! and handed to its Unix listener type (`TryFrom<OwnedFd>`), the seam this file owns.

use interprocess::local_socket::tokio::{Listener as Accepting, Stream};
use interprocess::local_socket::traits::StreamCommon;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use interprocess::os::unix::uds_local_socket;
use std::fmt;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};

/// A bound socket, not yet accepting. Dropping it removes the socket file (if it is still the
/// one this endpoint bound).
#[derive(Debug)]
pub(super) struct Endpoint {
    /// The listening socket, until the server takes it.
    listener: Option<OwnedFd>,
    path: PathBuf,
    /// Device and inode of the socket file we bound, so we never remove another's.
    identity: (u64, u64),
    /// The socket file has been removed.
    closed: bool,
}

impl Endpoint {
    /// The socket's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The listening socket as `interprocess`'s tokio listener (registered with the current
    /// runtime); `None` once taken.
    pub(super) fn accepting(&mut self) -> Option<io::Result<Accepting>> {
        let fd = self.listener.take()?;
        Some(uds_local_socket::tokio::Listener::try_from(fd).map(Accepting::from))
    }

    /// Closes the listening socket and removes its file.
    pub(super) fn close(&mut self) {
        self.listener = None;
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the socket");
                }
            }
            _ => {}
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.close();
    }
}

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const SD_LISTEN_FDS_START: RawFd = 3;

/// The listening socket systemd passed this process (`LISTEN_PID` is ours and `LISTEN_FDS` is at
/// least 1), if any. The variables are removed so that no child (pinentry) takes them as its
/// own. The socket's file belongs to systemd and is left in place on close: the socket unit
/// starts the agent again on the next connection.
///
/// Call before any thread is started (it changes the environment).
pub(super) fn from_systemd() -> io::Result<Option<Endpoint>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    if pid.is_none() && fds.is_none() {
        return Ok(None);
    }
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if pid.and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        return Ok(None);
    }
    let count: i32 = fds.and_then(|n| n.parse().ok()).unwrap_or(0);
    if count < 1 {
        return Ok(None);
    }
    let fd = SD_LISTEN_FDS_START;
    if !is_listening_unix_stream(fd) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket systemd passed is not a listening Unix stream socket (check ListenStream= in identity-agent.socket)",
        ));
    }
    // The descriptors after the first are not ours to serve; close them so they do not leak
    // into children.
    for extra in 1..count {
        // SAFETY: closing a descriptor systemd passed us and nothing else owns.
        unsafe { libc::close(fd + extra) };
    }
    // SAFETY: fd 3 was passed by systemd for us alone, checked to be a listening Unix socket.
    let inner = unsafe { StdUnixListener::from_raw_fd(fd) };
    // SAFETY: fcntl on a valid descriptor.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let path = inner
        .local_addr()?
        .as_pathname()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Ok(Some(Endpoint {
        listener: Some(OwnedFd::from(inner)),
        path,
        identity: (0, 0),
        // Not ours to remove.
        closed: true,
    }))
}

/// Whether `fd` is a Unix stream socket that listens.
fn is_listening_unix_stream(fd: RawFd) -> bool {
    let option = |name: libc::c_int| -> Option<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: value and len describe a c_int the kernel writes into.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(value)
    };
    option(libc::SO_DOMAIN) == Some(libc::AF_UNIX)
        && option(libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && option(libc::SO_ACCEPTCONN) == Some(1)
}

/// Creates the socket's directory (0700, owned by us), removes a stale socket (not one a live
/// agent answers on: that is an error), and binds (0600).
pub(super) fn bind(path: &Path) -> io::Result<Endpoint> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("socket path {} has no directory", path.display()),
            ))
        }
    };
    private_dir(dir)?;
    remove_stale(path)?;
    let cannot_bind = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cannot bind the socket {}: {e}", path.display()),
        )
    };
    // The mode is set before `bind`, and the directory is 0700 besides. The file is ours to
    // remove (by its identity, below), not `interprocess`'s.
    let listener: uds_local_socket::Listener = ListenerOptions::new()
        .name(path.to_fs_name::<GenericFilePath>().map_err(cannot_bind)?)
        .mode(0o600)
        .reclaim_name(false)
        .create_sync_as()
        .map_err(cannot_bind)?;
    let meta = std::fs::symlink_metadata(path)?;
    Ok(Endpoint {
        listener: Some(OwnedFd::from(listener)),
        path: path.to_owned(),
        identity: (meta.dev(), meta.ino()),
        closed: false,
    })
}

/// Makes sure `dir` exists, is a real directory, is ours and is closed to group and others.
fn private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create the socket directory {}: {e}", dir.display()),
            ))
        }
    }
    let meta = std::fs::symlink_metadata(dir)?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("unsafe socket directory {}: {why}", dir.display()),
        ))
    };
    if !meta.file_type().is_dir() {
        return refuse("not a directory (a symbolic link?)".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return refuse(format!(
            "owned by uid {}, not by us (uid {euid})",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return refuse(format!(
            "mode {mode:04o} lets group or others in; it must be 0700 (chmod 700 it)"
        ));
    }
    Ok(())
}

/// Removes a socket file nothing answers on; refuses to touch one a live agent answers on, or
/// anything that is not a socket.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match StdUnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another agent is already running on {}", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a stale socket");
            std::fs::remove_file(path)
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "cannot tell whether an agent runs on {}: {e}",
                path.display()
            ),
        )),
    }
}

/// A peer that is not us: its effective UID.
#[derive(Debug)]
pub(super) struct PeerId(libc::uid_t);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {}", self.0)
    }
}

/// `None` when the peer of `stream` runs as our effective UID, else who it is.
pub(super) fn peer(stream: &Stream) -> io::Result<Option<PeerId>> {
    let uid = stream.peer_creds()?.euid().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "the peer's credentials carry no UID",
        )
    })?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = unsafe { libc::geteuid() };
    Ok((uid != ours).then_some(PeerId(uid)))
}
