//! Insert/remove cycles of the card, timed after a bare `SCardGetStatusChange` watcher in this
//! process saw the same event: what is left is the agent's (or a peer's) own share.

use crate::floor::RawConnection;
use crate::peers::{CardEvent, Peer};
use crate::runs::{RunFigures, Stat};
use agent_ipc::{Event, ServerMessage};
use anyhow::{Context as _, Result};
use cardsim::Faults;
use pcsc::{Context, ReaderState, Scope, State};
use std::ffi::CString;
use std::io::BufRead;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testbed::stack::Stack;

/// A card reader's state change as the bare watcher saw it: when, and whether a card is in.
pub type Change = (Instant, bool);

/// What insert/remove cycles timed, each after the bare watcher saw the same event.
pub struct Cycles {
    /// Card pulled → `session_ended` at a subscriber.
    pub removed: Vec<Duration>,
    /// Insertion → `card_inserted` (identified with expiry).
    pub identified: Vec<Duration>,
    /// Insertion → `session_started` (PIN from the pinentry, certificate checked at the CMS).
    pub signed_in: Vec<Duration>,
    /// Card pulled → each peer's reaction, in the order of the peers.
    pub peers: Vec<Vec<Duration>>,
}

impl Cycles {
    /// Runs `cycles` insert/remove cycles of the card in `file`, with `peers` watching too: each
    /// cycle waits for the agent to sign in and every peer to see the insertion before the card
    /// is pulled.
    pub fn of(
        stack: &Stack,
        file: &Path,
        bare: &mpsc::Receiver<Change>,
        cycles: usize,
        peers: &[Peer],
    ) -> Result<Self> {
        let (event_tx, event_rx) = mpsc::channel();
        subscribe(&stack.socket()?, event_tx)?;

        let mut times = Self {
            removed: Vec::new(),
            identified: Vec::new(),
            signed_in: Vec::new(),
            peers: vec![Vec::new(); peers.len()],
        };
        for _ in 0..cycles {
            drain(&event_rx);
            drain(bare);
            let inserted = cardsim::insert(file, stack.bed.vpcd_addr(0), Faults::default())?;
            let seen = wait_bare(bare, true)?;
            let at = wait_event(&event_rx, |e| matches!(e, Event::CardInserted { .. }))?;
            times.identified.push(at.saturating_duration_since(seen));
            let at = wait_event(&event_rx, |e| {
                matches!(e, Event::SessionStarted { .. } | Event::LoginFailed { .. })
            })?;
            times.signed_in.push(at.saturating_duration_since(seen));
            for peer in peers {
                peer.wait(CardEvent::Inserted)?;
            }

            inserted.remove()?;
            let gone = wait_bare(bare, false)?;
            let at = wait_event(&event_rx, |e| matches!(e, Event::SessionEnded { .. }))?;
            times.removed.push(at.saturating_duration_since(gone));
            for (peer, reactions) in peers.iter().zip(&mut times.peers) {
                let at = peer.wait(CardEvent::Removed)?;
                reactions.push(at.saturating_duration_since(gone));
            }
        }
        Ok(times)
    }

    /// Adds the agent's card figures to `figures`.
    pub fn record(&self, figures: &mut RunFigures) {
        let stats = [Stat::P50, Stat::Max];
        for (measure, target, times) in [
            ("card pulled → `session_ended`", "≤ 5 ms", &self.removed),
            (
                "insertion → identified with expiry",
                "≤ 50 ms",
                &self.identified,
            ),
            ("insertion + PIN → signed in", "≤ 250 ms", &self.signed_in),
        ] {
            figures.add_times(measure, target, times, &stats);
        }
    }

    /// Adds the removal figures of cycles run while `busy` CPU-bound programs ran.
    pub fn record_busy(&self, busy: usize, figures: &mut RunFigures) {
        figures.add_times(
            &format!("card pulled → `session_ended`, {busy} CPU-bound programs running"),
            "≤ 5 ms",
            &self.removed,
            &[Stat::P50, Stat::Max],
        );
    }

    /// Adds the peers' removal figures (and the agent's in the same cycles) to `figures`.
    pub fn record_peers(&self, peers: &[Peer], figures: &mut RunFigures) {
        let stats = [Stat::P50, Stat::Max];
        figures.add_times(
            "card pulled → `session_ended`, beside the peers",
            "≤ 5 ms",
            &self.removed,
            &stats,
        );
        for (peer, times) in peers.iter().zip(&self.peers) {
            let measure = format!("card pulled → {} reacts", peer.kind.program());
            figures.add_times(&measure, "", times, &stats);
        }
    }
}

/// Subscribes to the agent's events at `socket` and sends (when, event) for each: a thread of
/// its own with blocking reads, as bare as the bare watcher, times each line as it arrives and
/// parses it after. It ends with the connection or when `events` has no receiver.
fn subscribe(socket: &Path, events: mpsc::Sender<(Instant, Event)>) -> Result<()> {
    let mut agent = RawConnection::hello(socket)?;
    agent.ask(r#"{"id":2,"method":"subscribe"}"#)?;
    let mut lines = agent.lines;
    let mut line = String::new();
    std::thread::spawn(move || loop {
        line.clear();
        if !matches!(lines.read_line(&mut line), Ok(1..)) {
            return;
        }
        let at = Instant::now();
        if let Ok(ServerMessage::Event(event)) = serde_json::from_str(&line) {
            if events.send((at, event)).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// A bare `SCardGetStatusChange` loop on `reader`, sending (when, present) on each change.
pub fn bare_watcher(reader: &str, changes: mpsc::Sender<Change>) {
    let Ok(ctx) = Context::establish(Scope::User) else {
        return;
    };
    let Ok(name) = CString::new(reader) else {
        return;
    };
    let mut states = vec![ReaderState::new(name, State::UNAWARE)];
    loop {
        if ctx.get_status_change(None, &mut states).is_err() {
            return;
        }
        let now = Instant::now();
        let state = states[0].event_state();
        states[0].sync_current_state();
        let present = state.contains(State::PRESENT);
        if changes.send((now, present)).is_err() {
            return;
        }
    }
}

/// When the bare watcher next saw the card `present` (or not).
pub fn wait_bare(changes: &mpsc::Receiver<Change>, present: bool) -> Result<Instant> {
    loop {
        let (at, now_present) = changes
            .recv_timeout(Duration::from_secs(10))
            .context("the bare watcher saw nothing")?;
        if now_present == present {
            return Ok(at);
        }
    }
}

fn wait_event(
    events: &mpsc::Receiver<(Instant, Event)>,
    wanted: impl Fn(&Event) -> bool,
) -> Result<Instant> {
    loop {
        let (at, event) = events
            .recv_timeout(Duration::from_secs(10))
            .context("the agent reported nothing")?;
        if wanted(&event) {
            return Ok(at);
        }
    }
}

/// Drops everything waiting in `rx`.
pub fn drain<T>(rx: &mpsc::Receiver<T>) {
    while rx.try_recv().is_ok() {}
}
