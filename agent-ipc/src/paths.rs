//! Where the agent's socket is.

use std::path::PathBuf;

/// The environment variable that overrides the socket path for clients and the agent.
pub const SOCKET_ENV: &str = "IDENTITY_AGENT_SOCKET";

/// The socket path: `$IDENTITY_AGENT_SOCKET`, else this user's endpoint on the platform —
/// `$XDG_RUNTIME_DIR/identity-agent/agent.sock` (or `/tmp/identity-agent-<uid>/agent.sock`) on
/// Unix, the named pipe `\\.\pipe\identity-agent-<the user's SID>` on Windows.
pub fn default_socket_path() -> PathBuf {
    if let Some(path) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    crate::endpoint::default_path()
}
