//! Every type of the JSON API (`cms/API.md`), shared by the service and the typed client, and
//! the exact bytes a card signs to authenticate and to confirm a renewal.
//!
//! Binary fields (certificates, signatures, requests, witnesses) are standard base64; tokens,
//! tickets and challenges are base64url without padding.

use crate::{ErrorCode, OperationKind, OperationState};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The version of this API; it is the `/v1` of every path.
pub const API_VERSION: u32 = 1;

/// What the card signs to authenticate: a fixed label, the card serial and the challenge.
pub fn auth_message(serial: &str, challenge: &[u8]) -> Vec<u8> {
    let mut m = b"identity-agent cms authentication v1\0".to_vec();
    m.extend_from_slice(serial.as_bytes());
    m.push(0);
    m.extend_from_slice(challenge);
    m
}

/// What the card signs with its new key to confirm an operation.
pub fn confirm_message(operation_id: &str, challenge: &[u8]) -> Vec<u8> {
    let mut m = b"identity-agent cms confirmation v1\0".to_vec();
    m.extend_from_slice(operation_id.as_bytes());
    m.push(0);
    m.extend_from_slice(challenge);
    m
}

/// An error answer: `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a message for people.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Stable, machine-readable (`card_expired`).
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// With `rate_limited`: how many seconds to wait before trying again (the same as the
    /// answer's `Retry-After` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// `POST /v1/auth/challenge`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// The card serial, 16 hex digits.
    pub serial: String,
}

/// A single-use challenge for one card.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Challenge {
    /// The card it is for.
    pub serial: String,
    /// 32 random bytes, base64url.
    pub challenge: String,
    /// Until when it can be answered (Unix seconds).
    pub expires_at: i64,
}

/// `POST /v1/auth/session`: the challenge signed by the card's 9A key, and its certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The card serial.
    pub serial: String,
    /// The challenge as received.
    pub challenge: String,
    /// The signature over [`auth_message`], base64.
    pub signature: String,
    /// The card's certificate, DER, base64.
    pub certificate: String,
}

/// A user as the API shows them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserView {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
}

/// A role profile as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoleView {
    /// Its id, for role selection.
    pub id: i64,
    /// The organisation.
    pub organisation: String,
    /// The job role.
    pub job_role: String,
    /// Activity codes (`B0267` …).
    pub activities: Vec<String>,
}

/// A session: who, with which card, which roles.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionView {
    /// The authenticated user.
    pub user: UserView,
    /// The card the session is bound to.
    pub card_serial: String,
    /// The user's role profiles.
    pub roles: Vec<RoleView>,
    /// The selected role profile (selected at once when the user has exactly one).
    pub selected_role: Option<i64>,
    /// End of the session (Unix seconds).
    pub expires_at: i64,
}

/// A new session: the bearer token for the agent and the ticket for relying applications.
#[derive(Clone, Serialize, Deserialize)]
pub struct SessionCreated {
    /// The bearer token (`Authorization: Bearer …`), base64url.
    pub session_token: Zeroizing<String>,
    /// The ticket relying applications validate, base64url; it grants nothing else.
    pub ticket: Zeroizing<String>,
    /// The session.
    pub session: SessionView,
}

impl std::fmt::Debug for SessionCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCreated")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/session/role`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectRoleRequest {
    /// The role profile to select.
    pub role_id: i64,
}

/// `POST /v1/tickets/validate`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    /// The ticket to check.
    pub ticket: Zeroizing<String>,
}

impl std::fmt::Debug for TicketRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketRequest { <redacted> }")
    }
}

/// A valid ticket: who it speaks for, with which role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TicketValidation {
    /// Always true: an invalid ticket is an error answer.
    pub valid: bool,
    /// The user.
    pub user: UserView,
    /// The card the session is bound to.
    pub card_serial: String,
    /// The selected role, if one is.
    pub role: Option<RoleView>,
    /// End of the session (Unix seconds).
    pub expires_at: i64,
}

/// One row of the Smartcard Details table of a Registration Authority's card register.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SmartcardDetails {
    /// 16 hex digits.
    pub serial: String,
    /// Always `Smartcard`.
    pub format: String,
    /// The card type (`Gemplus`, `Oberthur` …).
    pub card_type: String,
    /// The holder's user id.
    pub holder_id: String,
    /// The holder's name, for people (absent from services older than this field).
    #[serde(default)]
    pub holder_name: Option<String>,
    /// Issue date, `YYYY-MM-DD`.
    pub issued_on: String,
    /// Certificate expiry, `YYYY-MM-DD` (none before the first certificate).
    pub certs_expire: Option<String>,
    /// Cancellation date, `YYYY-MM-DD`; none while active.
    pub cancelled_on: Option<String>,
    /// `Active` or `Cancelled`.
    pub status: String,
    /// Whether the certificates have expired.
    pub expired: bool,
    /// Self-renewals since issue or the last repair.
    pub renewals_used: u32,
    /// Self-renewals the card takes before it is full.
    pub capacity: u32,
    /// The row as the register prints it: serial, format, type, issued on (`21-Nov-2017`),
    /// certs expire, cancelled on (or `Active`).
    pub row: [String; 6],
}

/// `GET /v1/cards/{serial}/certificate`: the card's current certificate, public like any
/// certificate, so an agent can write it back to a card that lost it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CardCertificate {
    /// 16 hex digits.
    pub serial: String,
    /// The certificate, DER in base64.
    pub certificate: String,
}

/// `GET /v1/users/{id}/cards`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserCards {
    /// The user.
    pub user: UserView,
    /// Their cards, oldest first.
    pub cards: Vec<SmartcardDetails>,
}

/// `POST /v1/cards`: a new card record (RA).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCardRequest {
    /// The card serial.
    pub serial: String,
    /// The card type.
    pub card_type: String,
    /// The holder.
    pub user_id: String,
    /// The algorithm identifier of the management key the card was given (3 = 3DES,
    /// 8 = AES-128, 10 = AES-192, 12 = AES-256); AES-128 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_algorithm: Option<u8>,
}

/// `POST /v1/cards/{serial}/cancel` (RA).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelCardRequest {
    /// Why (lost, damaged, replaced …).
    pub reason: String,
}

/// `POST /v1/operations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartOperationRequest {
    /// The wire name of an [`OperationKind`]: `renew` or `restore` (the holder) or `repair`
    /// (an RA with B0267). Text rather than the enum, so that the service answers a kind it
    /// does not know with `invalid_field` (as `cms/API.md` says), not as a body of the wrong
    /// shape.
    pub kind: String,
    /// The card.
    pub serial: String,
    /// The identity agent's version, checked against the version policy.
    pub agent_version: String,
}

/// A renewal or repair and how far it got.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OperationView {
    /// The operation's id.
    pub id: String,
    /// Renew, repair or restore.
    pub kind: OperationKind,
    /// The card.
    pub serial: String,
    /// Where it is.
    pub state: OperationState,
    /// Whether this answer resumed an operation that was already open.
    pub resumed: bool,
    /// The certificate issued, DER base64, once there is one.
    pub certificate: Option<String>,
    /// What the card signs with its new key to confirm ([`confirm_message`]), base64url.
    pub confirm_challenge: Option<String>,
    /// Whether the card's PUK was released (repair only).
    pub puk_released: bool,
    /// The algorithm identifier of the card's management key, in which its 9B
    /// authentication is relayed (3 = 3DES, 8 = AES-128, 10 = AES-192, 12 = AES-256).
    pub management_algorithm: u8,
    /// Start (Unix seconds).
    pub created_at: i64,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

/// The answer to `POST /v1/operations`: the operation, and for a renewal the token its steps
/// are taken with.
#[derive(Clone, Serialize, Deserialize)]
pub struct OperationStarted {
    /// The operation.
    #[serde(flatten)]
    pub operation: OperationView,
    /// A renewal's own bearer token, base64url: it works on this operation only (read it, relay
    /// the management key, submit the CSR, confirm, abort) and lives as long as a session, so
    /// an interrupted renewal is finished with it after the holder's session has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for OperationStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationStarted")
            .field("operation", &self.operation)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/operations/{id}/management-key/witness`: the card's encrypted witness.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessRequest {
    /// The management key algorithm the card uses ([`OperationView::management_algorithm`]).
    pub algorithm: u8,
    /// The encrypted witness, base64.
    pub witness: String,
}

/// The service's answer to the witness, to be sent to the card.
#[derive(Clone, Serialize, Deserialize)]
pub struct WitnessAnswerView {
    /// The decrypted witness, base64.
    pub decrypted_witness: Zeroizing<String>,
    /// The service's challenge for the card, base64.
    pub challenge: String,
}

impl std::fmt::Debug for WitnessAnswerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WitnessAnswerView { <redacted> }")
    }
}

/// `POST /v1/operations/{id}/management-key/response`: the card's encryption of the challenge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeAnswerRequest {
    /// The card's answer, base64.
    pub response: String,
}

/// The card proved it holds the management key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelayResult {
    /// Always true: a failure is an error answer.
    pub authenticated: bool,
}

/// `POST /v1/operations/{id}/csr`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrRequest {
    /// The PKCS #10 request signed by the card's new key, DER base64.
    pub csr: String,
}

/// `POST /v1/operations/{id}/confirm`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// The new key's signature over [`confirm_message`], base64.
    pub signature: String,
}

/// `POST /v1/operations/{id}/puk` (repair only): the card's PUK for the holder's new PIN.
#[derive(Clone, Serialize, Deserialize)]
pub struct PukRelease {
    /// The PUK.
    pub puk: Zeroizing<String>,
    /// The PUK the card must be changed to before the repair is confirmed.
    pub next_puk: Zeroizing<String>,
}

impl std::fmt::Debug for PukRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PukRelease { <redacted> }")
    }
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The API version.
    pub api_version: u32,
    /// The lowest agent version allowed to self-renew.
    pub minimum_agent_version: String,
}

/// The two base64 forms of the API.
pub mod b64 {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;

    /// Standard base64, for binary fields.
    pub fn encode(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    /// Decodes standard base64.
    pub fn decode(text: &str) -> Option<Vec<u8>> {
        STANDARD.decode(text.trim()).ok()
    }

    /// base64url without padding, for tokens, tickets and challenges.
    pub fn encode_url(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes base64url without padding.
    pub fn decode_url(text: &str) -> Option<Vec<u8>> {
        URL_SAFE_NO_PAD.decode(text.trim()).ok()
    }
}
