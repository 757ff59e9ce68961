//! A private D-Bus session bus: `dbus-daemon --session` listening on a socket of its own, for
//! the programs under test to find through `DBUS_SESSION_BUS_ADDRESS`.

use anyhow::{bail, Context as _, Result};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts `dbus_daemon` (a `Command::new("dbus-daemon")`, with the environment the bus passes
/// on to the services it starts) as a session bus listening at `socket`, and returns it with
/// the address it printed. The caller stops it; it is stopped here when it prints no address.
pub fn start_session_bus(mut dbus_daemon: Command, socket: &Path) -> Result<(Child, String)> {
    let mut daemon = dbus_daemon
        .args(["--session", "--nofork", "--print-address=1"])
        .arg(format!("--address=unix:path={}", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting dbus-daemon (Debian package dbus-daemon)")?;
    match read_address(&mut daemon) {
        Ok(address) => Ok((daemon, address)),
        Err(e) => {
            let _ = daemon.kill();
            let _ = daemon.wait();
            Err(e)
        }
    }
}

/// The address `daemon` printed first, on its standard output.
fn read_address(daemon: &mut Child) -> Result<String> {
    let stdout = daemon.stdout.take().context("dbus-daemon's output")?;
    let mut address = String::new();
    BufReader::new(stdout).read_line(&mut address)?;
    let address = address.trim().to_owned();
    if address.is_empty() {
        bail!("dbus-daemon printed no address");
    }
    Ok(address)
}
