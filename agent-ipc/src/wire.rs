//! Every message that crosses the socket: requests, replies, events and the types they carry.
//!
//! One JSON object per line. A request is `{"id":7,"method":"status"}` (with `"params":{…}` for
//! the methods that take some); its reply is `{"id":7,"result":…}` or
//! `{"id":7,"error":{"code":"wrong_pin","message":"…","data":{…}}}`; after `subscribe` the
//! agent also sends events, `{"event":"card_removed","data":{…}}`.

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks; `hello` carries it and the agent refuses others.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest line either side may send, newline excluded.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Every method's name on the wire, in the order of [`Call`].
pub const METHODS: [&str; 15] = [
    "hello",
    "status",
    "readers",
    "subscribe",
    "login",
    "logout",
    "roles",
    "select_role",
    "ticket",
    "renew",
    "repair",
    "cancel_operation",
    "doctor",
    "card_details",
    "cancel_card",
];

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client; the reply carries it back.
    pub id: u64,
    /// The method and its parameters.
    #[serde(flatten)]
    pub call: Call,
}

/// A method with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Call {
    /// Must come first on every connection. Result: [`HelloResult`].
    Hello(HelloParams),
    /// The agent, its readers, cards and session. Result: [`Status`].
    Status,
    /// The readers and their cards. Result: `Vec<`[`ReaderStatus`]`>`.
    Readers,
    /// Start receiving [`Event`]s on this connection. Result: [`Subscribed`].
    Subscribe,
    /// Sign in with the card in a reader (the agent asks for the PIN through pinentry).
    /// Result: [`SessionStatus`].
    Login(LoginParams),
    /// End the session. Result: [`SessionStatus`].
    Logout,
    /// The signed-in user's roles. Result: [`Roles`].
    Roles,
    /// Select one of the signed-in user's roles. Result: [`SessionStatus`].
    SelectRole(SelectRoleParams),
    /// The session ticket for relying applications. Result: [`Ticket`].
    Ticket,
    /// Renew the signed-in card's certificates. Result: [`OperationStatus`].
    Renew,
    /// Repair a holder's card in another reader (RA, activity B0267). Result:
    /// [`OperationStatus`].
    Repair(RepairParams),
    /// Cancel a running renew or repair. Result: [`OperationStatus`].
    CancelOperation(CancelOperationParams),
    /// Diagnose (and heal what is safe on) a card. Result: [`DoctorReport`].
    Doctor(DoctorParams),
    /// A card's Smartcard Details at the Card Management Service (the holder's own card, or
    /// any card for an RA). Result: [`CardDetails`].
    CardDetails(CardParams),
    /// Cancel a card at the Card Management Service (RA, activity B0267): it can no longer
    /// sign in. Result: [`CardDetails`].
    CancelCard(CancelCardParams),
}

impl Call {
    /// The method's name on the wire.
    pub fn method(&self) -> &'static str {
        match self {
            Call::Hello(_) => "hello",
            Call::Status => "status",
            Call::Readers => "readers",
            Call::Subscribe => "subscribe",
            Call::Login(_) => "login",
            Call::Logout => "logout",
            Call::Roles => "roles",
            Call::SelectRole(_) => "select_role",
            Call::Ticket => "ticket",
            Call::Renew => "renew",
            Call::Repair(_) => "repair",
            Call::CancelOperation(_) => "cancel_operation",
            Call::Doctor(_) => "doctor",
            Call::CardDetails(_) => "card_details",
            Call::CancelCard(_) => "cancel_card",
        }
    }
}

/// Parameters of `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloParams {
    /// The protocol version the client speaks ([`PROTOCOL_VERSION`]).
    pub protocol: u32,
    /// The client's name, for the agent's log (`iactl 0.1.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// Result of `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloResult {
    /// The protocol version the agent speaks.
    pub protocol: u32,
    /// The agent's version.
    pub agent_version: String,
    /// The methods this agent serves (a method not listed answers `not_supported`).
    pub capabilities: Vec<String>,
}

/// Parameters of `login`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginParams {
    /// The reader whose card signs in; by default the only reader holding a PIV card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
}

/// Parameters of `select_role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectRoleParams {
    /// The role's id, as [`Role::id`] gives it.
    pub role: String,
    /// Remember it as this user's default role on this workstation (default true).
    #[serde(default = "yes")]
    pub remember: bool,
}

fn yes() -> bool {
    true
}

/// Parameters of `repair`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairParams {
    /// The reader holding the card to repair; by default the one reader with a card that is
    /// not the signed-in officer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
    /// The serial the officer was shown (`card_details`) and confirmed: the repair is refused
    /// if the card in the reader is another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// Parameters of `card_details`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardParams {
    /// The reader holding the card; by default the one reader with a card that is not the
    /// signed-in user's, else the signed-in card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
}

/// Parameters of `cancel_card`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelCardParams {
    /// The card's serial.
    pub serial: String,
    /// Why (recorded at the Card Management Service).
    pub reason: String,
}

/// Parameters of `cancel_operation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelOperationParams {
    /// The operation's id.
    pub operation: String,
}

/// Parameters of `doctor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoctorParams {
    /// The reader holding the card; by default the only reader with a card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
    /// Heal what is safe to heal, not only diagnose.
    #[serde(default)]
    pub heal: bool,
}

/// Result of `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// Always true.
    pub subscribed: bool,
}

/// A reply to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id; none when the request was too malformed to carry one.
    pub id: Option<u64>,
    /// The result or the error.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What a request came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Success, with the method's result.
    Result(serde_json::Value),
    /// Failure.
    Error(ErrorObject),
}

/// An error on the wire: a stable code, a message for people, and details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorObject {
    /// The stable code scripts match on.
    pub code: ErrorCode,
    /// What happened and what to do, for the person reading it.
    pub message: String,
    /// Details, such as `{"tries_left":2}` for `wrong_pin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl ErrorObject {
    /// An error with `code` and `message` and no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The same error with details.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// The closed set of error codes (documented in `PROTOCOL.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message is not valid JSON or not a valid request (bad params, missing id).
    BadRequest,
    /// The line is longer than [`MAX_MESSAGE_BYTES`].
    MessageTooLarge,
    /// No such method.
    UnknownMethod,
    /// The first message on a connection must be `hello`.
    HelloRequired,
    /// The client speaks another protocol version.
    ProtocolMismatch,
    /// The peer is not the user the agent runs for.
    PermissionDenied,
    /// The agent serves as many connections as it will.
    TooManyConnections,
    /// This agent does not serve the method (yet).
    NotSupported,
    /// The agent is shutting down.
    ShuttingDown,
    /// A subscriber read events too slowly and was dropped.
    SubscriberOverflow,
    /// Another login or operation is running.
    Busy,
    /// The smartcard service (pcscd) is not running.
    PcscUnavailable,
    /// No such reader, or no reader at all.
    NoReader,
    /// No card in the reader.
    NoCard,
    /// The card is not a PIV card the agent can sign in with.
    NotPiv,
    /// The card was removed during the operation.
    CardRemoved,
    /// The card answered something the agent cannot use.
    CardError,
    /// The PIN was wrong; `data.tries_left` says how many tries are left.
    WrongPin,
    /// The PIN is blocked; the Registration Authority can unblock it.
    PinBlocked,
    /// The holder cancelled the PIN prompt.
    PinCancelled,
    /// The PIN prompt (pinentry) could not be shown.
    PinentryFailed,
    /// The new PIN breaks the PIN policy; the message names the rule.
    PinPolicy,
    /// The card's certificate has expired; the Registration Authority can repair it.
    CertificateExpired,
    /// The card has been cancelled at the Card Management Service.
    CardCancelled,
    /// The Card Management Service cannot be reached.
    CmsUnreachable,
    /// The Card Management Service refused; `data.cms_code` carries its code.
    CmsRefused,
    /// The method needs a signed-in session.
    NoSession,
    /// No such role for the signed-in user.
    UnknownRole,
    /// The selected role does not permit this (repair needs activity B0267).
    RoleNotPermitted,
    /// No such operation.
    UnknownOperation,
    /// Something inside the agent went wrong; its log has the details.
    Internal,
}

/// An event, sent to subscribers in the order it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// A reader was plugged in (or appeared when pcscd came back).
    ReaderAdded {
        /// The reader.
        reader: String,
    },
    /// A reader was unplugged.
    ReaderRemoved {
        /// The reader.
        reader: String,
    },
    /// A card was inserted and identified.
    CardInserted {
        /// The reader.
        reader: String,
        /// The card.
        card: CardStatus,
    },
    /// A card was removed.
    CardRemoved {
        /// The reader.
        reader: String,
        /// The card's serial, when it was known.
        serial: Option<String>,
    },
    /// pcscd stopped; the agent reconnects by itself.
    PcscUnavailable {
        /// Why.
        message: String,
    },
    /// pcscd is back.
    PcscAvailable,
    /// The session moved to another state.
    SessionState {
        /// The new state.
        state: SessionState,
    },
    /// A sign-in failed (wrong PIN, blocked, expired, refused …).
    LoginFailed {
        /// The reader.
        reader: String,
        /// The card's serial.
        serial: Option<String>,
        /// Why.
        error: ErrorObject,
    },
    /// A session started.
    SessionStarted {
        /// The session.
        session: SessionStatus,
    },
    /// The session ended.
    SessionEnded {
        /// Why.
        reason: SessionEndReason,
        /// The reader it was bound to.
        reader: Option<String>,
        /// The card it was bound to.
        serial: Option<String>,
    },
    /// The session's role changed.
    RoleChanged {
        /// The selected role.
        role: Role,
    },
    /// The card's certificates expire soon (or have expired).
    ExpiryWarning {
        /// The card.
        serial: String,
        /// Days until expiry (negative once expired).
        days_left: i64,
        /// The expiry date, `YYYY-MM-DD`.
        expires_on: String,
    },
    /// A renew or repair moved on a step.
    OperationProgress {
        /// The operation.
        operation: OperationStatus,
    },
    /// A renew or repair finished (successfully or not).
    OperationResult {
        /// The operation.
        operation: OperationStatus,
        /// Why it failed, if it did.
        error: Option<ErrorObject>,
    },
}

impl Event {
    /// The event's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Event::ReaderAdded { .. } => "reader_added",
            Event::ReaderRemoved { .. } => "reader_removed",
            Event::CardInserted { .. } => "card_inserted",
            Event::CardRemoved { .. } => "card_removed",
            Event::PcscUnavailable { .. } => "pcsc_unavailable",
            Event::PcscAvailable => "pcsc_available",
            Event::SessionState { .. } => "session_state",
            Event::LoginFailed { .. } => "login_failed",
            Event::SessionStarted { .. } => "session_started",
            Event::SessionEnded { .. } => "session_ended",
            Event::RoleChanged { .. } => "role_changed",
            Event::ExpiryWarning { .. } => "expiry_warning",
            Event::OperationProgress { .. } => "operation_progress",
            Event::OperationResult { .. } => "operation_result",
        }
    }
}

/// Anything the agent sends: a reply or an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServerMessage {
    /// An event (it has an `event` member).
    Event(Event),
    /// A reply (it has an `id` member).
    Reply(Reply),
}

/// Result of `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The agent's version.
    pub agent_version: String,
    /// Whether pcscd answers.
    pub pcsc: PcscStatus,
    /// The readers, with their cards.
    pub readers: Vec<ReaderStatus>,
    /// The session.
    pub session: SessionStatus,
}

/// Whether the smartcard service answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcscStatus {
    /// pcscd answers.
    pub available: bool,
    /// Why not, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A reader and its card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReaderStatus {
    /// The reader's name.
    pub name: String,
    /// The card in it.
    pub card: Option<CardStatus>,
}

/// A card as the agent identified it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardStatus {
    /// 16 hex digits, when the card has a readable CHUID.
    pub serial: Option<String>,
    /// The card type, from its ATR (`NHS CIS`, `YubiKey`, `Unknown` …).
    pub card_type: String,
    /// The ATR, hex.
    pub atr: String,
    /// Whether it is a PIV card.
    pub piv: bool,
    /// The holder's name, for people: the signed-in user's for the session's card, else the
    /// authentication certificate's (`null` when it names the holder only by user id).
    pub holder: Option<String>,
    /// The holder's user id, for programs, when known (the session's user, or the
    /// certificate's `UID`).
    #[serde(default)]
    pub holder_id: Option<String>,
    /// The authentication certificate's expiry, `YYYY-MM-DD`.
    pub expires_on: Option<String>,
    /// Days until that expiry (negative once expired).
    pub days_left: Option<i64>,
    /// Whether the certificate has expired.
    pub expired: bool,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// No card to sign in with.
    NoCard,
    /// A card is present; not signed in.
    CardPresent,
    /// The agent is asking for the PIN.
    WaitingForPin,
    /// The agent is proving the card to the Card Management Service.
    Authenticating,
    /// Signed in.
    SignedIn,
    /// The session ended while the card stayed in; `login` starts a new one.
    Ended,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    /// The card was removed.
    CardRemoved,
    /// Another card appeared in the session's reader.
    CardChanged,
    /// The certificate on the card was changed by someone other than this agent.
    CertificateChanged,
    /// The reader was unplugged.
    ReaderRemoved,
    /// The user logged out.
    Logout,
    /// The Card Management Service's session expired.
    CmsSessionExpired,
    /// The agent stopped.
    AgentShutdown,
}

/// The session: state, card and who is signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// Where the session is.
    pub state: SessionState,
    /// The reader of the session's card.
    pub reader: Option<String>,
    /// The session's card.
    pub serial: Option<String>,
    /// The signed-in user.
    pub user: Option<User>,
    /// The selected role.
    pub role: Option<Role>,
    /// When the session started (Unix seconds).
    pub signed_in_at: Option<i64>,
    /// When the Card Management Service ends it (Unix seconds).
    pub expires_at: Option<i64>,
}

impl SessionStatus {
    /// No session, in `state`.
    pub fn idle(state: SessionState) -> Self {
        Self {
            state,
            reader: None,
            serial: None,
            user: None,
            role: None,
            signed_in_at: None,
            expires_at: None,
        }
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's id (UUID).
    pub id: String,
    /// The user's name.
    pub name: String,
}

/// A role profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Its id, for `select_role`.
    pub id: String,
    /// The organisation.
    pub organisation: String,
    /// The job role.
    pub job_role: String,
    /// Activity codes (`B0267` …).
    pub activities: Vec<String>,
}

/// Result of `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    /// The signed-in user's roles.
    pub roles: Vec<Role>,
    /// The selected one's id.
    pub selected: Option<String>,
    /// The remembered default's id.
    pub default: Option<String>,
}

/// Result of `ticket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The ticket relying applications present to the Card Management Service.
    pub ticket: String,
    /// When it stops being valid (Unix seconds).
    pub expires_at: i64,
}

/// Which operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Self-renewal of the signed-in card.
    Renew,
    /// RA repair of a holder's card.
    Repair,
    /// The card doctor writing the card's current certificate back from the service.
    Restore,
}

impl OperationKind {
    /// The kind's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Renew => "renew",
            OperationKind::Repair => "repair",
            OperationKind::Restore => "restore",
        }
    }
}

/// A renew, repair or restore and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationStatus {
    /// Its id.
    pub id: String,
    /// Renew, repair or restore.
    pub kind: OperationKind,
    /// The card it works on.
    pub serial: String,
    /// The step it is at (`started`, `key_generated`, `certificate_written`, `confirmed` …).
    pub step: String,
    /// The step in words.
    pub message: String,
    /// Whether it has finished.
    pub done: bool,
}

/// A card's Smartcard Details, as the Card Management Service records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardDetails {
    /// The card's serial.
    pub serial: String,
    /// The card type (`NHS CIS`, `Gemplus` …).
    pub card_type: String,
    /// The holder's user id, for programs.
    pub holder_id: String,
    /// The holder's name, for people (`null` from a service that does not give it).
    #[serde(default)]
    pub holder_name: Option<String>,
    /// When the card was issued (`YYYY-MM-DD`).
    pub issued_on: String,
    /// When its certificates expire (`YYYY-MM-DD`).
    pub certs_expire: Option<String>,
    /// When it was cancelled, if it was.
    pub cancelled_on: Option<String>,
    /// `Active` or `Cancelled`.
    pub status: String,
    /// Whether its certificates have expired.
    pub expired: bool,
    /// Self-renewals used of `capacity`.
    pub renewals_used: u32,
    /// Self-renewals the card can take before it needs a repair.
    pub capacity: u32,
}

/// Result of `doctor`: what was checked, what was healed, what needs the RA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorReport {
    /// The card.
    pub card: CardStatus,
    /// Each check with its outcome.
    pub checks: Vec<DoctorCheck>,
}

/// One check of `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorCheck {
    /// What was checked (`applet`, `chuid`, `key_matches_certificate` …).
    pub name: String,
    /// `ok`, `healed`, `warning` or `needs_ra`.
    pub outcome: String,
    /// In words.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_list_every_call() {
        let calls = [
            Call::Hello(HelloParams {
                protocol: 1,
                client: None,
            }),
            Call::Status,
            Call::Readers,
            Call::Subscribe,
            Call::Login(LoginParams::default()),
            Call::Logout,
            Call::Roles,
            Call::SelectRole(SelectRoleParams {
                role: "r".into(),
                remember: true,
            }),
            Call::Ticket,
            Call::Renew,
            Call::Repair(RepairParams::default()),
            Call::CancelOperation(CancelOperationParams {
                operation: "o".into(),
            }),
            Call::Doctor(DoctorParams::default()),
            Call::CardDetails(CardParams::default()),
            Call::CancelCard(CancelCardParams {
                serial: "s".into(),
                reason: "r".into(),
            }),
        ];
        let names: Vec<_> = calls.iter().map(Call::method).collect();
        assert_eq!(names, METHODS);
    }

    #[test]
    fn holders_are_named_for_people_and_identified_for_programs() {
        let card = CardStatus {
            serial: Some("0123456789ABCDEF".into()),
            card_type: "NHS CIS".into(),
            atr: "3B".into(),
            piv: true,
            holder: Some("Alex Example".into()),
            holder_id: Some("8c6f4f38-3d0e-4b59-9a52-2b1f0f0c6a11".into()),
            expires_on: None,
            days_left: None,
            expired: false,
        };
        let text = serde_json::to_string(&card).unwrap();
        assert!(
            text.contains(r#""holder":"Alex Example","holder_id":"8c6f4f38-"#),
            "{text}"
        );
        // From an agent that does not send the user id yet.
        let older: CardStatus = serde_json::from_str(
            r#"{"serial":null,"card_type":"PIV","atr":"3B","piv":true,"holder":"Alex Example","expires_on":null,"days_left":null,"expired":false}"#,
        )
        .unwrap();
        assert_eq!(older.holder_id, None);

        // From a service that does not give the holder's name.
        let details: CardDetails = serde_json::from_str(
            r#"{"serial":"FEDCBA9876543210","card_type":"NHS CIS","holder_id":"8c6f4f38-3d0e-4b59-9a52-2b1f0f0c6a11","issued_on":"2017-11-21","certs_expire":null,"cancelled_on":null,"status":"Active","expired":false,"renewals_used":0,"capacity":10}"#,
        )
        .unwrap();
        assert_eq!(details.holder_name, None);
    }

    #[test]
    fn shapes_on_the_wire() {
        let r: Request = serde_json::from_str(r#"{"id":7,"method":"status"}"#).unwrap();
        assert_eq!(r.call, Call::Status);
        let r: Request =
            serde_json::from_str(r#"{"id":8,"method":"login","params":{"reader":"R"}}"#).unwrap();
        assert_eq!(
            r.call,
            Call::Login(LoginParams {
                reader: Some("R".into())
            })
        );
        let reply = Reply {
            id: Some(7),
            outcome: Outcome::Error(
                ErrorObject::new(ErrorCode::WrongPin, "wrong")
                    .with_data(serde_json::json!({"tries_left":2})),
            ),
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            text,
            r#"{"id":7,"error":{"code":"wrong_pin","message":"wrong","data":{"tries_left":2}}}"#
        );
        let back: ServerMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ServerMessage::Reply(reply));
        let ev = Event::CardRemoved {
            reader: "R".into(),
            serial: None,
        };
        let text = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            text,
            r#"{"event":"card_removed","data":{"reader":"R","serial":null}}"#
        );
        assert_eq!(
            serde_json::from_str::<ServerMessage>(&text).unwrap(),
            ServerMessage::Event(ev)
        );
        let ok: ServerMessage =
            serde_json::from_str(r#"{"id":1,"result":{"subscribed":true}}"#).unwrap();
        assert!(matches!(
            ok,
            ServerMessage::Reply(Reply {
                id: Some(1),
                outcome: Outcome::Result(_)
            })
        ));
        assert!(serde_json::from_str::<Request>(r#"{"id":1,"method":"nope"}"#).is_err());
    }
}
