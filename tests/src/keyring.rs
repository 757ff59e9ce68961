//! A desktop user's keyring on a private session bus: `dbus-daemon --session` and
//! `gnome-keyring-daemon` (the Secret Service) with a new login keyring in a temporary home,
//! unlocked with its password as a desktop login unlocks it. Items are read with
//! `secret-tool`, as the user would.

use crate::session_bus::start_session_bus;
use anyhow::{bail, Context as _, Result};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long the bus and the keyring may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The password of the test user's login keyring.
const LOGIN_PASSWORD: &str = "correct horse battery staple";

/// A session bus with an unlocked Secret Service on it; both stop when it is dropped.
pub struct SessionKeyring {
    // Field order is drop order: the processes are stopped (in Drop) before the directory goes.
    keyring: Option<Child>,
    bus: Option<Child>,
    address: String,
    dir: TempDir,
}

impl SessionKeyring {
    /// Starts the bus, then the keyring daemon with a new login keyring unlocked, and waits
    /// until its default collection is there.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("ia-keyring").tempdir()?;
        for sub in ["home", "data", "config", "run"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        std::fs::set_permissions(
            dir.path().join("run"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        let mut dbus_daemon = Command::new("dbus-daemon");
        user_env(&mut dbus_daemon, dir.path());
        let (bus, address) = start_session_bus(dbus_daemon, &dir.path().join("run/bus"))?;
        let mut this = Self {
            keyring: None,
            bus: Some(bus),
            address,
            dir,
        };
        let mut keyring = this.command("gnome-keyring-daemon");
        let mut keyring = keyring
            .args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting gnome-keyring-daemon (Debian package gnome-keyring)")?;
        let mut stdin = keyring
            .stdin
            .take()
            .context("gnome-keyring-daemon's input")?;
        stdin.write_all(LOGIN_PASSWORD.as_bytes())?;
        drop(stdin);
        this.keyring = Some(keyring);
        this.wait_for_default_collection()?;
        Ok(this)
    }

    /// The bus address, for `DBUS_SESSION_BUS_ADDRESS`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A command with this user's environment and session bus.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        user_env(&mut command, self.dir.path());
        command.env("DBUS_SESSION_BUS_ADDRESS", &self.address);
        command
    }

    /// The secret under `attributes` (pairs of attribute and value), as `secret-tool lookup`
    /// finds it; `None` when there is none.
    pub fn lookup(&self, attributes: &[(&str, &str)]) -> Result<Option<String>> {
        let mut command = self.command("secret-tool");
        command.arg("lookup");
        for (name, value) in attributes {
            command.args([name, value]);
        }
        let output = command
            .stdin(Stdio::null())
            .output()
            .context("running secret-tool (Debian package libsecret-tools)")?;
        let secret = String::from_utf8(output.stdout)?;
        Ok(if output.status.success() && !secret.is_empty() {
            Some(secret)
        } else {
            None
        })
    }

    /// Locks the default collection, as the screen locker or the user can.
    pub fn lock(&self) -> Result<()> {
        let answer = self
            .command("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.Lock",
                "array:objpath:/org/freedesktop/secrets/collection/login",
            ])
            .stdin(Stdio::null())
            .output()
            .context("running dbus-send (Debian package dbus-bin)")?;
        if !answer.status.success() {
            bail!(
                "the keyring did not lock: {}",
                String::from_utf8_lossy(&answer.stderr)
            );
        }
        Ok(())
    }

    /// Waits until the Secret Service answers on the bus with its default collection unlocked.
    fn wait_for_default_collection(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.keyring.as_mut().and_then(|k| k.try_wait().ok()?) {
                bail!("gnome-keyring-daemon exited ({status}) before serving");
            }
            // The bus is asked first: a call to the Secret Service before the daemon owns its
            // name would have the bus start another one, without the password.
            let owned = self.dbus_send(&[
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ])?;
            let reply = if owned.contains("boolean true") {
                self.dbus_send(&[
                    "--dest=org.freedesktop.secrets",
                    "/org/freedesktop/secrets/aliases/default",
                    "org.freedesktop.DBus.Properties.Get",
                    "string:org.freedesktop.Secret.Collection",
                    "string:Locked",
                ])?
            } else {
                String::from("(the Secret Service has no owner on the bus yet)")
            };
            if reply.contains("boolean false") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the keyring has no unlocked default collection within {START_TIMEOUT:?}: \
                     {reply}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl SessionKeyring {
    /// The reply of a `dbus-send` call on the bus (empty when it failed).
    fn dbus_send(&self, args: &[&str]) -> Result<String> {
        let answer = self
            .command("dbus-send")
            .args(["--session", "--print-reply"])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .context("running dbus-send (Debian package dbus-bin)")?;
        Ok(String::from_utf8_lossy(&answer.stdout).into_owned())
    }
}

impl Drop for SessionKeyring {
    fn drop(&mut self) {
        for child in [self.keyring.take(), self.bus.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The environment of a user whose home, data, configuration and runtime directories are in
/// `dir`, so the keyring daemon makes its keyring there.
fn user_env(command: &mut Command, dir: &Path) {
    command
        .env("HOME", dir.join("home"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_RUNTIME_DIR", dir.join("run"));
}
