//! `identity-agent-tray`: the identity agent's icon in the panel, its menu, and the desktop
//! notifications, over the agent's socket API.

// A Windows GUI program: started at logon it opens no console window.
#![cfg_attr(windows, windows_subsystem = "windows")]

use anyhow::{Context as _, Result};
use clap::Parser;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Mutex;
use tray::app::{self, Options};
use tray::cli::Cli;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let log = tracing_subscriber::fmt().with_env_filter(filter);
    match log_file(&cli) {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("making the log's folder {}", dir.display()))?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening the log {}", path.display()))?;
            log.with_ansi(false).with_writer(Mutex::new(file)).init();
        }
        None => log
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
    let options = Options {
        socket: cli.socket.unwrap_or_else(agent_ipc::default_socket_path),
        portal_url: cli.portal_url.filter(|u| !u.is_empty()),
        warning_days: cli.warning_days,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let local = tokio::task::LocalSet::new();
    runtime.block_on(local.run_until(app::run(options)))
}

/// Where the log goes: `--log-file`, else standard error. A Windows program started at logon
/// has no standard error, so there it is `%LOCALAPPDATA%\Identity Agent\tray.log`, beside the
/// agent's log.
fn log_file(cli: &Cli) -> Option<PathBuf> {
    if cli.log_file.is_some() {
        return cli.log_file.clone();
    }
    #[cfg(windows)]
    if !has_standard_error() {
        return std::env::var_os("LOCALAPPDATA")
            .map(|dir| PathBuf::from(dir).join("Identity Agent").join("tray.log"));
    }
    None
}

#[cfg(windows)]
fn has_standard_error() -> bool {
    use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
    use windows_sys::Win32::System::Console::{GetStdHandle, STD_ERROR_HANDLE};
    // SAFETY: GetStdHandle only reads the process's standard handles.
    let handle = unsafe { GetStdHandle(STD_ERROR_HANDLE) };
    !handle.is_null() && handle != INVALID_HANDLE_VALUE
}
