//! The task that owns the readers' view and the session: card events and socket calls come in
//! over channels, status and events go out. Slow work (the PIN prompt, card steps, the
//! service) runs in tasks of its own that report back here as [`TaskReport`]s, so a removal is
//! acted on at once.
//!
//! One actor, one file per concern of it (see `docs/ARCHITECTURE.md`):
//!
//! | file | what it keeps |
//! |---|---|
//! | `mod.rs` | the owner's state, its run loop, and the task reports' dispatch |
//! | `readers.rs` | the readers' view: pcscd, readers, cards inserted, removed and swapped |
//! | `sign_in.rs` | signing in, on insertion or when asked |
//! | `lifecycle.rs` | the session's end and the clocks that run while it lasts |
//! | `calls.rs` | the socket API's calls |
//! | `card_work.rs` | renewal, repair and the RA's card work |
//! | `doctor.rs` | the card doctor |
//! | `status.rs` | the status and the events published after each turn |
//!
//! Every task report carries the reader generation (or the run) it was started for; a report
//! for a card that has left since is dropped, so a late answer never acts on the wrong card.

mod calls;
mod card_work;
mod doctor;
mod lifecycle;
mod readers;
mod sign_in;
mod status;
mod timers;

use self::card_work::OperationRun;
use self::sign_in::LoginRun;
use self::timers::{sleep_until, Due, SessionClocks};
use super::login::{LoginContext, LoginStep, SignedIn};
use super::roles::RoleMemory;
use crate::audit::{AuditEvent, AuditLog};
use crate::card::{CardEvent, CardIdentity};
use crate::config::Config;
use crate::doctor::DoctorOutcome;
use crate::ipc::{AgentCall, AgentLink};
use crate::operation::journal::Journal;
use crate::operation::secrets::SecretStore;
use crate::operation::{Finished, OperationEngine};
use agent_ipc::{
    ErrorCode, ErrorObject, Event, OperationStatus, PcscStatus, SessionEndReason, SessionState,
    SessionStatus, Status,
};
use cms_api::client::CmsClient;
use cms_api::protocol::SessionView;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The methods of the protocol this agent does not serve yet.
const NOT_SERVED: &[&str] = &[];

/// The methods this agent serves: the protocol's, less [`NOT_SERVED`].
pub fn capabilities() -> Vec<String> {
    agent_ipc::METHODS
        .iter()
        .filter(|m| !NOT_SERVED.contains(m))
        .map(|m| m.to_string())
        .collect()
}

/// Where the answer to a socket call goes.
type ReplyTo = oneshot::Sender<Result<serde_json::Value, ErrorObject>>;

/// A reader and the card in it; `generation` changes with every card that comes or goes.
#[derive(Debug)]
struct ReaderSlot {
    card: Option<CardIdentity>,
    generation: u64,
}

/// What the owner's own tasks report back. Each carries what it was started for (the reader
/// generation of its card, or the one running operation), and is dropped when that is gone.
enum TaskReport {
    /// A step of the sign-in started for `generation` ([`sign_in`]).
    LoginStep { generation: u64, step: LoginStep },
    /// The sign-in started for `generation` ended.
    LoginDone {
        generation: u64,
        result: Box<Result<SignedIn, ErrorObject>>,
    },
    /// The service answered a role selection for the session of `generation` ([`calls`]).
    RoleSelected {
        generation: u64,
        remember: bool,
        result: Result<SessionView, ErrorObject>,
        reply: ReplyTo,
    },
    /// The session card's certificate was re-read for `generation` ([`lifecycle`]).
    CertificateRead {
        generation: u64,
        fingerprint: Result<[u8; 32], piv::Error>,
    },
    /// A step of the running operation, or of the doctor's healing ([`card_work`]).
    OperationStep(OperationStatus),
    /// The running operation ended.
    OperationDone(Result<Finished, ErrorObject>),
    /// The card doctor finished with the card of `reader` as of `generation` ([`doctor`]).
    DoctorDone {
        reader: String,
        generation: u64,
        result: Box<Result<DoctorOutcome, ErrorObject>>,
        reply: ReplyTo,
    },
}

/// How long a card event's aftermath waits after its events are published. On the agent's one
/// thread the connections write those events only once the owner lets go, and on a busy machine
/// a subscriber woken by one (the tray, a clinical application) waits for a CPU: the audit line,
/// the log line and the logout's TLS would take that CPU first. Measured (BENCHMARKS.md), card
/// pulled → `session_ended` with both CPUs busy: p50 0.41-0.52 ms settling at once, 0.23-0.27
/// ms after 2 ms.
const AFTERMATH_DELAY: Duration = Duration::from_millis(2);

/// What a turn leaves to do once its status and events are published: the slow or merely
/// bookkeeping side of acting on an event (audit lines, log lines, starting programs), kept off
/// the path from a card event to the subscribers.
#[derive(Debug)]
enum Aftermath {
    /// The session of card `serial` ended: audited and logged.
    SessionEnded {
        serial: String,
        reason: SessionEndReason,
    },
    /// An audit line (kept in turn order with the session's end).
    Audit(AuditEvent),
    /// The `lock` removal action: the screen is locked.
    LockScreen,
    /// A session's end: logged out at the service, in the background.
    Logout(CmsClient),
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
    /// The last reader generation handed out.
    last_generation: u64,
    login: Option<LoginRun>,
    session: Option<Session>,
    engine: OperationEngine,
    operation: Option<OperationRun>,
    /// The reader the card doctor is examining.
    doctor: Option<String>,
    /// The reader whose card's session ended while the card stayed in (the status says
    /// `ended` there until the card leaves or signs in again).
    ended_with_card_in: Option<String>,
    clocks: SessionClocks,
    calls: mpsc::Receiver<AgentCall>,
    reports_tx: mpsc::UnboundedSender<TaskReport>,
    reports: mpsc::UnboundedReceiver<TaskReport>,
    status: watch::Sender<Status>,
    events: broadcast::Sender<Event>,
    /// The events of this turn, published after the status.
    pending: Vec<Event>,
    /// What the turns since the last settling left to do after publishing, in order.
    aftermath: Vec<Aftermath>,
    /// When the aftermath is settled: [`AFTERMATH_DELAY`] after the first turn that left some.
    settle_at: Option<tokio::time::Instant>,
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
        let (reports_tx, reports) = mpsc::unbounded_channel();
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
        let engine = OperationEngine {
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
                engine: engine.clone(),
            },
            engine,
            operation: None,
            doctor: None,
            config,
            audit,
            roles,
            pcsc,
            readers: BTreeMap::new(),
            last_generation: 1,
            login: None,
            session: None,
            ended_with_card_in: None,
            clocks: SessionClocks::default(),
            calls,
            reports_tx,
            reports,
            status,
            events,
            pending: Vec::new(),
            aftermath: Vec::new(),
            settle_at: None,
            last_state: SessionState::NoCard,
        };
        (owner, link)
    }

    /// Runs until `shutdown`, then ends the session (logging out at the service) and returns.
    /// Each turn handles one card event, call, task report or clock, then publishes, then
    /// settles its aftermath: at once, so that a caller's answer never comes before the audit
    /// line of what it did, except after a card event, which has no caller and whose
    /// subscribers go first ([`AFTERMATH_DELAY`]).
    pub async fn run(
        mut self,
        mut cards: mpsc::UnboundedReceiver<CardEvent>,
        shutdown: CancellationToken,
    ) {
        loop {
            let deadline = self.session_deadline();
            let mut card_event = false;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = cards.recv() => match event {
                    Some(event) => {
                        self.on_card_event(event);
                        card_event = true;
                    }
                    None => break,
                },
                Some(call) = self.calls.recv() => self.on_call(call),
                Some(report) = self.reports.recv() => self.on_task_report(report),
                due = self.clocks.next_due(deadline) => match due {
                    Due::SessionExpired => self.end_session(SessionEndReason::CmsSessionExpired),
                    Due::CertificateCheck => self.check_certificate(),
                    Due::ExpiryWarning => self.warn_expiry(),
                },
                () = sleep_until(self.settle_at) => {
                    self.settle_aftermath();
                    continue;
                }
            }
            self.flush();
            if !card_event {
                self.settle_aftermath();
            } else if !self.aftermath.is_empty() && self.settle_at.is_none() {
                self.settle_at = Some(tokio::time::Instant::now() + AFTERMATH_DELAY);
            }
        }
        self.cancel_login(ErrorObject::new(
            ErrorCode::ShuttingDown,
            "the agent is shutting down",
        ));
        self.end_session(SessionEndReason::AgentShutdown);
        self.flush();
        if let Some(logout) = self.settle_aftermath() {
            let _ = tokio::time::timeout(Duration::from_secs(2), logout).await;
        }
    }

    /// Does what the turns left for after publishing, in order; returns the logout it started.
    fn settle_aftermath(&mut self) -> Option<JoinHandle<()>> {
        self.settle_at = None;
        let mut logout = None;
        for work in std::mem::take(&mut self.aftermath) {
            match work {
                Aftermath::SessionEnded { serial, reason } => {
                    tracing::info!(%serial, ?reason, "session ended");
                    self.audit.record(AuditEvent::SignOut {
                        serial,
                        reason: reason.as_str().to_owned(),
                    });
                }
                Aftermath::Audit(event) => self.audit.record(event),
                Aftermath::LockScreen => crate::screen_lock::lock(),
                Aftermath::Logout(client) => logout = Some(spawn_logout(client)),
            }
        }
        logout
    }

    /// Audits `event` once this turn is published.
    fn record(&mut self, event: AuditEvent) {
        self.aftermath.push(Aftermath::Audit(event));
    }

    /// Hands a task's report to the room that started the task.
    fn on_task_report(&mut self, report: TaskReport) {
        match report {
            TaskReport::LoginStep { generation, step } => self.on_login_step(generation, step),
            TaskReport::LoginDone { generation, result } => self.on_login_done(generation, *result),
            TaskReport::RoleSelected {
                generation,
                remember,
                result,
                reply,
            } => self.on_role_selected(generation, remember, result, reply),
            TaskReport::CertificateRead {
                generation,
                fingerprint,
            } => self.on_certificate_read(generation, fingerprint),
            TaskReport::OperationStep(status) => self.on_operation_step(status),
            TaskReport::OperationDone(result) => self.on_operation_done(result),
            TaskReport::DoctorDone {
                reader,
                generation,
                result,
                reply,
            } => self.on_doctor_done(&reader, generation, *result, reply),
        }
    }
}

/// A value as the JSON of a socket answer.
pub(super) fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Logs `client`'s session out at the service in the background.
pub(super) fn spawn_logout(client: CmsClient) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = client.logout().await {
            tracing::warn!("logging out at the Card Management Service failed: {e}");
        }
    })
}
