//! A private desktop for the tray's tests: Xvfb on a display it picks itself, a D-Bus session
//! bus of its own, dunst as the notification server, and xfce4-panel with its systray plugin
//! (a real StatusNotifierItem host: it owns `org.kde.StatusNotifierWatcher` and draws the
//! items). Every process runs in its own process group and the group is ended when the
//! [`Desktop`] is dropped, also when a test panics.

use anyhow::{bail, Context as _, Result};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a desktop part may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The panel's configuration: one panel along the top, 32 px, holding the systray plugin only.
const PANEL_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="32"/>
      <property name="plugin-ids" type="array">
        <value type="int" value="1"/>
      </property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray"/>
  </property>
</channel>
"#;

/// A process of the desktop, ended with its whole process group.
struct Part {
    child: Child,
}

impl Drop for Part {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: kill has no memory-safety preconditions; the group is this part's own.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; whatever of the group is left is killed.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Xvfb, a session bus, dunst and xfce4-panel.
pub struct Desktop {
    // Field order is drop order: the panel and dunst go before the bus, the bus before X.
    panel: Option<Part>,
    dunst: Option<Part>,
    bus: Option<Part>,
    _xvfb: Option<Part>,
    display: String,
    bus_address: String,
    dir: tempfile::TempDir,
}

impl Desktop {
    /// Starts the desktop and waits until the panel's status notifier host is on the bus.
    pub fn start() -> Result<Self> {
        for program in [
            "Xvfb",
            "dbus-daemon",
            "dunst",
            "xfce4-panel",
            "dunstctl",
            "import",
        ] {
            if which(program).is_none() {
                bail!("{program} is not installed: run scripts/setup");
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("identity-agent-desktop-")
            .tempdir()?;
        for sub in [
            "config/xfce4/xfconf/xfce-perchannel-xml",
            "config/dunst",
            "run",
            "cache",
        ] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        std::fs::set_permissions(
            dir.path().join("run"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        std::fs::write(
            dir.path()
                .join("config/xfce4/xfconf/xfce-perchannel-xml/xfce4-panel.xml"),
            PANEL_XML,
        )?;
        // dunst's context menu ("dmenu") is a script that logs the actions the server offers
        // and picks the one named in `dmenu-choice`: how a test chooses "Renew now".
        let pick = dir.path().join("pick-action");
        std::fs::write(
            &pick,
            format!(
                "#!/bin/sh\ntee -a '{log}' | grep -m1 -F \"$(cat '{choice}')\"\n",
                log = dir.path().join("dmenu.log").display(),
                choice = dir.path().join("dmenu-choice").display()
            ),
        )?;
        std::fs::set_permissions(&pick, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        std::fs::write(
            dir.path().join("config/dunst/dunstrc"),
            format!(
                "[global]\n    font = DejaVu Sans 9\n    width = 420\n    offset = 8x40\n    \
                 origin = top-right\n    dmenu = {}\n    show_indicators = yes\n\n\
                 [urgency_low]\n    timeout = 0\n    format = \"{low}\"\n\
                 [urgency_normal]\n    timeout = 0\n    format = \"{normal}\"\n\
                 [urgency_critical]\n    timeout = 0\n    format = \"{critical}\"\n",
                pick.display(),
                low = urgency_format("low"),
                normal = urgency_format("normal"),
                critical = urgency_format("critical"),
            ),
        )?;

        // Xvfb picks a free display itself and writes its number to the pipe.
        let (display_read, display_write) = pipe()?;
        let mut xvfb = Command::new("Xvfb");
        xvfb.args([
            "-screen",
            "0",
            "1024x600x24",
            "-nolisten",
            "tcp",
            "-displayfd",
        ])
        .arg(display_write.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("xvfb.log"))?)
        .process_group(0);
        let xvfb = Part {
            child: xvfb.spawn().context("starting Xvfb")?,
        };
        // SAFETY: the write end is ours; the child has its own copy.
        unsafe { libc::close(display_write) };
        let number = read_line_from_fd(display_read, START_TIMEOUT).context("Xvfb's display")?;
        let display = format!(":{}", number.trim());

        let mut desktop = Self {
            panel: None,
            dunst: None,
            bus: None,
            _xvfb: Some(xvfb),
            display,
            bus_address: String::new(),
            dir,
        };

        let mut bus = desktop.command("dbus-daemon");
        bus.args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(desktop.log_file("dbus.log")?);
        let mut bus = Part {
            child: bus.spawn().context("starting dbus-daemon")?,
        };
        let stdout = bus.child.stdout.take().context("dbus-daemon's output")?;
        let mut address = String::new();
        BufReader::new(stdout).read_line(&mut address)?;
        desktop.bus_address = address.trim().to_owned();
        desktop.bus = Some(bus);
        if desktop.bus_address.is_empty() {
            bail!("dbus-daemon gave no address");
        }

        let mut dunst = desktop.command("dunst");
        dunst.stderr(desktop.log_file("dunst.log")?);
        desktop.dunst = Some(Part {
            child: dunst.spawn().context("starting dunst")?,
        });
        desktop.wait_for_name("org.freedesktop.Notifications")?;

        let mut panel = desktop.command("xfce4-panel");
        panel
            .arg("--disable-wm-check")
            .stderr(desktop.log_file("panel.log")?);
        desktop.panel = Some(Part {
            child: panel.spawn().context("starting xfce4-panel")?,
        });
        desktop.wait_for_name("org.kde.StatusNotifierWatcher")?;
        Ok(desktop)
    }

    /// A command that runs on this desktop: its display, session bus, configuration and
    /// runtime directories, in a process group of its own, no standard input.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        let dir = self.dir.path();
        command
            .env("DISPLAY", &self.display)
            .env_remove("WAYLAND_DISPLAY")
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
            .env("HOME", dir)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("NO_AT_BRIDGE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0);
        command
    }

    /// A new file for a part's log in the desktop's directory.
    pub fn log_file(&self, name: &str) -> Result<std::fs::File> {
        Ok(std::fs::File::create(self.dir.path().join(name))?)
    }

    /// The desktop's directory (logs, configuration).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The X display (`:99`).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// A connection to the desktop's session bus.
    pub fn bus(&self) -> Result<zbus::blocking::Connection> {
        let address: zbus::Address = self.bus_address.as_str().try_into()?;
        Ok(zbus::blocking::connection::Builder::address(address)?.build()?)
    }

    fn wait_for_name(&self, name: &str) -> Result<()> {
        let bus = self.bus()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let dbus = zbus::blocking::fdo::DBusProxy::new(&bus)?;
            if dbus.name_has_owner(name.try_into()?)? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} did not appear on the session bus within {START_TIMEOUT:?}; \
                     panel log:\n{}",
                    std::fs::read_to_string(self.dir.path().join("panel.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG of the whole screen (ImageMagick's `import`).
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let status = self
            .command("import")
            .args(["-window", "root"])
            .arg(path)
            .status()
            .context("running import")?;
        if !status.success() {
            bail!("import failed ({status})");
        }
        Ok(())
    }

    /// Saves the part of the screen at (`x`, `y`) of `width` × `height` as a PNG.
    pub fn screenshot_area(
        &self,
        path: &Path,
        (x, y, width, height): (u32, u32, u32, u32),
    ) -> Result<()> {
        let full = self.dir.path().join("screen.png");
        self.screenshot(&full)?;
        let status = self
            .command("convert")
            .arg(&full)
            .args(["-crop", &format!("{width}x{height}+{x}+{y}"), "+repage"])
            .arg(path)
            .status()
            .context("running convert")?;
        if !status.success() {
            bail!("convert failed ({status})");
        }
        Ok(())
    }

    /// Runs `dunstctl` with `args` against this desktop's dunst; returns its output.
    pub fn dunstctl(&self, args: &[&str]) -> Result<String> {
        let output = self
            .command("dunstctl")
            .args(args)
            .stdout(Stdio::piped())
            .output()
            .context("running dunstctl")?;
        if !output.status.success() {
            bail!(
                "dunstctl {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The notifications dunst shows now.
    pub fn notifications_displayed(&self) -> Result<u32> {
        Ok(self.dunstctl(&["count", "displayed"])?.trim().parse()?)
    }

    /// dunst's history (closed notifications), newest first: (summary, body, urgency,
    /// category) of each.
    pub fn notification_history(&self) -> Result<Vec<HistoryEntry>> {
        let json: serde_json::Value = serde_json::from_str(&self.dunstctl(&["history"])?)?;
        let field = |n: &serde_json::Value, key: &str| {
            n[key]["data"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_default()
        };
        Ok(json["data"][0]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|n| HistoryEntry {
                        summary: field(n, "summary"),
                        body: field(n, "body"),
                        urgency: field(n, "message")
                            .rsplit(URGENCY_MARK)
                            .next()
                            .filter(|_| field(n, "message").contains(URGENCY_MARK))
                            .map(|u| u.trim_end_matches("</small>").to_uppercase())
                            .unwrap_or_default(),
                        category: field(n, "category"),
                        appname: field(n, "appname"),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Opens dunst's context menu of the newest notification and chooses the action whose
    /// label contains `label` (the choice goes through the configured dmenu script); returns
    /// the action lines dunst offered.
    pub fn choose_notification_action(&self, label: &str) -> Result<String> {
        std::fs::write(self.dir.path().join("dmenu-choice"), label)?;
        let log = self.dir.path().join("dmenu.log");
        let _ = std::fs::remove_file(&log);
        self.dunstctl(&["context"])?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let offered = std::fs::read_to_string(&log).unwrap_or_default();
            if !offered.is_empty() {
                return Ok(offered);
            }
            if Instant::now() > deadline {
                bail!("dunst did not open its context menu");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The screen's pixels at (`x`, `y`) of `width` × `height`, as RGB bytes row by row.
    pub fn pixels(&self, (x, y, width, height): (u32, u32, u32, u32)) -> Result<Vec<u8>> {
        let output = self
            .command("import")
            .args(["-window", "root", "-crop"])
            .arg(format!("{width}x{height}+{x}+{y}"))
            .args(["-depth", "8", "rgb:-"])
            .stdout(Stdio::piped())
            .output()
            .context("running import")?;
        if !output.status.success() || output.stdout.len() != (width * height * 3) as usize {
            bail!(
                "import gave {} bytes ({})",
                output.stdout.len(),
                output.status
            );
        }
        Ok(output.stdout)
    }

    /// Moves the pointer to (`x`, `y`) (xdotool).
    pub fn point(&self, x: u32, y: u32) -> Result<()> {
        self.xdotool(&["mousemove", &x.to_string(), &y.to_string()])
    }

    /// Moves the pointer to (`x`, `y`) and clicks `button` there (xdotool).
    pub fn click(&self, x: u32, y: u32, button: u8) -> Result<()> {
        self.point(x, y)?;
        self.xdotool(&["click", &button.to_string()])
    }

    /// Presses `key` (xdotool), e.g. `Escape`.
    pub fn key(&self, key: &str) -> Result<()> {
        self.xdotool(&["key", key])
    }

    /// Runs xdotool with `args` on this display.
    fn xdotool(&self, args: &[&str]) -> Result<()> {
        let status = self
            .command("xdotool")
            .args(args)
            .status()
            .context("running xdotool")?;
        if !status.success() {
            bail!("xdotool {} failed ({status})", args.join(" "));
        }
        Ok(())
    }
}

/// dunst's history has no urgency: the format of each urgency ends the message with it.
const URGENCY_MARK: &str = "<small>urgency ";

fn urgency_format(urgency: &str) -> String {
    format!("<b>%s</b>\\n%b\\n{URGENCY_MARK}{urgency}</small>")
}

/// A notification in dunst's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its summary.
    pub summary: String,
    /// Its body.
    pub body: String,
    /// `LOW`, `NORMAL` or `CRITICAL`.
    pub urgency: String,
    /// Its category hint.
    pub category: String,
    /// The application's name.
    pub appname: String,
}

/// A process started on the desktop (the tray), ended with its process group on drop.
pub struct DesktopProcess {
    part: Part,
}

impl DesktopProcess {
    /// Starts `command` (from [`Desktop::command`]).
    pub fn spawn(mut command: Command, name: &'static str) -> Result<Self> {
        Ok(Self {
            part: Part {
                child: command
                    .spawn()
                    .with_context(|| format!("starting {name}"))?,
            },
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.part.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.part.child.try_wait(), Ok(None))
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// A pipe whose write end the child inherits (no close-on-exec) and whose read end it does not.
fn pipe() -> Result<(i32, i32)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: fds[0] is the read end we just made.
    unsafe { libc::fcntl(fds[0], libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok((fds[0], fds[1]))
}

/// Reads a line from `fd` (taking ownership of it), failing after `timeout`.
fn read_line_from_fd(fd: i32, timeout: Duration) -> Result<String> {
    use std::os::fd::FromRawFd;
    // SAFETY: fd is an open descriptor this function now owns.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(file).take(64).read_line(&mut text);
        let _ = tx.send(text);
    });
    let line = rx.recv_timeout(timeout).context("timed out")?;
    if line.trim().is_empty() {
        bail!("nothing was written");
    }
    Ok(line)
}
