//! Peers: other programs that react to a card being pulled, run beside the agent on the test
//! bed's pcscd (`PCSCLITE_CSOCK_NAME`, as the agent) so that their reaction is timed after the
//! same bare watcher:
//!
//! - `opensc-notify` (Debian package opensc) shows a desktop notification: it gets a private
//!   session bus on which this process is the notification server, and its reaction is the
//!   `Notify` call arriving here;
//! - `card_eventmgr` (Debian package libpam-pkcs11) runs a configured command: its private
//!   configuration writes the event to a FIFO read here, and its reaction is that line arriving.
//!
//! A peer that is not installed is skipped.

use anyhow::{bail, Context as _, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testbed::session_bus::start_session_bus;
use zbus::zvariant::OwnedValue;

/// How long a peer may take to react to a card event.
const REACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// A peer program.
#[derive(Clone, Copy)]
pub enum PeerKind {
    /// OpenSC's card notifier.
    OpenscNotify,
    /// pam_pkcs11's card event manager.
    CardEventmgr,
}

impl PeerKind {
    /// Every peer, in the order they are measured.
    pub const ALL: [PeerKind; 2] = [PeerKind::OpenscNotify, PeerKind::CardEventmgr];

    /// Its program name.
    pub fn program(self) -> &'static str {
        match self {
            PeerKind::OpenscNotify => "opensc-notify",
            PeerKind::CardEventmgr => "card_eventmgr",
        }
    }

    /// How to install it.
    pub fn install_hint(self) -> &'static str {
        match self {
            PeerKind::OpenscNotify => "apt-get install opensc",
            PeerKind::CardEventmgr => "apt-get install libpam-pkcs11",
        }
    }

    /// Whether its program is on `PATH`.
    pub fn installed(self) -> bool {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join(self.program()).is_file())
        })
    }
}

/// A card event as a peer reported it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CardEvent {
    /// A card was inserted.
    Inserted,
    /// The card was removed.
    Removed,
}

/// A running peer and what it reported; stopped when dropped.
pub struct Peer {
    /// Which peer.
    pub kind: PeerKind,
    child: Child,
    reactions: mpsc::Receiver<(Instant, CardEvent)>,
    /// card_eventmgr's FIFO, its write end: a line `end` stops the reader.
    fifo: Option<std::fs::File>,
    // Dropped after the peer is stopped (in Drop): its bus, then its directory.
    _bus: Option<SessionBus>,
    _dir: tempfile::TempDir,
}

impl Peer {
    /// Starts `kind` on the test bed's pcscd, with the environment `pcsc_env` (variable and
    /// value) that points a PC/SC client at it, and gives it time to settle on the readers.
    pub fn start(kind: PeerKind, pcsc_env: &(&str, PathBuf)) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("ia-peer").tempdir()?;
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home)?;
        let (tx, reactions) = mpsc::channel();
        let mut command = Command::new(kind.program());
        command
            .env(pcsc_env.0, &pcsc_env.1)
            .env("HOME", &home)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (bus, fifo) = match kind {
            PeerKind::OpenscNotify => {
                let bus = SessionBus::start(dir.path(), tx)?;
                command.env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
                (Some(bus), None)
            }
            PeerKind::CardEventmgr => {
                let fifo = dir.path().join("events");
                let config = dir.path().join("card_eventmgr.conf");
                std::fs::write(&config, card_eventmgr_config(&fifo))?;
                let writer = fifo_reader(&fifo, tx)?;
                command
                    .arg("nodaemon")
                    .arg(format!("config_file={}", config.display()));
                (None, Some(writer))
            }
        };
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", kind.program()))?;
        let mut peer = Self {
            kind,
            child,
            reactions,
            fifo,
            _bus: bus,
            _dir: dir,
        };
        std::thread::sleep(Duration::from_millis(1500));
        if let Some(status) = peer.child.try_wait()? {
            bail!("{} stopped at once: {status}", kind.program());
        }
        Ok(peer)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When it next reported `event`, dropping other reports before it.
    pub fn wait(&self, event: CardEvent) -> Result<Instant> {
        loop {
            let (at, seen) = self
                .reactions
                .recv_timeout(REACTION_TIMEOUT)
                .with_context(|| format!("{} did not react", self.kind.program()))?;
            if seen == event {
                return Ok(at);
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(writer) = &mut self.fifo {
            let _ = writer.write_all(b"end\n");
        }
    }
}

/// card_eventmgr's configuration: in the foreground, its default poll timeout, each event
/// written to `fifo` by its action.
fn card_eventmgr_config(fifo: &Path) -> String {
    let fifo = fifo.display();
    format!(
        "card_eventmgr {{\n  daemon = false;\n  debug = false;\n  timeout = 1000;\n\
         \x20 event card_insert {{ on_error = ignore; action = \"echo inserted > {fifo}\"; }}\n\
         \x20 event card_remove {{ on_error = ignore; action = \"echo removed > {fifo}\"; }}\n\
         \x20 event timeout {{ }}\n}}\n"
    )
}

/// Makes a FIFO at `path` and reads its lines on a thread, sending each event when it arrives,
/// until an `end` line; returns a write end (held open so that the reader never sees its end).
fn fifo_reader(
    path: &Path,
    reactions: mpsc::Sender<(Instant, CardEvent)>,
) -> Result<std::fs::File> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: c_path is a valid NUL-terminated string.
    if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error()).context("making the peer's FIFO");
    }
    let read = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let writer = read.try_clone()?;
    std::thread::spawn(move || {
        for line in BufReader::new(read).lines() {
            let at = Instant::now();
            let event = match line.as_deref() {
                Ok("inserted") => CardEvent::Inserted,
                Ok("removed") => CardEvent::Removed,
                _ => return,
            };
            if reactions.send((at, event)).is_err() {
                return;
            }
        }
    });
    Ok(writer)
}

/// A private session bus (`dbus-daemon --session`) with this process on it as the desktop's
/// notification server; stopped when dropped.
struct SessionBus {
    address: String,
    _server: zbus::blocking::Connection,
    daemon: Child,
}

impl SessionBus {
    /// Starts the bus in `dir` and serves `org.freedesktop.Notifications` on it, sending each
    /// notification's card event to `reactions`.
    fn start(dir: &Path, reactions: mpsc::Sender<(Instant, CardEvent)>) -> Result<Self> {
        let (daemon, address) = start_session_bus(Command::new("dbus-daemon"), &dir.join("bus"))?;
        let server = zbus::blocking::connection::Builder::address(address.as_str())?
            .name("org.freedesktop.Notifications")?
            .serve_at(
                "/org/freedesktop/Notifications",
                NotificationServer { reactions },
            )?
            .build()
            .context("serving notifications on the private bus")?;
        Ok(Self {
            address,
            _server: server,
            daemon,
        })
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// The desktop's notification server, as far as a notifier needs one: each notification is a
/// card event, told apart by its summary.
struct NotificationServer {
    reactions: mpsc::Sender<(Instant, CardEvent)>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl NotificationServer {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        _body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let at = Instant::now();
        let event = if summary.to_lowercase().contains("removed") {
            CardEvent::Removed
        } else {
            CardEvent::Inserted
        };
        let _ = self.reactions.send((at, event));
        1
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "agent-bench".into(),
            "identity-agent".into(),
            "0".into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, _id: u32) {}
}
