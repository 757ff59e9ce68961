//! Configuration in TOML: the system file, then the user's file over it.
//!
//! Where those files and the state directory are is the platform's part, in the file beside
//! this one: `unix.rs` (`/etc` and the XDG base directories), `windows.rs` (the known folders
//! `%ProgramData%`, `%APPDATA%` and `%LOCALAPPDATA%`).

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
    /// The audit log.
    pub audit: AuditConfig,
    /// The web bridge for the organisation's portal (off by default).
    pub bridge: crate::bridge::BridgeConfig,
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
    /// How long the holder has to answer, in seconds (0: no limit).
    pub timeout_secs: u64,
    /// The terminal a text-mode pinentry draws on (`OPTION ttyname=`, with `ttytype=` from
    /// `TERM`); unset for graphical pinentries.
    pub tty: Option<String>,
}

impl Default for PinentryConfig {
    fn default() -> Self {
        Self {
            program: PathBuf::from("pinentry"),
            args: Vec::new(),
            timeout_secs: 60,
            tty: None,
        }
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
    /// How often the signed-in card's certificate is re-read to notice it rewritten in place by
    /// another program, in seconds; 0 (the default) never re-reads it on a clock.
    ///
    /// A card swapped, even too quickly for the removal to be seen, shows in the reader's event
    /// counter and is re-identified at once without this. A certificate another program
    /// rewrites without a reset or re-insertion is noticed at the agent's next use of the card
    /// (the next sign-in with it, or the card doctor's next look at it); this clock only makes
    /// that sooner, at the price of a card transaction every period on a card other
    /// applications also use.
    pub certificate_check_secs: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            removal_action: RemovalAction::Logout,
            login_on_insert: true,
            certificate_check_secs: 0,
        }
    }
}

/// The local socket.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IpcConfig {
    /// The socket path (default `$XDG_RUNTIME_DIR/identity-agent/agent.sock`).
    pub socket: Option<PathBuf>,
    /// At most this many connections at once (default 256: room for many clinical
    /// applications at once; a stuck client is closed by the hello and idle timeouts).
    pub max_connections: usize,
    /// Events a subscriber may fall behind by before it is dropped.
    pub subscriber_queue: usize,
    /// A connection has this many seconds to say `hello` (0: no deadline).
    pub hello_timeout_secs: u64,
    /// A connection that is not subscribed, has no call running and sends nothing for this
    /// many seconds is closed (0: never).
    pub idle_timeout_secs: u64,
}

impl Default for IpcConfig {
    fn default() -> Self {
        Self {
            socket: None,
            max_connections: 256,
            subscriber_queue: 256,
            hello_timeout_secs: 10,
            idle_timeout_secs: 300,
        }
    }
}

/// The audit log.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Past this many bytes the log is renamed `audit.log.1` (replacing an older one) and a
    /// new one started (0: never rotated).
    pub max_bytes: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
        }
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

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;

/// The system-wide configuration file (`/etc/identity-agent/config.toml` on Unix).
pub fn system_config_path() -> PathBuf {
    platform::system_config_path()
}

impl Config {
    /// Loads `explicit` if given; otherwise the [system file](system_config_path) (on Unix
    /// `/etc/identity-agent/config.toml`) then the user's over it (on Unix
    /// `$XDG_CONFIG_HOME/identity-agent/config.toml`). Missing files are fine; a
    /// malformed one is an error naming the file and the line.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Config> {
        match explicit {
            Some(path) => match read_table(path)? {
                Some(table) => from_table(table, path),
                None => anyhow::bail!("the configuration file {} does not exist", path.display()),
            },
            None => {
                let user = platform::user_config_path();
                Self::load_layers(&system_config_path(), user.as_deref())
            }
        }
    }

    /// Loads `system` and then `user` deep-merged over it (table by table, key by key); either
    /// may be missing.
    pub fn load_layers(system: &Path, user: Option<&Path>) -> anyhow::Result<Config> {
        let mut merged = toml::Table::new();
        let mut last = system;
        for path in std::iter::once(system).chain(user) {
            if let Some(table) = read_table(path)? {
                merge(&mut merged, table);
                last = path;
            }
        }
        from_table(merged, last)
    }

    /// The socket path to serve on.
    pub fn socket_path(&self) -> PathBuf {
        self.ipc
            .socket
            .clone()
            .unwrap_or_else(agent_ipc::default_socket_path)
    }

    /// The state directory (created 0700 by the caller).
    pub fn state_dir(&self) -> PathBuf {
        match &self.state_dir {
            Some(dir) => dir.clone(),
            None => platform::default_state_dir(),
        }
    }
}

/// Reads and checks one file: `None` when it does not exist. The file is deserialized on its
/// own first, so an unknown key or a wrong type is reported with its own file and line.
fn read_table(path: &Path) -> anyhow::Result<Option<toml::Table>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("cannot read the configuration file {}: {e}", path.display()),
    };
    let located = |e: toml::de::Error| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        let message = e.message().trim_end().to_owned();
        match line {
            Some(line) => anyhow::anyhow!("{}:{line}: {message}", path.display()),
            None => anyhow::anyhow!("{}: {message}", path.display()),
        }
    };
    toml::from_str::<Config>(&text).map_err(located)?;
    let table = toml::from_str::<toml::Table>(&text).map_err(located)?;
    Ok(Some(table))
}

/// Deserializes the merged tables once; `last` names the file in the (unlikely) error.
fn from_table(table: toml::Table, last: &Path) -> anyhow::Result<Config> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", last.display(), e.message()))
}

/// Merges `over` into `base`: tables key by key, anything else replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(over)) => merge(base, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn defaults() {
        let config = Config::default();
        assert_eq!(config.pinentry.program, PathBuf::from("pinentry"));
        assert!(config.pinentry.args.is_empty());
        assert_eq!(config.pinentry.timeout(), Duration::from_secs(60));
        assert_eq!(config.pinentry.tty, None);
        assert_eq!(config.session.removal_action, RemovalAction::Logout);
        assert!(config.session.login_on_insert);
        assert_eq!(config.session.certificate_check_secs, 0);
        assert_eq!(config.ipc.socket, None);
        assert_eq!(config.ipc.max_connections, 256);
        assert_eq!(config.ipc.subscriber_queue, 256);
        assert_eq!(config.ipc.hello_timeout_secs, 10);
        assert_eq!(config.ipc.idle_timeout_secs, 300);
        assert_eq!(config.audit.max_bytes, 1024 * 1024);
        assert_eq!(config.expiry.warning_days, 90);
        assert!(!config.bridge.enabled());
        // An empty file is the defaults.
        assert_eq!(toml::from_str::<Config>("").unwrap(), config);
    }

    #[test]
    fn user_file_is_merged_over_the_system_file_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let system = write(
            dir.path(),
            "system.toml",
            "[cms]\nurl = \"https://cms.example:8443\"\nca_file = \"/etc/ca.pem\"\n\
             [pinentry]\nprogram = \"pinentry-gnome3\"\ntimeout_secs = 30\n\
             [session]\nremoval_action = \"lock\"\n",
        );
        let user = write(
            dir.path(),
            "user.toml",
            "[cms]\nurl = \"https://other.example\"\n[pinentry]\nargs = [\"--debug\"]\n",
        );
        let config = Config::load_layers(&system, Some(&user)).unwrap();
        assert_eq!(config.cms.url.as_deref(), Some("https://other.example"));
        assert_eq!(config.cms.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(config.pinentry.program, PathBuf::from("pinentry-gnome3"));
        assert_eq!(config.pinentry.args, vec!["--debug".to_owned()]);
        assert_eq!(config.pinentry.timeout_secs, 30);
        assert_eq!(config.session.removal_action, RemovalAction::Lock);
        assert!(config.session.login_on_insert);
        assert_eq!(config.ipc, IpcConfig::default());
    }

    #[test]
    fn missing_files_give_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let config = Config::load_layers(&missing, Some(&dir.path().join("nope2.toml"))).unwrap();
        assert_eq!(config, Config::default());
        let user = write(dir.path(), "user.toml", "[expiry]\nwarning_days = 14\n");
        let config = Config::load_layers(&missing, Some(&user)).unwrap();
        assert_eq!(config.expiry.warning_days, 14);
    }

    #[test]
    fn an_explicit_file_must_exist_and_is_the_only_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::load(Some(&dir.path().join("absent.toml"))).unwrap_err();
        assert!(err.to_string().contains("absent.toml"), "{err}");
        let file = write(dir.path(), "c.toml", "[ipc]\nsocket = \"/run/x.sock\"\n");
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.socket_path(), PathBuf::from("/run/x.sock"));
        assert_eq!(config.ipc.max_connections, 256);
    }

    /// Asserts that the error `err` starts with `file:line:`.
    #[track_caller]
    fn assert_error_at(err: &str, file: &Path, line: u32) {
        assert!(
            err.starts_with(&format!("{}:{line}:", file.display())),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let system = write(
            dir.path(),
            "system.toml",
            "[session]\nlogin_on_insert = true\n",
        );
        let unknown = write(
            dir.path(),
            "unknown.toml",
            "# comment\n[session]\nlogin_on_insert = false\nremoval = \"lock\"\n",
        );
        let err = Config::load_layers(&system, Some(&unknown))
            .unwrap_err()
            .to_string();
        assert_error_at(&err, &unknown, 4);
        assert!(err.contains("removal"), "{err}");

        let bad_type = write(
            dir.path(),
            "type.toml",
            "[ipc]\n\nmax_connections = \"many\"\n",
        );
        let err = Config::load(Some(&bad_type)).unwrap_err().to_string();
        assert_error_at(&err, &bad_type, 3);

        let bad_syntax = write(dir.path(), "syntax.toml", "[pinentry]\nprogram = \n");
        let err = Config::load_layers(&bad_syntax, None)
            .unwrap_err()
            .to_string();
        assert_error_at(&err, &bad_syntax, 2);

        let bad_action = write(
            dir.path(),
            "action.toml",
            "[session]\nremoval_action = \"explode\"\n",
        );
        let err = Config::load(Some(&bad_action)).unwrap_err().to_string();
        assert_error_at(&err, &bad_action, 2);

        let origin = write(
            dir.path(),
            "origin.toml",
            "[bridge]\nport = 8765\nallowed_origins = [\"https://cms.example\", \"*\"]\n",
        );
        let err = Config::load(Some(&origin)).unwrap_err().to_string();
        assert_error_at(&err, &origin, 3);
        assert!(err.contains("wildcards are not allowed"), "{err}");

        let top = write(dir.path(), "top.toml", "colour = \"blue\"\n");
        let err = Config::load(Some(&top)).unwrap_err().to_string();
        assert_error_at(&err, &top, 1);
    }

    #[test]
    fn a_configured_state_dir_wins() {
        let config = Config {
            state_dir: Some(PathBuf::from("/var/lib/x")),
            ..Config::default()
        };
        assert_eq!(config.state_dir(), PathBuf::from("/var/lib/x"));
    }
}
