//! The task that owns the readers' view and the session: card events and socket calls come in
//! over channels, status and events go out. Slow work (the PIN prompt, card steps, the
//! service) runs in tasks of its own that report back here, so a removal is acted on at once.

use super::login::{self, LoginContext, LoginStep, SignedIn};
use super::roles::RoleMemory;
use super::{fingerprint, now};
use crate::audit::{AuditEvent, AuditLog};
use crate::card::{CardEvent, CardIdentity, ReaderSnapshot};
use crate::config::{Config, RemovalAction};
use crate::doctor::{self, DoctorContext, DoctorOutcome};
use crate::ipc::{AgentCall, AgentLink};
use crate::operation::journal::Journal;
use crate::operation::secrets::SecretStore;
use crate::operation::{self, Finished, Operations};
use agent_ipc::{
    Call, CardDetails, CardStatus, ErrorCode, ErrorObject, Event, OperationKind, OperationStatus,
    PcscStatus, ReaderStatus, Role, Roles, SessionEndReason, SessionState, SessionStatus, Status,
    Ticket, User,
};
use cms::client::CmsClient;
use cms::protocol::{RoleView, SessionView, SmartcardDetails};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The methods of the protocol this agent does not serve yet.
const NOT_SERVED: &[&str] = &[];

/// The activity a role needs to repair and cancel cards.
const RA_ACTIVITY: &str = "B0267";

/// The methods this agent serves: the protocol's, less [`NOT_SERVED`].
pub fn capabilities() -> Vec<String> {
    agent_ipc::METHODS
        .iter()
        .filter(|m| !NOT_SERVED.contains(m))
        .map(|m| m.to_string())
        .collect()
}

type ReplyTo = oneshot::Sender<Result<serde_json::Value, ErrorObject>>;

/// A reader and the card in it; `generation` changes with every card that comes or goes.
#[derive(Debug)]
struct ReaderSlot {
    card: Option<CardIdentity>,
    generation: u64,
}

/// A login running in its own task.
#[derive(Debug)]
struct LoginRun {
    reader: String,
    serial: Option<String>,
    generation: u64,
    state: SessionState,
    waiters: Vec<ReplyTo>,
    task: JoinHandle<()>,
}

/// A renewal or repair running in its own task.
#[derive(Debug)]
struct OperationRun {
    kind: OperationKind,
    reader: String,
    serial: String,
    /// The last step reported.
    status: Option<OperationStatus>,
    cancel: CancellationToken,
    waiters: Vec<ReplyTo>,
}

impl OperationRun {
    /// Whether the card may already be changed (a cancel would leave it half done).
    fn card_touched(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.step != agent_ipc::OperationStep::Started)
    }

    fn status(&self) -> OperationStatus {
        self.status.clone().unwrap_or_else(|| OperationStatus {
            id: String::new(),
            kind: self.kind,
            serial: self.serial.clone(),
            step: agent_ipc::OperationStep::Starting,
            message: "Waiting for the passcode".into(),
            done: false,
        })
    }
}

/// What the owner's own tasks report.
enum Internal {
    LoginStep {
        generation: u64,
        step: LoginStep,
    },
    LoginDone {
        generation: u64,
        result: Box<Result<SignedIn, ErrorObject>>,
    },
    RoleSelected {
        generation: u64,
        remember: bool,
        result: Result<SessionView, ErrorObject>,
        reply: ReplyTo,
    },
    CertificateRead {
        generation: u64,
        fingerprint: Result<[u8; 32], piv::Error>,
    },
    OperationStep(OperationStatus),
    OperationDone(Result<Finished, ErrorObject>),
    DoctorDone {
        reader: String,
        generation: u64,
        result: Box<Result<DoctorOutcome, ErrorObject>>,
        reply: ReplyTo,
    },
}

/// A session the service opened, bound to the reader generation of its card.
#[derive(Debug)]
struct Session {
    signed_in: SignedIn,
    generation: u64,
}

/// The owner of the session and of the agent's view of the readers.
pub struct SessionOwner {
    config: Arc<Config>,
    login_context: LoginContext,
    audit: Arc<AuditLog>,
    roles: Arc<RoleMemory>,
    pcsc: PcscStatus,
    readers: BTreeMap<String, ReaderSlot>,
    next_generation: u64,
    login: Option<LoginRun>,
    session: Option<Session>,
    operations: Operations,
    operation: Option<OperationRun>,
    /// The reader the card doctor is examining.
    doctor: Option<String>,
    /// The reader whose card's session ended while the card stayed in.
    ended_in: Option<String>,
    next_certificate_check: Option<Instant>,
    next_expiry_warning: Option<Instant>,
    calls: mpsc::Receiver<AgentCall>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    status: watch::Sender<Status>,
    events: broadcast::Sender<Event>,
    pending: Vec<Event>,
    last_state: SessionState,
}

impl std::fmt::Debug for SessionOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOwner")
            .field("readers", &self.readers.keys().collect::<Vec<_>>())
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl SessionOwner {
    /// The owner and the link the socket server uses to reach it.
    pub fn new(
        config: Arc<Config>,
        cms: Option<CmsClient>,
        audit: Arc<AuditLog>,
    ) -> (SessionOwner, AgentLink) {
        let roles = Arc::new(RoleMemory::load(
            config.state_dir().join("default-roles.json"),
        ));
        let (calls_tx, calls) = mpsc::channel(256);
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let pcsc = PcscStatus {
            available: false,
            message: Some("connecting to pcscd".into()),
        };
        let initial = Status {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            pcsc: pcsc.clone(),
            readers: Vec::new(),
            session: SessionStatus::idle(SessionState::NoCard),
        };
        let (status, status_rx) = watch::channel(initial);
        let (events, _) = broadcast::channel(config.ipc.subscriber_queue.max(1));
        let link = AgentLink {
            calls: calls_tx,
            status: status_rx,
            events: events.clone(),
            capabilities: capabilities(),
        };
        let operations = Operations {
            cms: cms.clone(),
            journal: Journal::with_secrets(
                config.state_dir().join("operations"),
                SecretStore::os_keyring(),
            ),
            pinentry: config.pinentry.clone(),
        };
        let owner = SessionOwner {
            login_context: LoginContext {
                pinentry: config.pinentry.clone(),
                cms,
                roles: roles.clone(),
                operations: operations.clone(),
            },
            operations,
            operation: None,
            doctor: None,
            config,
            audit,
            roles,
            pcsc,
            readers: BTreeMap::new(),
            next_generation: 1,
            login: None,
            session: None,
            ended_in: None,
            next_certificate_check: None,
            next_expiry_warning: None,
            calls,
            internal_tx,
            internal_rx,
            status,
            events,
            pending: Vec::new(),
            last_state: SessionState::NoCard,
        };
        (owner, link)
    }

    /// Runs until `shutdown`, then ends the session (logging out at the service) and returns.
    pub async fn run(
        mut self,
        mut cards: mpsc::UnboundedReceiver<CardEvent>,
        shutdown: CancellationToken,
    ) {
        loop {
            let expiry = self.session_deadline();
            let check = self.next_certificate_check;
            let warn = self.next_expiry_warning;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = cards.recv() => match event {
                    Some(event) => self.on_card_event(event),
                    None => break,
                },
                Some(call) = self.calls.recv() => self.on_call(call),
                Some(message) = self.internal_rx.recv() => self.on_internal(message),
                _ = sleep_until(expiry), if expiry.is_some() => {
                    self.end_session(SessionEndReason::CmsSessionExpired);
                }
                _ = sleep_until(check), if check.is_some() => self.check_certificate(),
                _ = sleep_until(warn), if warn.is_some() => self.warn_expiry(),
            }
            self.flush();
        }
        self.cancel_login(ErrorObject::new(
            ErrorCode::ShuttingDown,
            "the agent is shutting down",
        ));
        if let Some(logout) = self.end_session(SessionEndReason::AgentShutdown) {
            let _ = tokio::time::timeout(Duration::from_secs(2), logout).await;
        }
        self.flush();
    }

    // ---- card events ----

    fn on_card_event(&mut self, event: CardEvent) {
        tracing::debug!(?event, "card event");
        match event {
            CardEvent::Available(snapshot) => self.on_available(snapshot),
            CardEvent::Unavailable(message) => {
                tracing::warn!("pcscd is unavailable: {message}");
                self.pcsc = PcscStatus {
                    available: false,
                    message: Some(message.clone()),
                };
                self.readers.clear();
                self.cancel_login(ErrorObject::new(ErrorCode::PcscUnavailable, &message));
                self.pending.push(Event::PcscUnavailable { message });
            }
            CardEvent::ReaderAdded(reader) => {
                self.readers.entry(reader.clone()).or_insert(ReaderSlot {
                    card: None,
                    generation: 0,
                });
                self.pending.push(Event::ReaderAdded { reader });
            }
            CardEvent::ReaderRemoved(reader) => {
                self.card_left(&reader, SessionEndReason::ReaderRemoved);
                self.readers.remove(&reader);
                self.pending.push(Event::ReaderRemoved { reader });
            }
            CardEvent::Inserted(card) => self.card_arrived(card),
            CardEvent::Removed { reader } => self.card_left(&reader, SessionEndReason::CardRemoved),
            CardEvent::Changed(card) => self.card_changed(card),
        }
    }

    /// pcscd answers (at start or back after a restart): the snapshot replaces the readers,
    /// and a session survives only if its very card is still in its reader.
    fn on_available(&mut self, snapshot: Vec<ReaderSnapshot>) {
        let was_down = self.pcsc.message.as_deref() != Some("connecting to pcscd");
        self.pcsc = PcscStatus {
            available: true,
            message: None,
        };
        if was_down {
            self.pending.push(Event::PcscAvailable);
        }
        let known: Vec<String> = self.readers.keys().cloned().collect();
        for reader in known {
            if !snapshot.iter().any(|s| s.reader == reader) {
                self.card_left(&reader, SessionEndReason::ReaderRemoved);
                self.readers.remove(&reader);
                self.pending.push(Event::ReaderRemoved { reader });
            }
        }
        if let Some(session) = &self.session {
            let reader = session.signed_in.reader.clone();
            let present = snapshot
                .iter()
                .find(|s| s.reader == reader)
                .and_then(|s| s.card.as_ref());
            match present {
                Some(card) if same_card(&session.signed_in, card) => {}
                Some(_) => self.end_session_now(SessionEndReason::CardChanged),
                // The readers were forgotten while pcscd was away: the session's card is gone.
                None => self.session_card_left(&reader, SessionEndReason::CardRemoved),
            }
        }
        for ReaderSnapshot { reader, card } in snapshot {
            if !self.readers.contains_key(&reader) {
                self.readers.insert(
                    reader.clone(),
                    ReaderSlot {
                        card: None,
                        generation: 0,
                    },
                );
                self.pending.push(Event::ReaderAdded {
                    reader: reader.clone(),
                });
            }
            match card {
                Some(card) => {
                    let unchanged = self.readers[&reader]
                        .card
                        .as_ref()
                        .is_some_and(|known| known == &card);
                    if !unchanged {
                        self.card_arrived(card);
                    }
                }
                None => self.card_left(&reader, SessionEndReason::CardRemoved),
            }
        }
    }

    fn card_arrived(&mut self, card: CardIdentity) {
        let reader = card.reader.clone();
        if self.readers.get(&reader).is_some_and(|s| s.card.is_some()) {
            self.card_left(&reader, SessionEndReason::CardChanged);
        }
        let generation = self.bump();
        let shown = self.card_status(&card, now());
        self.pending.push(Event::CardInserted {
            reader: reader.clone(),
            card: shown,
        });
        let unfinished = self.renewal_journaled(&card);
        if let Some(session) = &mut self.session {
            if session.signed_in.reader == reader {
                if !same_card(&session.signed_in, &card) {
                    self.end_session_now(SessionEndReason::CardChanged);
                } else if unfinished {
                    // The session's card is back (under the `keep` removal action, or after
                    // pcscd went away) with its renewal interrupted meanwhile: the session
                    // ends, and the sign-in that follows finishes the renewal first.
                    tracing::info!(
                        serial = %session.signed_in.serial,
                        "the card is back with its renewal unfinished: signing in again"
                    );
                    self.end_session_now(SessionEndReason::CardRemoved);
                } else {
                    // The card came back under the `keep` removal action, or after pcscd went
                    // away.
                    session.signed_in.card_present = true;
                    session.generation = generation;
                }
            }
        }
        self.readers.insert(
            reader.clone(),
            ReaderSlot {
                card: Some(card),
                generation,
            },
        );
        self.schedule_certificate_check();
        self.auto_login(&reader);
        self.resume_repair();
    }

    /// Whether the journal holds an unfinished renewal of `card`.
    fn renewal_journaled(&self, card: &CardIdentity) -> bool {
        card.serial.is_some_and(|serial| {
            self.operations
                .journal
                .get(&serial.to_string())
                .is_some_and(|e| e.kind == OperationKind::Renew)
        })
    }

    fn card_left(&mut self, reader: &str, reason: SessionEndReason) {
        let Some(slot) = self.readers.get_mut(reader) else {
            return;
        };
        let Some(card) = slot.card.take() else {
            return;
        };
        slot.generation = 0;
        self.pending.push(Event::CardRemoved {
            reader: reader.to_owned(),
            serial: card.serial.map(|s| s.to_string()),
        });
        if self.login.as_ref().is_some_and(|l| l.reader == reader) {
            self.cancel_login(ErrorObject::new(
                ErrorCode::CardRemoved,
                "the card was removed during sign-in",
            ));
        }
        if self.ended_in.as_deref() == Some(reader) {
            self.ended_in = None;
        }
        // An operation still waiting to change this card (a new passcode being chosen) stops;
        // one writing it reports the pull itself and finishes at the next insertion.
        if let Some(run) = self
            .operation
            .as_ref()
            .filter(|r| r.reader == reader && !r.card_touched())
        {
            run.cancel.cancel();
        }
        self.session_card_left(reader, reason);
    }

    /// The session's card left `reader` (if the session is there): the removal action applies.
    fn session_card_left(&mut self, reader: &str, reason: SessionEndReason) {
        let Some(session) = &mut self.session else {
            return;
        };
        if session.signed_in.reader != reader {
            return;
        }
        match (reason, self.config.session.removal_action) {
            (SessionEndReason::CardChanged, _) => self.end_session_now(reason),
            (_, RemovalAction::Keep) => {
                session.signed_in.card_present = false;
                session.generation = 0;
            }
            (_, RemovalAction::Lock) => {
                self.end_session_now(reason);
                lock_screen();
            }
            (_, RemovalAction::Logout) => self.end_session_now(reason),
        }
    }

    /// The reader's event counter moved while a card stayed in: the same card (reset) keeps
    /// everything; a changed certificate or another card ends the session.
    fn card_changed(&mut self, card: CardIdentity) {
        let reader = card.reader.clone();
        let Some(known) = self.readers.get(&reader).and_then(|s| s.card.clone()) else {
            return self.card_arrived(card);
        };
        if known.serial != card.serial {
            return self.card_arrived(card);
        }
        if known.certificate != card.certificate
            && self
                .session
                .as_ref()
                .is_some_and(|s| s.signed_in.reader == reader)
        {
            self.end_session_now(SessionEndReason::CertificateChanged);
            self.ended_in = Some(reader.clone());
        }
        if let Some(slot) = self.readers.get_mut(&reader) {
            slot.card = Some(card);
        }
    }

    fn bump(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    // ---- login ----

    fn auto_login(&mut self, reader: &str) {
        if !self.config.session.login_on_insert
            || self.session.is_some()
            || self.login.is_some()
            || self.doctor.is_some()
        {
            return;
        }
        let Some(card) = self.card_in(reader) else {
            return;
        };
        let serial = card.serial.map(|s| s.to_string()).unwrap_or_default();
        let journaled = self.operations.journal.get(&serial).is_some();
        // Without its certificate the card cannot sign in; the doctor finishes what is journaled.
        if !card.piv || (card.certificate.is_none() && journaled) {
            return;
        }
        if self.operation.as_ref().is_some_and(|o| o.reader == reader) {
            // Signed in once the operation on this card has let go of it.
            return;
        }
        if let Err(error) = self.check_usable(reader) {
            let serial = card.serial.map(|s| s.to_string());
            self.login_failed(reader, serial, &error);
            return;
        }
        self.start_login(reader, None);
    }

    fn card_in(&self, reader: &str) -> Option<&CardIdentity> {
        self.readers.get(reader).and_then(|s| s.card.as_ref())
    }

    /// Whether the card in `reader` can sign in at all (an expired certificate cannot).
    fn check_usable(&self, reader: &str) -> Result<(), ErrorObject> {
        let card = self.card_in(reader).ok_or_else(|| {
            ErrorObject::new(ErrorCode::NoCard, format!("there is no card in {reader}"))
        })?;
        if !card.piv {
            return Err(ErrorObject::new(
                ErrorCode::NotPiv,
                format!(
                    "the card in {reader} ({}) is not a PIV card this agent can sign in with",
                    card.card_type
                ),
            ));
        }
        let serial = card.serial.map(|s| s.to_string()).unwrap_or_default();
        let journaled = self.operations.journal.get(&serial).map(|e| e.kind);
        if journaled == Some(OperationKind::Repair) {
            return Err(ErrorObject::new(
                ErrorCode::CardError,
                format!(
                    "the repair of card {serial} is unfinished: it finishes when the Registration \
                     Authority is signed in here with the card in a second reader"
                ),
            ));
        }
        if card.status(now()).expired && journaled.is_none() {
            return Err(ErrorObject::new(
                ErrorCode::CertificateExpired,
                crate::cms::EXPIRED_MESSAGE,
            ));
        }
        if card.certificate.is_none() && journaled.is_none() {
            return Err(super::certificate_lost(&serial));
        }
        Ok(())
    }

    fn call_login(&mut self, reader: Option<String>, reply: ReplyTo) {
        let reader = match reader {
            Some(reader) if self.readers.contains_key(&reader) => reader,
            Some(reader) => {
                let _ = reply.send(Err(ErrorObject::new(
                    ErrorCode::NoReader,
                    format!("there is no reader called {reader:?}"),
                )));
                return;
            }
            None => match self.login_reader() {
                Ok(reader) => reader,
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return;
                }
            },
        };
        if let Some(session) = &self.session {
            let answer = if session.signed_in.reader == reader {
                Ok(json(&self.session_status()))
            } else {
                Err(ErrorObject::new(
                    ErrorCode::Busy,
                    format!(
                        "already signed in with card {}: log out first",
                        session.signed_in.serial
                    ),
                ))
            };
            let _ = reply.send(answer);
            return;
        }
        if let Some(run) = &mut self.login {
            if run.reader == reader {
                run.waiters.push(reply);
            } else {
                let _ = reply.send(Err(ErrorObject::new(
                    ErrorCode::Busy,
                    format!("a sign-in with the card in {} is running", run.reader),
                )));
            }
            return;
        }
        if let Err(e) = self.check_usable(&reader) {
            let _ = reply.send(Err(e));
            return;
        }
        if self
            .card_in(&reader)
            .is_some_and(|c| c.certificate.is_none())
        {
            let _ = reply.send(Err(ErrorObject::new(
                ErrorCode::CardError,
                "the card holds no authentication certificate — contact your Registration Authority",
            )));
            return;
        }
        self.start_login(&reader, Some(reply));
    }

    /// The reader to sign in with when the caller named none: the only one with a PIV card.
    fn login_reader(&self) -> Result<String, ErrorObject> {
        if !self.pcsc.available {
            return Err(ErrorObject::new(
                ErrorCode::PcscUnavailable,
                "the PC/SC service (pcscd) is not running",
            ));
        }
        if self.readers.is_empty() {
            return Err(ErrorObject::new(
                ErrorCode::NoReader,
                "no card reader is connected",
            ));
        }
        let with_cards: Vec<&String> = self
            .readers
            .iter()
            .filter(|(_, s)| s.card.as_ref().is_some_and(|c| c.piv))
            .map(|(r, _)| r)
            .collect();
        match with_cards.as_slice() {
            [] => Err(ErrorObject::new(
                ErrorCode::NoCard,
                "insert your smartcard to sign in",
            )),
            [one] => Ok((*one).clone()),
            _ => Err(ErrorObject::new(
                ErrorCode::BadRequest,
                "there are cards in several readers: name the reader to sign in with",
            )),
        }
    }

    fn start_login(&mut self, reader: &str, waiter: Option<ReplyTo>) {
        let Some(slot) = self.readers.get(reader) else {
            return;
        };
        let Some(card) = slot.card.clone() else {
            return;
        };
        let generation = slot.generation;
        let internal = self.internal_tx.clone();
        let steps = self.internal_tx.clone();
        let context = self.login_context.clone();
        let task = tokio::spawn(async move {
            let report = move |step| {
                let _ = steps.send(Internal::LoginStep { generation, step });
            };
            let result = login::login(context, card, report).await;
            let _ = internal.send(Internal::LoginDone {
                generation,
                result: Box::new(result),
            });
        });
        let serial = self
            .card_in(reader)
            .and_then(|c| c.serial)
            .map(|s| s.to_string());
        self.ended_in = None;
        self.login = Some(LoginRun {
            reader: reader.to_owned(),
            serial,
            generation,
            state: SessionState::CardPresent,
            waiters: waiter.into_iter().collect(),
            task,
        });
    }

    fn cancel_login(&mut self, error: ErrorObject) {
        if let Some(run) = self.login.take() {
            run.task.abort();
            for waiter in run.waiters {
                let _ = waiter.send(Err(error.clone()));
            }
        }
    }

    fn on_login_done(&mut self, generation: u64, result: Result<SignedIn, ErrorObject>) {
        let run = match self.login.take() {
            Some(run) if run.generation == generation => run,
            other => {
                // A login overtaken by its card leaving: its session must not linger.
                self.login = other;
                if let Ok(orphan) = result {
                    spawn_logout(orphan.client);
                }
                return;
            }
        };
        let still_there = self
            .readers
            .get(&run.reader)
            .is_some_and(|s| s.generation == generation && s.card.is_some());
        let result = match result {
            Ok(orphan) if !still_there => {
                spawn_logout(orphan.client);
                Err(ErrorObject::new(
                    ErrorCode::CardRemoved,
                    "the card was removed during sign-in",
                ))
            }
            other => other,
        };
        let answer = match result {
            Ok(signed_in) => {
                if let Some(renewed) = &signed_in.renewed {
                    self.card_renewed(&run.reader, renewed.clone());
                }
                self.audit.record(AuditEvent::SignIn {
                    serial: signed_in.serial.clone(),
                    user: signed_in.session.user.id.clone(),
                });
                tracing::info!(serial = %signed_in.serial, "signed in");
                self.session = Some(Session {
                    signed_in,
                    generation,
                });
                self.schedule_certificate_check();
                let status = self.session_status();
                self.pending.push(Event::SessionStarted {
                    session: status.clone(),
                });
                self.warn_expiry();
                self.resume_repair();
                Ok(json(&status))
            }
            Err(error) => {
                self.login_failed(&run.reader, run.serial.clone(), &error);
                Err(error)
            }
        };
        for waiter in run.waiters {
            let _ = waiter.send(answer.clone());
        }
    }

    fn login_failed(&mut self, reader: &str, serial: Option<String>, error: &ErrorObject) {
        let serial_text = serial.clone().unwrap_or_default();
        let event = match error.code {
            ErrorCode::WrongPin => None, // recorded at the step, with the tries left
            ErrorCode::PinBlocked => Some(AuditEvent::PinBlocked {
                serial: serial_text.clone(),
            }),
            _ => Some(AuditEvent::SignInFailed {
                serial: serial_text.clone(),
                code: error.code.as_str().to_owned(),
            }),
        };
        if let Some(event) = event {
            self.audit.record(event);
        }
        tracing::info!(serial = %serial_text, code = ?error.code, "sign-in failed");
        self.pending.push(Event::LoginFailed {
            reader: reader.to_owned(),
            serial,
            error: error.clone(),
        });
    }

    // ---- the session ----

    /// Ends the session now; returns the service logout running in the background.
    fn end_session(&mut self, reason: SessionEndReason) -> Option<JoinHandle<()>> {
        let session = self.session.take()?;
        let s = session.signed_in;
        self.audit.record(AuditEvent::SignOut {
            serial: s.serial.clone(),
            reason: reason.as_str().to_owned(),
        });
        tracing::info!(serial = %s.serial, ?reason, "session ended");
        self.pending.push(Event::SessionEnded {
            reason,
            reader: Some(s.reader.clone()),
            serial: Some(s.serial.clone()),
        });
        self.next_certificate_check = None;
        self.next_expiry_warning = None;
        let card_still_in = self.card_in(&s.reader).is_some() && s.card_present;
        if card_still_in
            && matches!(
                reason,
                SessionEndReason::Logout
                    | SessionEndReason::CertificateChanged
                    | SessionEndReason::CmsSessionExpired
            )
        {
            self.ended_in = Some(s.reader.clone());
        }
        (reason != SessionEndReason::CmsSessionExpired).then(|| spawn_logout(s.client))
    }

    fn end_session_now(&mut self, reason: SessionEndReason) {
        let _ = self.end_session(reason);
    }

    /// Warns when the session card's certificate expires within the warning window: at
    /// sign-in, then once a day while the session lasts.
    fn warn_expiry(&mut self) {
        self.next_expiry_warning = None;
        let Some(session) = &self.session else {
            return;
        };
        let s = &session.signed_in;
        let Some(certificate) = self.card_in(&s.reader).and_then(|c| c.certificate.as_ref()) else {
            return;
        };
        let expiry = certificate.expiry(now());
        if expiry.days_left > i64::from(self.config.expiry.warning_days) {
            return;
        }
        tracing::info!(serial = %s.serial, days_left = expiry.days_left, "expiry warning");
        self.pending.push(Event::ExpiryWarning {
            serial: s.serial.clone(),
            days_left: expiry.days_left,
            expires_on: expiry.expires_on,
        });
        self.next_expiry_warning = Some(Instant::now() + Duration::from_secs(24 * 3600));
    }

    fn session_deadline(&self) -> Option<Instant> {
        let expires_at = self.session.as_ref()?.signed_in.session.expires_at;
        let left = expires_at.saturating_sub(now()).max(0) as u64;
        Some(Instant::now() + Duration::from_secs(left))
    }

    fn schedule_certificate_check(&mut self) {
        let period = self.config.session.certificate_check_secs;
        let live = self
            .session
            .as_ref()
            .is_some_and(|s| s.signed_in.card_present);
        self.next_certificate_check =
            (live && period > 0).then(|| Instant::now() + Duration::from_secs(period));
    }

    /// Re-reads the session card's certificate to notice a change made by anyone else.
    fn check_certificate(&mut self) {
        self.next_certificate_check = None;
        let Some(session) = &self.session else {
            return;
        };
        let reader = session.signed_in.reader.clone();
        if self.operation.as_ref().is_some_and(|o| o.reader == reader)
            || self.doctor.as_ref() == Some(&reader)
        {
            // The agent's own renewal is changing the certificate: checked once it is done.
            return self.schedule_certificate_check();
        }
        let generation = session.generation;
        let internal = self.internal_tx.clone();
        tokio::task::spawn_blocking(move || {
            let fingerprint = login::with_card(&reader, |tx| {
                tx.read_certificate(piv::consts::key::AUTHENTICATION)
                    .map(|c| fingerprint(c.der()))
            });
            let _ = internal.send(Internal::CertificateRead {
                generation,
                fingerprint,
            });
        });
    }

    fn on_certificate_read(&mut self, generation: u64, read: Result<[u8; 32], piv::Error>) {
        let Some(session) = &self.session else {
            return;
        };
        if session.generation != generation || !session.signed_in.card_present {
            return;
        }
        let changed = match read {
            Ok(fingerprint) => fingerprint != session.signed_in.fingerprint,
            Err(piv::Error::NotFound) => true,
            Err(e) => {
                tracing::debug!("re-reading the session card's certificate: {e}");
                false
            }
        };
        if changed {
            self.end_session_now(SessionEndReason::CertificateChanged);
        } else {
            self.schedule_certificate_check();
        }
    }

    // ---- calls ----

    fn on_call(&mut self, AgentCall { call, reply }: AgentCall) {
        tracing::debug!(method = call.method(), "call");
        let answer = match call {
            Call::Login(params) => return self.call_login(params.reader, reply),
            Call::SelectRole(params) => return self.call_select_role(params, reply),
            Call::Status => Ok(json(&self.snapshot())),
            Call::Readers => Ok(json(&self.snapshot().readers)),
            Call::Logout => self.call_logout(),
            Call::Roles => self.signed_in().map(|s| {
                json(&Roles {
                    roles: s.session.roles.iter().map(role).collect(),
                    selected: s.session.selected_role.map(|r| r.to_string()),
                    default: self
                        .roles
                        .default_for(&s.session.user.id)
                        .map(|r| r.to_string()),
                })
            }),
            Call::Ticket => self.signed_in().map(|s| {
                json(&Ticket {
                    ticket: s.ticket.to_string(),
                    expires_at: s.session.expires_at,
                })
            }),
            Call::Renew => return self.call_renew(reply),
            Call::Repair(params) => return self.call_repair(params, reply),
            Call::CancelOperation(params) => self.call_cancel_operation(&params.operation),
            Call::CardDetails(params) => return self.call_card_details(params.reader, reply),
            Call::CancelCard(params) => return self.call_cancel_card(params, reply),
            Call::Doctor(params) => return self.call_doctor(params, reply),
            Call::Hello(_) | Call::Subscribe => Err(ErrorObject::new(
                ErrorCode::BadRequest,
                format!("{} is answered by the socket server", call.method()),
            )),
        };
        let _ = reply.send(answer);
    }

    fn signed_in(&self) -> Result<&SignedIn, ErrorObject> {
        self.session
            .as_ref()
            .map(|s| &s.signed_in)
            .ok_or_else(|| ErrorObject::new(ErrorCode::NoSession, "nobody is signed in"))
    }

    fn call_logout(&mut self) -> Result<serde_json::Value, ErrorObject> {
        if self.session.is_some() {
            self.end_session_now(SessionEndReason::Logout);
        } else if self.login.is_some() {
            self.cancel_login(ErrorObject::new(
                ErrorCode::PinCancelled,
                "the sign-in was cancelled by logout",
            ));
        } else {
            return Err(ErrorObject::new(
                ErrorCode::NoSession,
                "nobody is signed in",
            ));
        }
        Ok(json(&self.session_status()))
    }

    fn call_select_role(&mut self, params: agent_ipc::SelectRoleParams, reply: ReplyTo) {
        let found = self.signed_in().and_then(|s| {
            params
                .role
                .parse::<i64>()
                .ok()
                .filter(|id| s.session.roles.iter().any(|r| r.id == *id))
                .map(|id| (id, s.client.clone()))
                .ok_or_else(|| {
                    ErrorObject::new(
                        ErrorCode::UnknownRole,
                        format!("you hold no role with id {:?}", params.role),
                    )
                })
        });
        let (id, client) = match found {
            Ok(found) => found,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let generation = self.session.as_ref().map_or(0, |s| s.generation);
        let internal = self.internal_tx.clone();
        let remember = params.remember;
        tokio::spawn(async move {
            let result = client
                .select_role(id)
                .await
                .map_err(|e| crate::cms::error_object(&e));
            let _ = internal.send(Internal::RoleSelected {
                generation,
                remember,
                result,
                reply,
            });
        });
    }

    fn on_role_selected(
        &mut self,
        generation: u64,
        remember: bool,
        result: Result<SessionView, ErrorObject>,
        reply: ReplyTo,
    ) {
        let Some(session) = self.session.as_mut().filter(|s| s.generation == generation) else {
            let _ = reply.send(Err(ErrorObject::new(
                ErrorCode::NoSession,
                "the session ended before the role was selected",
            )));
            return;
        };
        let view = match result {
            Ok(view) => view,
            Err(e) => {
                if e.code == ErrorCode::NoSession {
                    self.end_session_now(SessionEndReason::CmsSessionExpired);
                }
                let _ = reply.send(Err(e));
                return;
            }
        };
        let s = &mut session.signed_in;
        s.session = view;
        let selected = s
            .session
            .selected_role
            .and_then(|id| s.session.roles.iter().find(|r| r.id == id));
        if let Some(selected) = selected {
            if remember {
                self.roles.remember(&s.session.user.id, selected.id);
            }
            self.audit.record(AuditEvent::RoleChanged {
                serial: s.serial.clone(),
                role: selected.id.to_string(),
            });
            self.pending.push(Event::RoleChanged {
                role: role(selected),
            });
        }
        let _ = reply.send(Ok(json(&self.session_status())));
    }

    fn on_internal(&mut self, message: Internal) {
        match message {
            Internal::LoginStep { generation, step } => {
                let Some(run) = self.login.as_mut().filter(|r| r.generation == generation) else {
                    return;
                };
                match step {
                    LoginStep::State(state) => run.state = state,
                    LoginStep::WrongPin(tries_left) => {
                        let serial = run.serial.clone().unwrap_or_default();
                        self.audit
                            .record(AuditEvent::WrongPin { serial, tries_left });
                    }
                    LoginStep::Operation(operation) => {
                        self.pending.push(Event::OperationProgress { operation });
                    }
                }
            }
            Internal::LoginDone { generation, result } => self.on_login_done(generation, *result),
            Internal::RoleSelected {
                generation,
                remember,
                result,
                reply,
            } => self.on_role_selected(generation, remember, result, reply),
            Internal::CertificateRead {
                generation,
                fingerprint,
            } => self.on_certificate_read(generation, fingerprint),
            Internal::OperationStep(status) => {
                if let Some(run) = &mut self.operation {
                    run.status = Some(status.clone());
                }
                self.pending
                    .push(Event::OperationProgress { operation: status });
            }
            Internal::OperationDone(result) => self.on_operation_done(result),
            Internal::DoctorDone {
                reader,
                generation,
                result,
                reply,
            } => self.on_doctor_done(&reader, generation, *result, reply),
        }
    }

    // ---- renewal, repair and the RA's card work ----

    fn call_renew(&mut self, reply: ReplyTo) {
        let target = self.signed_in().and_then(|s| {
            if !s.card_present {
                return Err(ErrorObject::new(
                    ErrorCode::NoCard,
                    "insert your smartcard to renew it",
                ));
            }
            let whose = super::whose_card(Some(&s.session.user.name), &s.serial);
            Ok((s.reader.clone(), s.serial.clone(), whose))
        });
        let (reader, serial, whose) = match target.and_then(|t| self.check_idle().map(|()| t)) {
            Ok(target) => target,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let ops = self.operations.clone();
        self.start_operation(OperationKind::Renew, reader, serial, Some(reply), {
            move |(reader, serial, report, cancel)| async move {
                let asking = operation::ask_renewal_pin(&ops.pinentry, &whose);
                let pin =
                    operation::unless_cancelled(asking, &cancel, OperationKind::Renew).await?;
                operation::renew(&ops, &reader, &serial, pin, report, cancel).await
            }
        });
    }

    fn call_repair(&mut self, params: agent_ipc::RepairParams, reply: ReplyTo) {
        let target = self.officer().and_then(|client| {
            let reader = self.holder_reader(params.reader)?;
            let serial = self.serial_in(&reader)?;
            if params.serial.as_ref().is_some_and(|s| *s != serial) {
                return Err(ErrorObject::new(
                    ErrorCode::BadRequest,
                    format!("the card in {reader} is {serial}, not the one confirmed"),
                ));
            }
            self.check_idle()?;
            Ok((client, reader, serial))
        });
        match target {
            Ok((client, reader, serial)) => self.start_repair(client, reader, serial, Some(reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Finishes a journaled repair when its card is in and an officer is signed in.
    fn resume_repair(&mut self) {
        self.resume_repair_except(None);
    }

    /// [`Self::resume_repair`], leaving the card `skip` alone.
    fn resume_repair_except(&mut self, skip: Option<&str>) {
        if self.operation.is_some() || self.doctor.is_some() {
            return;
        }
        let Ok(client) = self.officer() else {
            return;
        };
        let session_reader = self.session.as_ref().map(|s| s.signed_in.reader.clone());
        let found = self.readers.iter().find_map(|(reader, slot)| {
            let serial = slot.card.as_ref()?.serial?.to_string();
            let entry = self.operations.journal.get(&serial)?;
            (entry.kind == OperationKind::Repair
                && Some(reader) != session_reader.as_ref()
                && skip != Some(serial.as_str()))
            .then(|| (reader.clone(), serial))
        });
        if let Some((reader, serial)) = found {
            tracing::info!(%serial, "finishing an interrupted repair");
            self.start_repair(client, reader, serial, None);
        }
    }

    fn start_repair(
        &mut self,
        client: CmsClient,
        reader: String,
        serial: String,
        reply: Option<ReplyTo>,
    ) {
        let ops = self.operations.clone();
        self.start_operation(OperationKind::Repair, reader, serial, reply, {
            move |(reader, serial, report, cancel)| async move {
                operation::repair(&ops, &client, &reader, &serial, report, cancel).await
            }
        });
    }

    /// Runs an operation in its own task; steps and the outcome come back as messages.
    fn start_operation<F, Fut>(
        &mut self,
        kind: OperationKind,
        reader: String,
        serial: String,
        reply: Option<ReplyTo>,
        work: F,
    ) where
        F: FnOnce((String, String, operation::Report, CancellationToken)) -> Fut,
        Fut: std::future::Future<Output = Result<Finished, ErrorObject>> + Send + 'static,
    {
        let cancel = CancellationToken::new();
        let steps = self.internal_tx.clone();
        let report: operation::Report = Arc::new(move |status| {
            let _ = steps.send(Internal::OperationStep(status));
        });
        let future = work((reader.clone(), serial.clone(), report, cancel.clone()));
        let internal = self.internal_tx.clone();
        tokio::spawn(async move {
            let _ = internal.send(Internal::OperationDone(future.await));
        });
        self.operation = Some(OperationRun {
            kind,
            reader,
            serial,
            status: None,
            cancel,
            waiters: reply.into_iter().collect(),
        });
    }

    fn on_operation_done(&mut self, result: Result<Finished, ErrorObject>) {
        let Some(run) = self.operation.take() else {
            return;
        };
        let mut status = run.status();
        let outcome = match &result {
            Ok(finished) => {
                status = finished.status.clone();
                if let Some(certificate) = &finished.certificate {
                    self.card_renewed(&run.reader, certificate.clone());
                    let until = certificate.expiry(now()).expires_on;
                    status.message = format!("{} until {until}", status.message);
                }
                status.step.to_string()
            }
            Err(e) => format!("failed: {}", e.message),
        };
        tracing::info!(serial = %run.serial, kind = ?run.kind, %outcome, "operation finished");
        let serial = run.serial.clone();
        self.audit
            .record(AuditEvent::operation(run.kind, serial, outcome));
        let error = result.as_ref().err().cloned();
        self.pending.push(Event::OperationResult {
            operation: status.clone(),
            error: error.clone(),
        });
        let answer = match error {
            Some(e) => Err(e),
            None => Ok(json(&status)),
        };
        for waiter in run.waiters {
            let _ = waiter.send(answer.clone());
        }
        self.auto_login(&run.reader);
        // A repair that just failed is not restarted at once (it would ask the holder again
        // and again); it resumes when a card is next inserted or an officer next signs in.
        let failed = (run.kind == OperationKind::Repair && result.is_err()).then_some(run.serial);
        self.resume_repair_except(failed.as_deref());
    }

    /// The card in `reader` got a new certificate from this agent: the readers' view and the
    /// session (if it is that card's) follow, so the session stays signed in.
    fn card_renewed(&mut self, reader: &str, certificate: crate::card::CardCertificate) {
        if let Some(card) = self.readers.get_mut(reader).and_then(|s| s.card.as_mut()) {
            card.certificate = Some(certificate.clone());
        }
        if let Some(session) = &mut self.session {
            if session.signed_in.reader == reader {
                session.signed_in.fingerprint = certificate.fingerprint;
                self.next_expiry_warning = None;
            }
        }
        self.schedule_certificate_check();
    }

    fn call_cancel_operation(&mut self, id: &str) -> Result<serde_json::Value, ErrorObject> {
        let run = self
            .operation
            .as_ref()
            .filter(|r| r.status.as_ref().is_some_and(|s| s.id == id))
            .ok_or_else(|| {
                ErrorObject::new(
                    ErrorCode::UnknownOperation,
                    format!("no operation {id:?} is running"),
                )
            })?;
        if run.card_touched() {
            return Err(ErrorObject::new(
                ErrorCode::Busy,
                "the card is being written: stopping now would leave it unable to sign in, so \
                 the operation finishes",
            ));
        }
        run.cancel.cancel();
        let mut status = run.status();
        status.message = "Cancelling before the card is changed".into();
        Ok(json(&status))
    }

    fn check_idle(&self) -> Result<(), ErrorObject> {
        if let Some(run) = &self.operation {
            return Err(ErrorObject::new(
                ErrorCode::Busy,
                format!("an operation on card {} is running", run.serial),
            ));
        }
        if let Some(reader) = &self.doctor {
            return Err(ErrorObject::new(
                ErrorCode::Busy,
                format!("the card doctor is examining the card in {reader}"),
            ));
        }
        Ok(())
    }

    // ---- the card doctor ----

    /// The reader the doctor examines: the one named, else the only one with a card.
    fn doctor_reader(&self, named: Option<String>) -> Result<String, ErrorObject> {
        self.pick_reader(
            named,
            |_, _| true,
            "insert the card to check",
            "there are cards in several readers: name the reader of the card to check",
        )
    }

    /// Runs the doctor in its own task; its report comes back as a message.
    fn call_doctor(&mut self, params: agent_ipc::DoctorParams, reply: ReplyTo) {
        let target = self.check_idle().and_then(|()| {
            if let Some(run) = &self.login {
                return Err(ErrorObject::new(
                    ErrorCode::Busy,
                    format!("a sign-in with the card in {} is running", run.reader),
                ));
            }
            let reader = self.doctor_reader(params.reader)?;
            let slot = &self.readers[&reader];
            let card = slot.card.clone().ok_or_else(|| {
                ErrorObject::new(ErrorCode::NoCard, format!("there is no card in {reader}"))
            })?;
            Ok((reader, slot.generation, card))
        });
        let (reader, generation, card) = match target {
            Ok(target) => target,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let context = DoctorContext {
            operations: self.operations.clone(),
            pinentry: self.config.pinentry.clone(),
            ca_file: self.config.cms.ca_file.clone(),
            warning_days: self.config.expiry.warning_days,
        };
        let steps = self.internal_tx.clone();
        let progress: operation::Report = Arc::new(move |status| {
            let _ = steps.send(Internal::OperationStep(status));
        });
        let internal = self.internal_tx.clone();
        let task_reader = reader.clone();
        tokio::spawn(async move {
            let result = doctor::examine(context, card, params.heal, progress).await;
            let _ = internal.send(Internal::DoctorDone {
                reader: task_reader,
                generation,
                result: Box::new(result),
                reply,
            });
        });
        tracing::info!(%reader, heal = params.heal, "card doctor started");
        self.doctor = Some(reader);
    }

    fn on_doctor_done(
        &mut self,
        reader: &str,
        generation: u64,
        result: Result<DoctorOutcome, ErrorObject>,
        reply: ReplyTo,
    ) {
        self.doctor = None;
        let answer = result.map(|outcome| {
            let serial = outcome.report.card.serial.clone().unwrap_or_default();
            if let Some(tries_left) = outcome.wrong_pin {
                self.audit.record(AuditEvent::WrongPin {
                    serial: serial.clone(),
                    tries_left,
                });
            }
            if let Some(finished) = outcome.finished {
                let same_card = self
                    .readers
                    .get(reader)
                    .is_some_and(|s| s.generation == generation && s.card.is_some());
                if let (true, Some(certificate)) = (same_card, &finished.certificate) {
                    self.card_renewed(reader, certificate.clone());
                }
                self.audit.record(AuditEvent::operation(
                    finished.status.kind,
                    serial.clone(),
                    format!("{} by the card doctor", finished.status.step),
                ));
                self.pending.push(Event::OperationResult {
                    operation: finished.status,
                    error: None,
                });
            }
            let summary: Vec<String> = outcome
                .report
                .checks
                .iter()
                .map(|c| format!("{}={}", c.name, c.outcome))
                .collect();
            tracing::info!(%serial, checks = %summary.join(" "), "card doctor finished");
            json(&outcome.report)
        });
        let _ = reply.send(answer);
        self.resume_repair();
    }

    /// The signed-in officer's session client, if the selected role holds B0267.
    fn officer(&self) -> Result<CmsClient, ErrorObject> {
        let s = self.signed_in()?;
        let holds = |r: &RoleView| r.activities.iter().any(|a| a == RA_ACTIVITY);
        let selected = s
            .session
            .selected_role
            .and_then(|id| s.session.roles.iter().find(|r| r.id == id));
        if selected.is_some_and(holds) {
            return Ok(s.client.clone());
        }
        let hint = match s.session.roles.iter().find(|r| holds(r)) {
            Some(r) => format!(": select your role {} ({}) first", r.id, r.job_role),
            None => String::new(),
        };
        Err(ErrorObject::new(
            ErrorCode::RoleNotPermitted,
            format!("your role does not permit Repair Smartcard (activity {RA_ACTIVITY}){hint}"),
        ))
    }

    /// The reader holding a holder's card: the one named, else the only one with a card that
    /// is not the signed-in card.
    fn holder_reader(&self, named: Option<String>) -> Result<String, ErrorObject> {
        let own = self.session.as_ref().map(|s| s.signed_in.reader.clone());
        self.pick_reader(
            named,
            |reader, _| Some(reader) != own.as_deref(),
            "put the holder's card in a second reader",
            "there are cards in several readers: name the holder's reader",
        )
    }

    /// The reader `named` if it exists, else the only reader with a card that `wanted`
    /// accepts; `none` and `several` say what to do otherwise.
    fn pick_reader(
        &self,
        named: Option<String>,
        wanted: impl Fn(&str, &CardIdentity) -> bool,
        none: &str,
        several: &str,
    ) -> Result<String, ErrorObject> {
        if let Some(reader) = named {
            return match self.readers.contains_key(&reader) {
                true => Ok(reader),
                false => Err(ErrorObject::new(
                    ErrorCode::NoReader,
                    format!("there is no reader called {reader:?}"),
                )),
            };
        }
        let found: Vec<&String> = self
            .readers
            .iter()
            .filter(|(r, s)| s.card.as_ref().is_some_and(|c| wanted(r, c)))
            .map(|(r, _)| r)
            .collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ErrorObject::new(ErrorCode::NoCard, none)),
            _ => Err(ErrorObject::new(ErrorCode::BadRequest, several)),
        }
    }

    fn serial_in(&self, reader: &str) -> Result<String, ErrorObject> {
        let card = self.card_in(reader).ok_or_else(|| {
            ErrorObject::new(ErrorCode::NoCard, format!("there is no card in {reader}"))
        })?;
        card.serial.map(|s| s.to_string()).ok_or_else(|| {
            ErrorObject::new(
                ErrorCode::NotPiv,
                format!("the card in {reader} has no readable serial"),
            )
        })
    }

    fn call_card_details(&mut self, reader: Option<String>, reply: ReplyTo) {
        let found = self
            .signed_in()
            .map(|s| s.client.clone())
            .and_then(|client| {
                let reader = match reader {
                    Some(reader) => reader,
                    None => self
                        .holder_reader(None)
                        .or_else(|_| self.signed_in().map(|s| s.reader.clone()))?,
                };
                Ok((client, self.serial_in(&reader)?))
            });
        match found {
            Ok((client, serial)) => {
                tokio::spawn(async move {
                    let _ = reply.send(details_answer(client.card(&serial).await));
                });
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn call_cancel_card(&mut self, params: agent_ipc::CancelCardParams, reply: ReplyTo) {
        match self.officer() {
            Ok(client) => {
                tokio::spawn(async move {
                    let cancelled = client.cancel_card(&params.serial, &params.reason).await;
                    let _ = reply.send(details_answer(cancelled));
                });
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    // ---- status and events ----

    fn session_status(&self) -> SessionStatus {
        if let Some(session) = &self.session {
            let s = &session.signed_in;
            return SessionStatus {
                state: SessionState::SignedIn,
                reader: Some(s.reader.clone()),
                serial: Some(s.serial.clone()),
                user: Some(User {
                    id: s.session.user.id.clone(),
                    name: s.session.user.name.clone(),
                }),
                role: s
                    .session
                    .selected_role
                    .and_then(|id| s.session.roles.iter().find(|r| r.id == id))
                    .map(role),
                signed_in_at: Some(s.signed_in_at),
                expires_at: Some(s.session.expires_at),
            };
        }
        let (state, reader) = if let Some(run) = &self.login {
            (run.state, Some(run.reader.clone()))
        } else if let Some(reader) = &self.ended_in {
            (SessionState::Ended, Some(reader.clone()))
        } else if let Some((reader, _)) = self
            .readers
            .iter()
            .find(|(_, s)| s.card.as_ref().is_some_and(|c| c.piv))
        {
            (SessionState::CardPresent, Some(reader.clone()))
        } else {
            (SessionState::NoCard, None)
        };
        let serial = reader
            .as_deref()
            .and_then(|r| self.card_in(r))
            .and_then(|c| c.serial)
            .map(|s| s.to_string());
        SessionStatus {
            reader,
            serial,
            ..SessionStatus::idle(state)
        }
    }

    /// A card as the socket API shows it, as of `now`: the session's card names its holder
    /// as the service's session does (by the name it records now, whatever the certificate
    /// says).
    fn card_status(&self, card: &CardIdentity, now: i64) -> CardStatus {
        let mut status = card.status(now);
        if let Ok(signed_in) = self.signed_in() {
            if same_card(signed_in, card) {
                let user = &signed_in.session.user;
                status.holder = Some(user.name.clone());
                status.holder_id = Some(user.id.clone());
            }
        }
        status
    }

    fn snapshot(&self) -> Status {
        let now = now();
        Status {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            pcsc: self.pcsc.clone(),
            readers: self
                .readers
                .iter()
                .map(|(name, slot)| ReaderStatus {
                    name: name.clone(),
                    card: slot.card.as_ref().map(|c| self.card_status(c, now)),
                })
                .collect(),
            session: self.session_status(),
        }
    }

    /// Publishes the status, then the events of this turn in order (so a subscriber reacting
    /// to an event reads a status that already includes it).
    fn flush(&mut self) {
        let status = self.snapshot();
        let state = status.session.state;
        self.status.send_replace(status);
        if state != self.last_state {
            self.last_state = state;
            self.pending.push(Event::SessionState { state });
        }
        for event in self.pending.drain(..) {
            let _ = self.events.send(event);
        }
    }
}

fn same_card(signed_in: &SignedIn, card: &CardIdentity) -> bool {
    card.serial.map(|s| s.to_string()).as_deref() == Some(signed_in.serial.as_str())
        && card
            .certificate
            .as_ref()
            .is_some_and(|c| c.fingerprint == signed_in.fingerprint)
}

/// Smartcard Details in the socket API's shape, or the service's refusal in its words.
fn details_answer(
    answer: Result<SmartcardDetails, cms::client::ClientError>,
) -> Result<serde_json::Value, ErrorObject> {
    let details = answer.map_err(|e| crate::cms::error_object(&e))?;
    Ok(json(&CardDetails {
        serial: details.serial,
        card_type: details.card_type,
        holder_id: details.holder_id,
        holder_name: details.holder_name,
        issued_on: details.issued_on,
        certs_expire: details.certs_expire,
        cancelled_on: details.cancelled_on,
        status: details.status,
        expired: details.expired,
        renewals_used: details.renewals_used,
        capacity: details.capacity,
    }))
}

fn role(view: &RoleView) -> Role {
    Role {
        id: view.id.to_string(),
        organisation: view.organisation.clone(),
        job_role: view.job_role.clone(),
        activities: view.activities.clone(),
    }
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn spawn_logout(client: CmsClient) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = client.logout().await {
            tracing::warn!("logging out at the Card Management Service failed: {e}");
        }
    })
}

fn lock_screen() {
    match tokio::process::Command::new("loginctl")
        .arg("lock-session")
        .kill_on_drop(false)
        .spawn()
    {
        Ok(mut child) => {
            tokio::spawn(async move {
                if let Ok(status) = child.wait().await {
                    if !status.success() {
                        tracing::warn!("loginctl lock-session failed: {status}");
                    }
                }
            });
        }
        Err(e) => tracing::warn!("cannot lock the screen (loginctl lock-session): {e}"),
    }
}
