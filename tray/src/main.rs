//! `identity-agent-tray`: the identity agent's icon in the panel, its menu, and the desktop
//! notifications, over the agent's socket API.

use anyhow::{Context as _, Result};
use clap::Parser;
use std::path::PathBuf;
use tray::app::{self, Options};
use tray::model::DEFAULT_WARNING_DAYS;

#[derive(Parser)]
#[command(
    version,
    about = "The identity agent's tray icon, menu and notifications"
)]
struct Cli {
    /// The agent's socket (default: $IDENTITY_AGENT_SOCKET, else
    /// $XDG_RUNTIME_DIR/identity-agent/agent.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The portal page "Open portal" opens.
    #[arg(long, env = "IDENTITY_AGENT_PORTAL_URL")]
    portal_url: Option<String>,
    /// Days before expiry the icon shows "expiring soon" (the agent's `expiry.warning_days`).
    #[arg(long, default_value_t = DEFAULT_WARNING_DAYS)]
    warning_days: i64,
}

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
