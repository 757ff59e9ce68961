//! Starting and stopping on Windows. In the background the agent starts itself again as a
//! detached process (no console, a process group of its own) with `--foreground`, its output
//! appended to the log; the starting process — the one the logon's Run entry starts — returns
//! once the agent's pipe exists, or fails when the agent exits first. Requests to stop: the
//! console's Ctrl+C, Ctrl+Break and close, and the session's logoff and shutdown — through the
//! console when there is one, and through a hidden window (`session_end.rs`) when there is not.

use super::session_end;
use super::FAILED_TO_START;
use crate::private_files;
use crate::windows_acl::wide;
use anyhow::Context as _;
use std::ffi::OsString;
use std::os::windows::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::signal::windows::{
    ctrl_break, ctrl_c, ctrl_close, ctrl_logoff, ctrl_shutdown, CtrlBreak, CtrlC, CtrlClose,
    CtrlLogoff, CtrlShutdown,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use windows_sys::Win32::Foundation::{GetLastError, ERROR_SEM_TIMEOUT};
use windows_sys::Win32::System::Pipes::WaitNamedPipeW;
use windows_sys::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, DETACHED_PROCESS};

/// How often the starting process looks for the pipe.
const POLL: Duration = Duration::from_millis(10);

/// Nothing to tell on Windows: the pipe's existence is the readiness.
#[derive(Debug)]
pub struct Readiness;

impl Readiness {
    /// The pipe exists once bound; nobody else waits.
    pub fn ready(self) {}
}

/// In the background: starts the agent again detached and exits with 0 once its pipe
/// `endpoint` exists, or with 1 (naming the log) when it exits first. In the foreground:
/// returns at once.
pub fn start(foreground: bool, log: &Path, endpoint: &Path) -> anyhow::Result<Readiness> {
    if foreground {
        return Ok(Readiness);
    }
    let log_file = private_files::open_append(log)
        .with_context(|| format!("cannot open the log file {}", log.display()))?;
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    args.push("--foreground".into());
    let mut agent =
        Command::new(std::env::current_exe().context("cannot find the agent's program")?)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("cannot share the log file")?)
            .stderr(log_file)
            .creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP)
            .spawn()
            .context("cannot start the agent in the background")?;
    loop {
        if agent.try_wait().ok().flatten().is_some() {
            eprintln!("{FAILED_TO_START}: {}", log.display());
            std::process::exit(1);
        }
        if pipe_exists(endpoint) {
            std::process::exit(0);
        }
        std::thread::sleep(POLL);
    }
}

/// Whether the pipe `name` exists (with a free instance, or all of them busy).
fn pipe_exists(name: &Path) -> bool {
    let Ok(name) = wide(name.as_os_str()) else {
        return false;
    };
    // SAFETY: a NUL-terminated name; waits at most 1 ms and connects nothing.
    if unsafe { WaitNamedPipeW(name.as_ptr(), 1) } != 0 {
        return true;
    }
    // SAFETY: no preconditions.
    unsafe { GetLastError() == ERROR_SEM_TIMEOUT }
}

/// The console's and the session's requests to stop, handled from [`StopRequests::new`] on.
#[derive(Debug)]
pub struct StopRequests {
    c: CtrlC,
    break_: CtrlBreak,
    close: CtrlClose,
    logoff: CtrlLogoff,
    shutdown: CtrlShutdown,
    /// The hidden window's (see `session_end.rs`).
    session_end: UnboundedReceiver<&'static str>,
}

impl StopRequests {
    /// Handles the events from now on; call on the runtime. Without a desktop for the hidden
    /// window (a service's session), the agent says so and runs on without it.
    pub fn new() -> anyhow::Result<StopRequests> {
        let (tx, session_end) = unbounded_channel();
        if let Err(e) = session_end::watch(tx) {
            tracing::warn!(error = %e, "no window for the session's end: logoff will not end the session first");
        }
        Ok(StopRequests {
            c: ctrl_c().context("handling Ctrl+C")?,
            break_: ctrl_break().context("handling Ctrl+Break")?,
            close: ctrl_close().context("handling the console's close")?,
            logoff: ctrl_logoff().context("handling logoff")?,
            shutdown: ctrl_shutdown().context("handling shutdown")?,
            session_end,
        })
    }

    /// Waits for the next request to stop; returns its name, for the log.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.c.recv() => "Ctrl+C",
            _ = self.break_.recv() => "Ctrl+Break",
            _ = self.close.recv() => "console closed",
            _ = self.logoff.recv() => "logoff",
            _ = self.shutdown.recv() => "shutdown",
            Some(why) = self.session_end.recv() => why,
        }
    }
}
