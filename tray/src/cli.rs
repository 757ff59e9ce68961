//! The command line of `identity-agent-tray`, in the library so that its man page is generated
//! from the very definition `--help` prints (the `packaging` crate).

use crate::model::DEFAULT_WARNING_DAYS;
use clap::Parser;
use std::path::PathBuf;

/// What `--help` prints after the options; the man page renders each title as a section.
#[cfg(unix)]
const NOTES: &str = "\
Files:
  $XDG_CONFIG_HOME/autostart, /etc/xdg/autostart/identity-agent-tray.desktop
          started at login in every graphical session (the package installs the entry)

Environment:
  IDENTITY_AGENT_SOCKET
          the agent's socket when --socket is not given (else $XDG_RUNTIME_DIR/identity-agent/agent.sock)
  IDENTITY_AGENT_PORTAL_URL
          the portal page \"Open portal\" opens, when --portal-url is not given
  DBUS_SESSION_BUS_ADDRESS
          the session bus: the panel's StatusNotifierWatcher and the notification server
  RUST_LOG
          what the tray logs to standard error or --log-file (default info)

Exit status:
  0
          quit from the menu, or stopped by SIGTERM or SIGINT
  1
          the session bus or the runtime could not be reached or started
";

/// What `--help` prints after the options on Windows.
#[cfg(windows)]
const NOTES: &str = "\
Files:
  HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run, \"Identity Agent Tray\"
          started at each user's logon (the installer adds the entry)
  %LOCALAPPDATA%\\Identity Agent\\tray.log
          the log, when the tray has no standard error and --log-file is not given

Environment:
  IDENTITY_AGENT_SOCKET
          the agent's pipe when --socket is not given (else \\\\.\\pipe\\identity-agent-<your SID>)
  IDENTITY_AGENT_PORTAL_URL
          the portal page \"Open portal\" opens, when --portal-url is not given
  RUST_LOG
          what the tray logs (default info)

Exit status:
  0
          quit from the menu, or stopped by Ctrl+C, Ctrl+Break or the console closing
  1
          the notification area or the runtime could not be reached or started
";

/// `identity-agent-tray`'s command line.
#[derive(Debug, Parser)]
#[command(
    name = "identity-agent-tray",
    version,
    about = "The identity agent's tray icon, menu and notifications",
    long_about = "The identity agent's tray icon, menu and notifications: a StatusNotifierItem \
                  whose icon, tooltip and menu follow the agent's state, and desktop \
                  notifications (expiry, renewal, sign-out, errors). It talks to the agent only \
                  through its socket API, and reconnects by itself when the agent restarts.",
    after_help = NOTES
)]
pub struct Cli {
    /// The agent's socket, or its named pipe on Windows (default: $IDENTITY_AGENT_SOCKET, else
    /// this user's own, as Environment below says).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// The portal page "Open portal" opens.
    #[arg(long, env = "IDENTITY_AGENT_PORTAL_URL")]
    pub portal_url: Option<String>,
    /// Days before expiry the icon shows "expiring soon" (the agent's `expiry.warning_days`).
    #[arg(long, default_value_t = DEFAULT_WARNING_DAYS)]
    pub warning_days: i64,
    /// Append the log to this file instead of standard error (on Windows, without standard
    /// error, %LOCALAPPDATA%\Identity Agent\tray.log).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}
