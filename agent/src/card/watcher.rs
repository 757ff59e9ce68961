//! The one thread that owns the PC/SC wait: readers, insertions, removals, swaps and pcscd
//! restarts, sent as [`CardEvent`]s over a channel.
//!
//! The thread sleeps in `SCardGetStatusChange` on every reader and on `\\?PnP?\Notification`
//! with no timeout, so an idle agent does not wake up. When pcscd goes away it says so once
//! ([`CardEvent::Unavailable`]), re-creates its PC/SC context with a growing pause between
//! attempts (100 ms doubling up to 5 s), and once pcscd answers again reports every reader and
//! card afresh ([`CardEvent::Available`]).

use super::{identify, CardIdentity};
use pcsc::{Context, ReaderState, Scope, State, PNP_NOTIFICATION};
use piv::card_type::card_type;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// The name of the watcher thread (as `/proc/<pid>/task/<tid>/comm` shows it).
pub const THREAD_NAME: &str = "card-watcher";

/// The first pause before reconnecting to pcscd; each failed attempt doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between attempts to reconnect to pcscd.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often [`CardWatcher::stop`] repeats its cancel while the thread has not ended (a cancel
/// that lands just before the thread starts waiting is lost).
const CANCEL_REPEAT: Duration = Duration::from_millis(5);

/// What the watcher saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardEvent {
    /// pcscd answers: every reader and its card. Sent at start and each time pcscd comes back.
    Available(Vec<ReaderSnapshot>),
    /// pcscd stopped answering; the watcher reconnects with backoff.
    Unavailable(String),
    /// A reader appeared.
    ReaderAdded(String),
    /// A reader went away (with any card in it).
    ReaderRemoved(String),
    /// A card was inserted into an empty reader.
    Inserted(CardIdentity),
    /// The card left the reader.
    Removed {
        /// The reader.
        reader: String,
    },
    /// The reader's event counter (which pcscd bumps at each insertion and removal) moved while
    /// a card stayed present: a card was pulled and one put in between two looks, the removal
    /// unseen. This is the card in it now, re-identified.
    Changed(CardIdentity),
}

/// A reader and its card at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderSnapshot {
    /// The reader.
    pub reader: String,
    /// The card in it.
    pub card: Option<CardIdentity>,
}

/// The running watcher thread.
pub struct CardWatcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CardWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardWatcher")
            .field(
                "running",
                &self.thread.as_ref().is_some_and(|t| !t.is_finished()),
            )
            .finish()
    }
}

impl CardWatcher {
    /// Starts the thread; it sends what it sees to `events` until [`CardWatcher::stop`].
    ///
    /// The first event is always [`CardEvent::Available`] or [`CardEvent::Unavailable`]. The
    /// thread also ends on its own once `events` is closed (noticed at the next event).
    pub fn start(events: UnboundedSender<CardEvent>) -> std::io::Result<CardWatcher> {
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || {
                Watcher {
                    shared: thread_shared,
                    events,
                    readers: Vec::new(),
                    states: Vec::new(),
                }
                .run()
            })?;
        Ok(CardWatcher {
            shared,
            thread: Some(thread),
        })
    }

    /// Whether the thread is still running (it ends after [`CardWatcher::stop`], or on its own
    /// once nobody receives its events).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the thread (cancels its PC/SC wait) and waits for it.
    ///
    /// Returns at once when the thread is waiting or pausing between reconnects; a card being
    /// identified at that moment is read to the end first.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
        while !thread.is_finished() {
            if let Some(context) = &self.shared.lock().context {
                // Fails when pcscd is gone, and then there is no wait to cancel either.
                let _ = context.cancel();
            }
            let until = Instant::now() + CANCEL_REPEAT;
            while !thread.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if thread.join().is_err() {
            tracing::error!("the card watcher thread panicked");
        }
    }
}

impl Drop for CardWatcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the owner and the thread share: the stop request and the thread's current context,
/// so that the owner can cancel the wait on it.
#[derive(Default)]
struct Shared {
    control: Mutex<Control>,
    wake: Condvar,
}

#[derive(Default)]
struct Control {
    stopping: bool,
    context: Option<Context>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Makes `context` the one [`CardWatcher::stop`] cancels; false if a stop was asked for.
    fn publish(&self, context: Option<&Context>) -> bool {
        let mut control = self.lock();
        control.context = context.cloned();
        !control.stopping
    }

    /// Sleeps for `pause` unless a stop comes first; false if it did.
    fn pause(&self, pause: Duration) -> bool {
        let deadline = Instant::now() + pause;
        let mut control = self.lock();
        loop {
            if control.stopping {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            control = self
                .wake
                .wait_timeout(control, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Why the watch on one context ended.
enum Interrupt {
    /// A stop was asked for, or nobody listens to the events any more.
    Stop,
    /// pcscd went away; the message says so.
    ServiceLost(String),
}

/// A reader the thread follows.
struct Reader {
    name: String,
    /// The card in it, as identified when it appeared; `None` while the reader is empty.
    card: Option<CardIdentity>,
    /// The reader's event counter when its state was last taken in.
    event_count: u32,
}

/// The thread's state: its readers, with `states[0]` the PnP notification and `states[i + 1]`
/// the PC/SC state of `readers[i]`.
struct Watcher {
    shared: Arc<Shared>,
    events: UnboundedSender<CardEvent>,
    readers: Vec<Reader>,
    states: Vec<ReaderState>,
}

impl Watcher {
    fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        let mut said_unavailable = false;
        loop {
            let interrupt = match self.connect() {
                Ok(context) => {
                    backoff = FIRST_BACKOFF;
                    said_unavailable = false;
                    let interrupt = self.watch(&context);
                    self.shared.publish(None);
                    interrupt
                }
                Err(interrupt) => {
                    self.shared.publish(None);
                    interrupt
                }
            };
            match interrupt {
                Interrupt::Stop => return,
                Interrupt::ServiceLost(message) => {
                    if !said_unavailable {
                        tracing::warn!(%message, "the smartcard service is unavailable");
                        if self.send(CardEvent::Unavailable(message)).is_err() {
                            return;
                        }
                        said_unavailable = true;
                    }
                }
            }
            if !self.shared.pause(backoff) {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// A new context, its readers and their cards, announced with [`CardEvent::Available`].
    fn connect(&mut self) -> Result<Context, Interrupt> {
        let context = Context::establish(Scope::User).map_err(service_lost)?;
        if !self.shared.publish(Some(&context)) {
            return Err(Interrupt::Stop);
        }
        let names = context.list_readers_owned().map_err(service_lost)?;
        self.states = vec![ReaderState::new(PNP_NOTIFICATION(), State::UNAWARE)];
        self.readers.clear();
        for name in names {
            self.readers.push(Reader {
                name: name.to_string_lossy().into_owned(),
                card: None,
                event_count: 0,
            });
            self.states.push(ReaderState::new(name, State::UNAWARE));
        }
        match context.get_status_change(Duration::ZERO, &mut self.states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(e) => return Err(service_lost(e)),
        }
        for i in 0..self.readers.len() {
            let state = &self.states[i + 1];
            let (present, event_count) = (is_present(state.event_state()), state.event_count());
            self.readers[i].event_count = event_count;
            if present {
                let identity = self.identify(&context, i)?;
                self.readers[i].card = Some(identity);
            }
        }
        let snapshot = self
            .readers
            .iter()
            .map(|r| ReaderSnapshot {
                reader: r.name.clone(),
                card: r.card.clone(),
            })
            .collect::<Vec<_>>();
        tracing::info!(
            readers = snapshot.len(),
            "the smartcard service is available"
        );
        self.send(CardEvent::Available(snapshot))?;
        Ok(context)
    }

    /// Waits for changes on `context` and reports them, until pcscd goes or a stop comes.
    fn watch(&mut self, context: &Context) -> Interrupt {
        let mut trouble_backoff = FIRST_BACKOFF;
        loop {
            for state in &mut self.states {
                state.sync_current_state();
            }
            let waited = context.get_status_change(None, &mut self.states);
            if self.shared.stopping() {
                return Interrupt::Stop;
            }
            let step = match waited {
                Ok(()) => {
                    trouble_backoff = FIRST_BACKOFF;
                    self.take_in(context)
                }
                // Cancelled by someone else than `stop`: wait again.
                Err(pcsc::Error::Cancelled) => Ok(()),
                // A reader went between listing and waiting, or the last one went: list
                // again; if that changes nothing, pause rather than spin on the same answer.
                Err(pcsc::Error::UnknownReader | pcsc::Error::NoReadersAvailable) => {
                    match self.reconcile_readers(context) {
                        Ok(true) => Ok(()),
                        Ok(false) => {
                            if !self.shared.pause(trouble_backoff) {
                                return Interrupt::Stop;
                            }
                            trouble_backoff = (trouble_backoff * 2).min(MAX_BACKOFF);
                            Ok(())
                        }
                        Err(interrupt) => Err(interrupt),
                    }
                }
                Err(e) => Err(service_lost(e)),
            };
            if let Err(interrupt) = step {
                return interrupt;
            }
        }
    }

    /// Reports what the last wait found: readers plugged or unplugged, cards inserted, removed
    /// or swapped.
    fn take_in(&mut self, context: &Context) -> Result<(), Interrupt> {
        let readers_changed = self.states[0].event_state().contains(State::CHANGED)
            || self.states[1..].iter().any(|s| {
                let event = s.event_state();
                event.contains(State::CHANGED) && event.intersects(State::UNKNOWN | State::IGNORE)
            });
        if readers_changed {
            self.reconcile_readers(context)?;
        }
        for i in 0..self.readers.len() {
            self.take_in_reader(context, i)?;
        }
        Ok(())
    }

    fn take_in_reader(&mut self, context: &Context, i: usize) -> Result<(), Interrupt> {
        let state = &self.states[i + 1];
        let event = state.event_state();
        if !event.contains(State::CHANGED) || event.intersects(State::UNKNOWN | State::IGNORE) {
            return Ok(());
        }
        let present = is_present(event);
        let event_count = state.event_count();
        let reader = &mut self.readers[i];
        let counter_moved = event_count != reader.event_count;
        reader.event_count = event_count;
        match (reader.card.is_some(), present) {
            // Each event goes to the owner before its log line: the owner acts on it meanwhile.
            (false, true) => {
                let identity = self.identify(context, i)?;
                self.readers[i].card = Some(identity.clone());
                let (reader, card_type, serial) = log_fields(&identity);
                self.send(CardEvent::Inserted(identity))?;
                tracing::info!(%reader, card_type, ?serial, "card inserted");
                Ok(())
            }
            (true, false) => {
                reader.card = None;
                let name = reader.name.clone();
                self.send(CardEvent::Removed {
                    reader: name.clone(),
                })?;
                tracing::info!(reader = %name, "card removed");
                Ok(())
            }
            // The counter moved with no removal seen (a swap quicker than this thread's look):
            // whatever is in the reader now is re-identified, and the owner treats it as a swap
            // unless it is the very same card with the very same certificate.
            (true, true) if counter_moved => {
                let identity = self.identify(context, i)?;
                self.readers[i].card = Some(identity.clone());
                let (reader, _, serial) = log_fields(&identity);
                self.send(CardEvent::Changed(identity))?;
                tracing::info!(
                    %reader,
                    ?serial,
                    "another card, or the same one again, since the last look"
                );
                Ok(())
            }
            // In use by someone, powered, or no change that concerns us.
            _ => Ok(()),
        }
    }

    /// Lists the readers again and reports those that came and went; whether any did.
    fn reconcile_readers(&mut self, context: &Context) -> Result<bool, Interrupt> {
        let names = context.list_readers_owned().map_err(service_lost)?;
        let mut changed = false;
        let mut i = 0;
        while i < self.readers.len() {
            if names
                .iter()
                .any(|n| n.as_c_str() == self.states[i + 1].name())
            {
                i += 1;
                continue;
            }
            let gone = self.readers.remove(i);
            self.states.remove(i + 1);
            changed = true;
            tracing::info!(reader = %gone.name, "reader removed");
            self.send(CardEvent::ReaderRemoved(gone.name))?;
        }
        for name in names {
            if self.states[1..].iter().any(|s| s.name() == name.as_c_str()) {
                continue;
            }
            let label = name.to_string_lossy().into_owned();
            self.readers.push(Reader {
                name: label.clone(),
                card: None,
                event_count: 0,
            });
            // UNAWARE: the next wait returns at once with its state (and any card in it).
            self.states.push(ReaderState::new(name, State::UNAWARE));
            changed = true;
            tracing::info!(reader = %label, "reader added");
            self.send(CardEvent::ReaderAdded(label))?;
        }
        Ok(changed)
    }

    /// The card in reader `i`. A card that cannot be read (pulled mid-read, mute, garbled) is
    /// what its ATR says it is, not PIV, with a log line; only pcscd going away interrupts.
    fn identify(&self, context: &Context, i: usize) -> Result<CardIdentity, Interrupt> {
        let reader = &self.readers[i].name;
        match identify(context, reader) {
            Ok(identity) => Ok(identity),
            Err(piv::Error::ServiceUnavailable) => Err(Interrupt::ServiceLost(
                piv::Error::ServiceUnavailable.to_string(),
            )),
            Err(e) => {
                let atr = self.states[i + 1].atr().to_vec();
                tracing::warn!(
                    reader = %reader,
                    atr = %hex::encode_upper(&atr),
                    error = %e,
                    "the card in the reader cannot be identified"
                );
                Ok(CardIdentity {
                    reader: reader.clone(),
                    card_type: card_type(&atr, false),
                    atr,
                    serial: None,
                    piv: false,
                    certificate: None,
                })
            }
        }
    }

    fn send(&self, event: CardEvent) -> Result<(), Interrupt> {
        self.events.send(event).map_err(|_| Interrupt::Stop)
    }
}

/// What a log line says of a card: its reader, type and serial.
fn log_fields(identity: &CardIdentity) -> (String, &'static str, Option<String>) {
    (
        identity.reader.clone(),
        identity.card_type,
        identity.serial.map(|s| s.to_string()),
    )
}

/// Whether a reader's state says a card is in it (powered, in use or mute alike).
fn is_present(state: State) -> bool {
    state.contains(State::PRESENT) && !state.contains(State::EMPTY)
}

/// pcscd is gone (or answers nonsense): the context is rebuilt.
fn service_lost(e: pcsc::Error) -> Interrupt {
    Interrupt::ServiceLost(match e {
        pcsc::Error::NoService | pcsc::Error::ServiceStopped => {
            piv::Error::ServiceUnavailable.to_string()
        }
        // A dying pcscd shows as a broken connection (communications error, access denied,
        // invalid handle …) before it shows as gone.
        other => format!("the PC/SC service (pcscd) stopped answering: {other}"),
    })
}
