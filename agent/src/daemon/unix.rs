//! Starting and stopping on Unix: in the background the process forks, and the starting
//! process waits on a pipe until the socket is ready, so no client races it; under systemd,
//! `READY=1` is sent instead. SIGTERM and SIGINT ask it to stop.
//!
//! [`start`] forks, so it must run while the process has a single thread: before the tokio
//! runtime, the PC/SC thread or anything else that spawns threads (a fork copies only the
//! calling thread, and locks held by the others would stay locked forever in the child).

use super::FAILED_TO_START;
use crate::private_files;
use anyhow::{bail, Context as _};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Tells whoever started the agent that it is ready.
#[derive(Debug)]
pub struct Readiness {
    /// The write end of the pipe the starting process waits on (background mode only).
    pipe: Option<File>,
}

/// In the background: forks; the parent waits until the child calls [`Readiness::ready`] (or
/// exits) and exits with a matching status, and the child leaves the caller's terminal and
/// output: standard input from `/dev/null`, standard output and error appended to `log`
/// (created 0600). In the foreground: returns at once. Call before any thread is started.
pub fn start(foreground: bool, log: &Path, _endpoint: &Path) -> anyhow::Result<Readiness> {
    if foreground {
        return Ok(Readiness { pipe: None });
    }
    let log_file = private_files::open_append(log)
        .with_context(|| format!("cannot open the log file {}", log.display()))?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors of the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot create the start-up pipe");
    }
    // SAFETY: both descriptors are fresh and owned by nothing else.
    let (read, write) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: the caller promises a single-threaded process (see the module documentation).
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("cannot fork into the background"),
        0 => {
            drop(read);
            detach(&log_file).context("cannot detach from the terminal")?;
            Ok(Readiness { pipe: Some(write) })
        }
        _child => {
            drop(write);
            if wait_for_ready(read) {
                std::process::exit(0);
            }
            eprintln!("{FAILED_TO_START}: {}", log.display());
            std::process::exit(1);
        }
    }
}

/// A session of its own (no controlling terminal), standard input from `/dev/null`, standard
/// output and error to `log`.
fn detach(log: &File) -> anyhow::Result<()> {
    // SAFETY: setsid has no preconditions; it fails only for a process group leader, which a
    // freshly forked child is not.
    if unsafe { libc::setsid() } < 0 {
        bail!("setsid: {}", std::io::Error::last_os_error());
    }
    let null = File::open("/dev/null").context("cannot open /dev/null")?;
    // SAFETY: both descriptors are valid; dup2 replaces standard input atomically.
    if unsafe { libc::dup2(null.as_raw_fd(), libc::STDIN_FILENO) } < 0 {
        bail!("dup2: {}", std::io::Error::last_os_error());
    }
    for target in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: as above; the log stays open in `log` until the descriptors are duplicated.
        if unsafe { libc::dup2(log.as_raw_fd(), target) } < 0 {
            bail!("dup2: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The starting process's wait: a byte means ready, end of file means the child died (or gave
/// up) first.
fn wait_for_ready(mut pipe: File) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match pipe.read(&mut byte) {
            Ok(n) => return n == 1,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

impl Readiness {
    /// The socket is bound: release the starting process, notify systemd.
    pub fn ready(mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            if let Err(e) = pipe.write_all(b"R") {
                tracing::warn!(error = %e, "cannot tell the starting process that the agent is ready");
            }
        }
        if let Some(socket) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) {
            if let Err(e) = sd_notify(&socket, "READY=1") {
                tracing::warn!(error = %e, "cannot notify systemd that the agent is ready");
            }
        }
    }
}

/// Sends `message` to the systemd notification socket `socket` (a path, or `@name` in the
/// abstract namespace).
pub fn sd_notify(socket: &OsStr, message: &str) -> std::io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sender.send_to_addr(message.as_bytes(), &address)?;
        }
        None => {
            sender.send_to(message.as_bytes(), Path::new(socket))?;
        }
    }
    Ok(())
}

/// SIGTERM and SIGINT, handled from [`StopRequests::new`] on (their default action would kill
/// the agent without the session's end being told).
#[derive(Debug)]
pub struct StopRequests {
    terminate: Signal,
    interrupt: Signal,
}

impl StopRequests {
    /// Handles the signals from now on; call on the runtime.
    pub fn new() -> anyhow::Result<StopRequests> {
        Ok(StopRequests {
            terminate: signal(SignalKind::terminate()).context("handling SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("handling SIGINT")?,
        })
    }

    /// Waits for the next request to stop; returns its name, for the log.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
    }

    fn received(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sd_notify_sends_ready_to_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let systemd = UnixDatagram::bind(&path).unwrap();
        sd_notify(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(received(&systemd), "READY=1");
    }

    #[test]
    fn ready_notifies_systemd_and_releases_the_starting_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let systemd = UnixDatagram::bind(&path).unwrap();
        // The suite runs under nextest, a process per test: nothing else reads the environment.
        std::env::set_var("NOTIFY_SOCKET", &path);
        let (read, write) = pipe();
        Readiness { pipe: Some(write) }.ready();
        std::env::remove_var("NOTIFY_SOCKET");
        assert_eq!(received(&systemd), "READY=1");
        assert!(wait_for_ready(read));
    }

    #[test]
    fn sd_notify_reaches_the_abstract_namespace() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("identity-agent-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let systemd = UnixDatagram::bind_addr(&address).unwrap();
        sd_notify(OsStr::new(&format!("@{name}")), "READY=1").unwrap();
        assert_eq!(received(&systemd), "READY=1");
    }

    #[test]
    fn sd_notify_to_nowhere_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(sd_notify(dir.path().join("absent").as_os_str(), "READY=1").is_err());
    }

    #[test]
    fn a_child_that_dies_first_is_a_failed_start() {
        let (read, write) = pipe();
        // Dropped without `ready()`, as when the child exits on an error.
        drop(Readiness { pipe: Some(write) });
        assert!(!wait_for_ready(read));
    }

    #[test]
    fn the_foreground_does_not_fork() {
        let readiness = start(
            true,
            Path::new("/nonexistent/agent.log"),
            Path::new("/nonexistent/agent.sock"),
        )
        .unwrap();
        assert!(readiness.pipe.is_none());
        readiness.ready();
    }
}
