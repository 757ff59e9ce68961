//! Where the agent's socket is.

use std::path::PathBuf;

/// The environment variable that overrides the socket path for clients and the agent.
pub const SOCKET_ENV: &str = "IDENTITY_AGENT_SOCKET";

/// The socket path: `$IDENTITY_AGENT_SOCKET`, else
/// `$XDG_RUNTIME_DIR/identity-agent/agent.sock`, else `/tmp/identity-agent-<uid>/agent.sock`.
pub fn default_socket_path() -> PathBuf {
    if let Some(path) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        Some(runtime) => PathBuf::from(runtime).join("identity-agent"),
        // SAFETY: geteuid has no preconditions and cannot fail.
        None => std::env::temp_dir().join(format!("identity-agent-{}", unsafe { libc::geteuid() })),
    };
    dir.join("agent.sock")
}
