//! `identity-agent-tray`: the identity agent's icon in the panel, its menu, and the desktop
//! notifications, over the agent's socket API.

// A Windows GUI program: started at logon it opens no console window.
#![cfg_attr(windows, windows_subsystem = "windows")]

use anyhow::{Context as _, Result};
use clap::Parser;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use tray::app::{self, Options};
use tray::cli::Cli;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let log = tracing_subscriber::fmt().with_env_filter(filter);
    match &cli.log_file {
        // A Windows GUI program started by the shell has no standard error to write to.
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
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
