//! Binding the socket: a private directory, no stale socket, never a live agent's socket. Or
//! taking the one systemd passes (`identity-agent.socket`, `LISTEN_FDS`), which systemd owns.
//!
//! The transport is tokio's `UnixListener`. DESIGN.md names `interprocess`, but its tokio API
//! gives no peer credentials, which the server checks on every connection; Windows named pipes
//! will get their own listener when the agent is ported.

use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};

/// A bound socket, ready to serve. Dropping it removes the socket file (if it is still the
/// one this listener bound).
#[derive(Debug)]
pub struct Listener {
    pub(super) inner: Option<StdUnixListener>,
    path: PathBuf,
    /// Device and inode of the socket file we bound, so we never remove another's.
    identity: (u64, u64),
    /// The socket file has been removed.
    closed: bool,
}

impl Listener {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the listening socket and removes its file.
    pub(super) fn close(&mut self) {
        self.inner = None;
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

impl Drop for Listener {
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
pub fn from_systemd() -> io::Result<Option<Listener>> {
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
    inner.set_nonblocking(true)?;
    let path = inner
        .local_addr()?
        .as_pathname()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Ok(Some(Listener {
        inner: Some(inner),
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
/// agent answers on: that is an error), and binds.
pub fn bind(path: &Path) -> io::Result<Listener> {
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
    let inner = StdUnixListener::bind(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot bind the socket {}: {e}", path.display()),
        )
    })?;
    // The directory is 0700, so the moment between bind and chmod exposes nothing.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    inner.set_nonblocking(true)?;
    let meta = std::fs::symlink_metadata(path)?;
    Ok(Listener {
        inner: Some(inner),
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
