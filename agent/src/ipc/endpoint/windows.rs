//! The endpoint on Windows: a named pipe (by default `\\.\pipe\identity-agent-<SID>`, see
//! `agent_ipc::endpoint`), created as the first instance of its name, so a program that took
//! the name before the agent makes the agent refuse to start rather than share it; its
//! security descriptor admits only the user and SYSTEM, and remote clients are refused. The
//! peer is told by the user of its process token (`GetNamedPipeClientProcessId`, through
//! `interprocess`'s `peer_creds`) — the same promise as the peer-UID check on Unix, for a
//! client that got past the descriptor.
//!
//! There is no service manager's socket to adopt: `from_systemd` finds nothing.

use agent_ipc::endpoint::{current_user_sid, process_user_sid};
use interprocess::local_socket::tokio::{Listener as Accepting, Stream};
use interprocess::local_socket::traits::StreamCommon;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::windows::local_socket::ListenerOptionsExt;
use interprocess::os::windows::security_descriptor::SecurityDescriptor;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use widestring::U16CString;

/// Who may open the pipe: the user and SYSTEM, with full access; nobody else (protected).
const PIPE_SECURITY: &str = "D:P(A;;GA;;;{user})(A;;GA;;;SY)";

/// `ERROR_ACCESS_DENIED`: what creating the first instance of a name that exists returns.
const ERROR_ACCESS_DENIED: i32 = 5;
/// `ERROR_PIPE_BUSY`: the name exists and all its instances are taken.
const ERROR_PIPE_BUSY: i32 = 231;

/// The pipe, listening until the server takes it.
pub(super) struct Endpoint {
    listener: Option<Accepting>,
    path: PathBuf,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("path", &self.path)
            .field("listening", &self.listener.is_some())
            .finish()
    }
}

impl Endpoint {
    /// The pipe's name.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The listener (registered with the runtime it was created on); `None` once taken.
    pub(super) fn accepting(&mut self) -> Option<io::Result<Accepting>> {
        self.listener.take().map(Ok)
    }

    /// Closes the pipe: with its last instance, the name is gone.
    pub(super) fn close(&mut self) {
        self.listener = None;
    }
}

/// Creates the pipe `path` (`\\.\pipe\…`) on the current tokio runtime; an error when its name
/// exists already (another agent, or another program that took it).
pub(super) fn bind(path: &Path) -> io::Result<Endpoint> {
    let text = path.to_string_lossy();
    if !text.to_ascii_lowercase().starts_with(r"\\.\pipe\") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{text} is not a pipe name (\\\\.\\pipe\\…)"),
        ));
    }
    let sddl = PIPE_SECURITY.replace("{user}", our_sid()?);
    let sddl = U16CString::from_str(&sddl).map_err(io::Error::other)?;
    let descriptor = SecurityDescriptor::deserialize(&sddl)?;
    let listener = ListenerOptions::new()
        .name(path.to_fs_name::<GenericFilePath>()?)
        .security_descriptor(descriptor)
        .create_tokio()
        .map_err(|e| match e.raw_os_error() {
            Some(ERROR_ACCESS_DENIED | ERROR_PIPE_BUSY) => io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("the pipe {text} exists already: another agent runs there, or another program took its name"),
            ),
            _ => io::Error::new(e.kind(), format!("cannot create the pipe {text}: {e}")),
        })?;
    Ok(Endpoint {
        listener: Some(listener),
        path: path.to_owned(),
    })
}

/// No service manager passes a pipe on Windows.
pub(super) fn from_systemd() -> io::Result<Option<Endpoint>> {
    Ok(None)
}

/// A peer that is not us: its user's SID, and the process it was told from.
#[derive(Debug)]
pub(super) struct PeerId {
    sid: String,
    pid: u32,
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user {} (process {})", self.sid, self.pid)
    }
}

/// `None` when the client process of `stream` runs as our user, else who it is.
pub(super) fn peer(stream: &Stream) -> io::Result<Option<PeerId>> {
    let pid = stream.peer_creds()?.pid().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "the pipe's client has no process id",
        )
    })?;
    let sid = process_user_sid(pid)?;
    Ok((sid != *our_sid()?).then_some(PeerId { sid, pid }))
}

/// This process's user SID, read from its token once.
fn our_sid() -> io::Result<&'static String> {
    static SID: OnceLock<String> = OnceLock::new();
    if let Some(sid) = SID.get() {
        return Ok(sid);
    }
    let sid = current_user_sid()?;
    Ok(SID.get_or_init(|| sid))
}
