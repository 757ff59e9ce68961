//! `identity-agent`: the resident identity agent. This file only wires the owners together:
//! the card watcher thread, the session owner task, the socket server and the web bridge.

use agent::audit::AuditLog;
use agent::card::CardWatcher;
use agent::cli::AgentArgs as Args;
use agent::config::Config;
use agent::ipc::{self, ServerLimits};
use agent::session::SessionOwner;
use agent::{bridge, daemon, hardening, logging, private_files};
use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How long an idle thread of the blocking pool waits for more work before it exits.
const BLOCKING_THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);

fn main() -> ExitCode {
    agent::heap::limit_arenas();
    let args = Args::parse();
    // Read before detaching, so a broken file is reported to whoever started the agent.
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("identity-agent: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // Before any thread exists (it changes the environment), and before a fork changes the pid
    // systemd passed the socket to.
    let activated = match ipc::from_systemd() {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("identity-agent: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // Before any thread exists: the starting process waits here for the socket.
    let readiness = match create_state_dir(&config).and_then(|dir| {
        daemon::start(
            args.foreground,
            &dir.join(daemon::LOG_FILE),
            &config.socket_path(),
        )
    }) {
        Ok(readiness) => readiness,
        Err(e) => {
            eprintln!("identity-agent: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match start(config, activated, readiness) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("identity-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration, with `--socket` over it.
fn load_config(args: &Args) -> Result<Config> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(socket) = &args.socket {
        config.ipc.socket = Some(socket.clone());
    }
    Ok(config)
}

/// Creates the state directory (private to the user) and returns it.
fn create_state_dir(config: &Config) -> Result<PathBuf> {
    let state_dir = config.state_dir();
    private_files::create_dir(&state_dir)
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    Ok(state_dir)
}

fn start(
    config: Config,
    activated: Option<ipc::Listener>,
    readiness: daemon::Readiness,
) -> Result<()> {
    hardening::harden_process().context("hardening the process (crash dumps, debuggers)")?;
    logging::init().context("setting up logging")?;
    // One thread runs every task: the owner, the socket server and each connection's tasks
    // take microseconds per turn, so a second worker only added a thread to wake (and to hand
    // an event across) between a removal and the subscriber's write. Card transactions run in
    // the blocking pool, whose threads exit soon after their work so an idle agent keeps none.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(8)
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(Arc::new(config), activated, readiness))
}

async fn run(
    config: Arc<Config>,
    activated: Option<ipc::Listener>,
    readiness: daemon::Readiness,
) -> Result<()> {
    // Before anything can answer: a client that sees the socket may stop the agent at once, and
    // SIGTERM's default action would kill it without the session's end being told.
    let mut stop_requests = daemon::StopRequests::new()?;
    let state_dir = config.state_dir();
    let audit = Arc::new(
        AuditLog::open(&state_dir.join("audit.log"), config.audit.max_bytes)
            .with_context(|| format!("opening the audit log in {}", state_dir.display()))?,
    );
    let cms = agent::cms::connect(&config.cms)?;
    if cms.is_none() {
        tracing::warn!(
            "no Card Management Service configured: cards are watched, nobody can sign in"
        );
    }
    let listener = match activated {
        Some(listener) => {
            tracing::info!(socket = %listener.path().display(), "serving the socket systemd passed");
            listener
        }
        None => {
            let socket = config.socket_path();
            ipc::bind(&socket)
                .with_context(|| format!("binding the socket {}", socket.display()))?
        }
    };
    let socket = listener.path().to_path_buf();

    let shutdown = CancellationToken::new();
    let (owner, link) = SessionOwner::new(config.clone(), cms, audit);
    let (card_tx, card_rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = CardWatcher::start(card_tx).context("starting the card watcher")?;
    // The owner stops first and tells subscribers the session ended; then the server.
    let stop_owner = CancellationToken::new();
    let owner = tokio::spawn(owner.run(card_rx, stop_owner.clone()));
    let limits = ServerLimits {
        max_connections: config.ipc.max_connections,
        hello_timeout: std::time::Duration::from_secs(config.ipc.hello_timeout_secs),
        idle_timeout: std::time::Duration::from_secs(config.ipc.idle_timeout_secs),
    };
    let bridge = start_bridge(&config, &link, &shutdown).await;
    let server = tokio::spawn(ipc::serve(listener, link, limits, shutdown.clone()));
    tracing::info!(socket = %socket.display(), "identity agent ready");
    readiness.ready();

    let request = stop_requests.next().await;
    tracing::info!("{request}: shutting down");
    stop_owner.cancel();
    let _ = owner.await;
    shutdown.cancel();
    let _ = server.await;
    if let Some(bridge) = bridge {
        let _ = bridge.await;
    }
    tokio::task::spawn_blocking(move || watcher.stop())
        .await
        .context("stopping the card watcher")?;
    Ok(())
}

/// Binds and serves the web bridge when it is on. A port it cannot bind is logged and the
/// agent runs without it: the socket's clients need not suffer for the portal's.
async fn start_bridge(
    config: &Config,
    link: &ipc::AgentLink,
    shutdown: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    match bridge::bind(&config.bridge).await {
        Ok(Some(listener)) => Some(tokio::spawn(bridge::serve(
            listener,
            config.bridge.clone(),
            link.clone(),
            shutdown.clone(),
        ))),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "the web bridge is off");
            None
        }
    }
}
