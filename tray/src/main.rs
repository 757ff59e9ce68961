//! `identity-agent-tray`: the identity agent's icon in the panel, its menu, and the desktop
//! notifications, over the agent's socket API.

use anyhow::{Context as _, Result};
use clap::Parser;
use tray::app::{self, Options};
use tray::cli::Cli;

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
