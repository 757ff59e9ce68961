//! The test bed every end-to-end test and the demo stand on.
//!
//! [`TestBed::start`] runs a private pcscd (its own mount namespace, vpcd port pair and client
//! socket) with two virtual readers, "Virtual PCD 00 00" and "Virtual PCD 00 01" — the RA's
//! two-reader set-up — and inserts and removes `cardsim` cards in them. Everything is torn down
//! when the bed is dropped, also when a test panics.
//!
//! libpcsclite reads its socket name once per process, so one process drives one pcscd at a
//! time: the suite runs under `cargo nextest` (a process per test, so tests run in parallel), and
//! test beds within one process take turns.

pub mod agent_client;
pub mod bridge;
pub mod browser;
pub mod desktop;
pub mod fault;
pub mod issue;
pub mod keyring;
pub mod pcscd;
pub mod pki;
pub mod process;
pub mod session_bus;
pub mod sni;
pub mod stack;
pub mod wine;

use anyhow::{bail, Context as _, Result};
use cardsim::{Faults, InsertedCard};
use pcsc::{Context, ReaderState, Scope, State};
use pcscd::IsolatedPcscd;
use std::ffi::CString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How long pcscd may take to notice an inserted or removed card (it polls vpcd about every
/// 400 ms).
pub const CARD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the readers may take to appear after pcscd starts.
const READERS_TIMEOUT: Duration = Duration::from_secs(5);

/// The first user id (a UUID: `8-4-4-4-12` hex digits) in `text`, if any: what people read
/// should name them, not give their id.
pub fn user_id_in(text: &str) -> Option<&str> {
    let is_uuid = |s: &str| {
        s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
    };
    text.char_indices()
        .filter_map(|(i, _)| text.get(i..i + 36))
        .find(|candidate| is_uuid(candidate))
}

/// One private pcscd with two virtual readers, and a temporary directory for card files.
pub struct TestBed {
    // Field order is drop order: pcscd stops before its directories go.
    pcscd: IsolatedPcscd,
    dir: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

impl TestBed {
    /// Starts pcscd and waits until both virtual readers are listed.
    pub fn start() -> Result<Self> {
        static TURN: Mutex<()> = Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let run_dir = process_run_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("identity-agent-testbed-")
            .tempdir()?;
        let mut last_error = None;
        // A port pair free when probed may be taken before vpcd binds it: try a few.
        for _ in 0..3 {
            let pcscd = IsolatedPcscd::start(dir.path(), &run_dir, pcscd::free_port_pair()?)?;
            match wait_for_readers() {
                Ok(()) => {
                    return Ok(Self {
                        pcscd,
                        dir,
                        _turn: turn,
                    })
                }
                Err(e) => last_error = Some(e.context(format!("pcscd said: {}", pcscd.log()))),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("pcscd did not start")))
    }

    /// The temporary directory of this bed (card files, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PC/SC name of virtual reader `slot` (0 or 1).
    pub fn reader_name(&self, slot: usize) -> String {
        reader_name(slot)
    }

    /// Where a virtual card connects to be inserted into reader `slot`.
    pub fn vpcd_addr(&self, slot: usize) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.pcscd.port() + slot as u16))
    }

    /// A new PC/SC context on this bed's pcscd.
    pub fn context(&self) -> Result<Context> {
        Context::establish(Scope::User).context("connecting to the test bed's pcscd")
    }

    /// The environment a third-party PC/SC client (OpenSC, yubico-piv-tool) needs to use this
    /// bed's pcscd.
    pub fn client_env(&self) -> (&'static str, PathBuf) {
        ("PCSCLITE_CSOCK_NAME", self.pcscd.socket())
    }

    /// A connection to the card in reader `slot`.
    pub fn connect(&self, slot: usize) -> Result<piv::PivCard> {
        let name = std::ffi::CString::new(self.reader_name(slot))?;
        Ok(piv::PivCard::connect(&self.context()?, &name)?)
    }

    /// Runs a third-party PC/SC tool (OpenSC, yubico-piv-tool) against this bed's pcscd, with a
    /// private HOME so that no cache of another run leaks in; what it printed goes to the
    /// test's output.
    pub fn run_tool(&self, program: &str, args: &[&str]) -> std::process::Output {
        let (name, socket) = self.client_env();
        let home = self.dir().join("home");
        let output = std::fs::create_dir_all(&home)
            .and_then(|()| {
                std::process::Command::new(program)
                    .args(args)
                    .env(name, socket)
                    .env("HOME", &home)
                    .env_remove("OPENSC_CONF")
                    .output()
            })
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        eprintln!(
            "$ {program} {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Inserts the card in `card_file` into reader `slot` and waits until pcscd sees it.
    pub fn insert(&self, slot: usize, card_file: &Path, faults: Faults) -> Result<InsertedCard> {
        let card = cardsim::insert(card_file, self.vpcd_addr(slot), faults)
            .with_context(|| format!("inserting {} into reader {slot}", card_file.display()))?;
        self.wait_card(slot, true)?;
        Ok(card)
    }

    /// Removes `card` and waits until pcscd sees reader `slot` empty.
    pub fn remove(&self, slot: usize, card: InsertedCard) -> Result<()> {
        card.remove().context("removing the card")?;
        self.wait_card(slot, false)
    }

    /// Waits until pcscd reports a card `present` (or absent) in reader `slot`.
    pub fn wait_card(&self, slot: usize, present: bool) -> Result<()> {
        let ctx = self.context()?;
        let mut states = [ReaderState::new(
            CString::new(self.reader_name(slot))?,
            State::UNAWARE,
        )];
        let deadline = Instant::now() + CARD_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ctx.get_status_change(left, &mut states) {
                Ok(()) => {}
                Err(pcsc::Error::Timeout) => {
                    bail!(
                        "reader {slot} did not become {} within {CARD_TIMEOUT:?}",
                        presence(present)
                    )
                }
                Err(e) => return Err(e).context("waiting for a reader's state"),
            }
            if states[0].event_state().contains(State::PRESENT) == present {
                return Ok(());
            }
            states[0].sync_current_state();
        }
    }

    /// Stops pcscd, as when the service stops under running clients.
    pub fn stop_pcscd(&mut self) {
        self.pcscd.stop();
    }

    /// Starts pcscd again (same readers and ports) and waits until its readers are listed.
    pub fn restart_pcscd(&mut self) -> Result<()> {
        self.pcscd.restart()?;
        wait_for_readers()
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        // pcscd first, then its socket directory; the next bed of this process makes it anew.
        self.pcscd.stop();
        if let Some(run_dir) = self.pcscd.socket().parent() {
            let _ = std::fs::remove_dir_all(run_dir);
        }
    }
}

fn wait_for_readers() -> Result<()> {
    let deadline = Instant::now() + READERS_TIMEOUT;
    loop {
        if let Ok(ctx) = Context::establish(Scope::User) {
            let readers = reader_names(&ctx);
            if (0..2).all(|slot| readers.contains(&reader_name(slot))) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the virtual readers did not appear within {READERS_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The PC/SC name of virtual reader `slot` (0 or 1) of any test bed.
pub fn reader_name(slot: usize) -> String {
    format!("Virtual PCD 00 {slot:02}")
}

fn presence(present: bool) -> &'static str {
    if present {
        "present"
    } else {
        "empty"
    }
}

/// Names of the readers pcscd lists now (none when it lists none).
pub fn reader_names(ctx: &Context) -> Vec<String> {
    ctx.list_readers_owned()
        .map(|names| {
            names
                .iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// This process's pcscd socket directory, exported to libpcsclite before its first use.
fn process_run_dir() -> Result<PathBuf> {
    static RUN_DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = RUN_DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("identity-agent-pcscd-{}", std::process::id()));
        std::env::set_var("PCSCLITE_CSOCK_NAME", dir.join("pcscd.comm"));
        dir
    });
    std::fs::create_dir_all(dir)?;
    Ok(dir.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_found_in_text_and_names_are_not() {
        let id = "4e81ac01-7ea1-4665-94f5-5c035a583b79";
        assert_eq!(user_id_in(&format!("Holder {id}, expired")), Some(id));
        assert_eq!(
            user_id_in(&format!("Zoë:{}", id.to_uppercase())).map(str::len),
            Some(36)
        );
        assert_eq!(
            user_id_in("Enter the passcode of Jane Doe's smartcard 4082A001132F2817."),
            None
        );
        assert_eq!(user_id_in(&id[..35]), None);
        assert_eq!(user_id_in(&id.replace('-', "_")), None);
    }
}
