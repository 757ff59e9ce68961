//! Configuration in TOML: the system file, then the user's file over it (XDG paths).

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration; every field has a default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The Card Management Service.
    pub cms: CmsConfig,
    /// The PIN prompt.
    pub pinentry: PinentryConfig,
    /// Sessions.
    pub session: SessionConfig,
    /// The local socket.
    pub ipc: IpcConfig,
    /// Expiry warnings.
    pub expiry: ExpiryConfig,
    /// Where state (default roles, journal, audit log) lives; default
    /// `$XDG_STATE_HOME/identity-agent`.
    pub state_dir: Option<PathBuf>,
}

/// Where the Card Management Service is and which CA it is trusted by.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CmsConfig {
    /// `https://host:port`.
    pub url: Option<String>,
    /// The PEM file of the CA the service's certificate chains to.
    pub ca_file: Option<PathBuf>,
}

/// The pinentry program.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PinentryConfig {
    /// The program (default `pinentry`, found on `PATH`).
    pub program: PathBuf,
    /// Arguments given to it.
    pub args: Vec<String>,
    /// How long the holder has to answer, in seconds.
    pub timeout_secs: u64,
}

impl Default for PinentryConfig {
    fn default() -> Self {
        unimplemented!("hygiene helper")
    }
}

impl PinentryConfig {
    /// The answer timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// What happens when the session's card is removed.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RemovalAction {
    /// End the session (default).
    #[default]
    Logout,
    /// End the session and lock the screen (`loginctl lock-session`).
    Lock,
    /// Keep the session (tap to sign); another card in the reader still ends it.
    Keep,
}

/// Sessions.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// On removal of the session's card.
    pub removal_action: RemovalAction,
    /// Ask for the PIN as soon as a card is inserted (default true).
    pub login_on_insert: bool,
    /// How often the signed-in card's certificate is re-read to notice a change, in seconds.
    pub certificate_check_secs: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        unimplemented!("hygiene helper")
    }
}

/// The local socket.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IpcConfig {
    /// The socket path (default `$XDG_RUNTIME_DIR/identity-agent/agent.sock`).
    pub socket: Option<PathBuf>,
    /// At most this many connections at once.
    pub max_connections: usize,
    /// Events a subscriber may fall behind by before it is dropped.
    pub subscriber_queue: usize,
}

impl Default for IpcConfig {
    fn default() -> Self {
        unimplemented!("hygiene helper")
    }
}

/// Expiry warnings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExpiryConfig {
    /// Warn this many days before expiry (default 90).
    pub warning_days: u32,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        Self { warning_days: 90 }
    }
}

impl Config {
    /// Loads `explicit` if given; otherwise `/etc/identity-agent/config.toml` then
    /// `$XDG_CONFIG_HOME/identity-agent/config.toml` over it. Missing files are fine; a
    /// malformed one is an error naming the file and the line.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Config> {
        let _ = explicit;
        unimplemented!("hygiene helper")
    }

    /// The socket path to serve on.
    pub fn socket_path(&self) -> PathBuf {
        unimplemented!("hygiene helper")
    }

    /// The state directory (created 0700 by the caller).
    pub fn state_dir(&self) -> PathBuf {
        unimplemented!("hygiene helper")
    }
}
