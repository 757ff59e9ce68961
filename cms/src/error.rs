//! The errors of the service, each with a stable code of the API (which carries its HTTP
//! status), written for the person who reads them.

use cms_api::{ErrorCode, OperationKind, OperationState};
use thiserror::Error;

/// Everything the service can refuse or fail at. Every variant has a stable [`code`] that
/// clients match on; the message is for people.
///
/// [`code`]: CmsError::code
#[derive(Debug, Error)]
pub enum CmsError {
    /// The request body is not JSON.
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The request body is JSON, but not of the shape the endpoint takes (missing or unknown
    /// fields, wrong types).
    #[error("the request body does not fit this endpoint: {0}")]
    InvalidRequest(String),
    /// The endpoint exists but not for this method.
    #[error("{0} is not allowed on this endpoint")]
    MethodNotAllowed(String),
    /// The request body is larger than the service accepts.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A field holds a value of the right type but not a usable one.
    #[error("{0}")]
    InvalidField(String),
    /// No card with this serial is registered.
    #[error("no card with serial {0} is registered")]
    UnknownCard(String),
    /// No user with this id.
    #[error("no user with id {0}")]
    UnknownUser(String),
    /// No operation with this id.
    #[error("no operation with id {0}")]
    UnknownOperation(String),
    /// No route for this path or method.
    #[error("there is no endpoint {0}")]
    UnknownEndpoint(String),
    /// The challenge was never issued, or has already been used.
    #[error("this challenge is unknown or has already been used: ask for a new one")]
    UnknownChallenge,
    /// The challenge is past its lifetime.
    #[error("this challenge expired: ask for a new one")]
    ChallengeExpired,
    /// The challenge was issued for another card.
    #[error("this challenge was issued for card {issued_for}, not {presented}")]
    ChallengeMismatch {
        /// The serial the challenge was issued for.
        issued_for: String,
        /// The serial presented with it.
        presented: String,
    },
    /// No session token was presented.
    #[error("this needs a session: authenticate with the card first")]
    Unauthenticated,
    /// The session token is unknown or the session was ended.
    #[error("the session is not valid (ended or unknown): authenticate again")]
    InvalidSession,
    /// The session is past its lifetime.
    #[error("the session expired: authenticate again")]
    SessionExpired,
    /// The ticket is unknown, or its session has ended or expired.
    #[error("the ticket is not valid (unknown, or its session has ended)")]
    InvalidTicket,
    /// The signature does not verify with the certificate's key.
    #[error("the signature does not verify with the card's certificate")]
    BadSignature,
    /// The certificate was not issued by this service's CA.
    #[error("the certificate was not issued by this Card Management Service")]
    UntrustedCertificate,
    /// The certificate was issued by this CA but is not the current one of this card.
    #[error("the certificate is not a current certificate of card {0}")]
    CertificateNotOfCard(String),
    /// The card's certificates have expired.
    #[error("the certificates of card {serial} expired on {expired_on}: a Registration Authority must repair the card")]
    CardExpired {
        /// The card serial.
        serial: String,
        /// The expiry date (YYYY-MM-DD).
        expired_on: String,
    },
    /// The card has been cancelled.
    #[error("card {serial} was cancelled on {cancelled_on}")]
    CardCancelled {
        /// The card serial.
        serial: String,
        /// The cancellation date (YYYY-MM-DD).
        cancelled_on: String,
    },
    /// The session's user may not see or change this.
    #[error("{0}")]
    Forbidden(String),
    /// The session's selected role lacks the activity the operation needs.
    #[error("this needs a role profile with activity {activity} selected{hint}")]
    ActivityRequired {
        /// The activity code.
        activity: &'static str,
        /// What to do about it, if anything.
        hint: String,
    },
    /// The role profile does not belong to the session's user.
    #[error("role profile {0} is not one of this user's")]
    ForeignRole(i64),
    /// The agent version may not self-renew.
    #[error("identity agent version {version} cannot renew smartcards: version {minimum} or later is required")]
    AgentVersionBlocked {
        /// The version the agent reported.
        version: String,
        /// The lowest version allowed.
        minimum: String,
    },
    /// The card cannot take another self-renewal.
    #[error("card {0} is at full capacity and cannot be self-renewed: a Registration Authority must repair it")]
    CardFull(String),
    /// The card has no active certificate to restore.
    #[error("card {0} has no active certificate: a Registration Authority must repair it")]
    NoActiveCertificate(String),
    /// Repair is only for an expired or full card.
    #[error("card {serial} is neither expired nor full, and has no renewal left open (certificates valid until {expires_on}): the holder can self-renew it")]
    CardNotRepairable {
        /// The card serial.
        serial: String,
        /// The expiry date (YYYY-MM-DD).
        expires_on: String,
    },
    /// Another kind of operation is open for this card.
    #[error("a {kind} operation ({id}) is already in progress for this card")]
    OperationInProgress {
        /// The kind of the open operation.
        kind: OperationKind,
        /// Its id.
        id: String,
    },
    /// The step is not possible in the operation's current state.
    #[error("operation {id} is {state}: {step} is not possible now")]
    WrongOperationState {
        /// The operation id.
        id: String,
        /// Its state.
        state: OperationState,
        /// The refused step.
        step: &'static str,
    },
    /// The card did not prove it holds the management key this service derived for it.
    #[error("the card's answer does not match its management key")]
    ManagementKeyRejected,
    /// A management-key answer was relayed without a witness first.
    #[error(
        "no management-key exchange is in progress for this operation: relay the witness first"
    )]
    NoRelayInProgress,
    /// Too many management-key exchanges for one operation.
    #[error("this operation has used its {0} management-key exchanges: start a new operation")]
    RelayLimit(u32),
    /// The certificate signing request cannot be used.
    #[error("the certificate request cannot be used: {0}")]
    BadCsr(String),
    /// A card with this serial already exists.
    #[error("a card with serial {0} is already registered")]
    CardExists(String),
    /// The repairing officer's own card.
    #[error("a Registration Authority cannot repair their own card")]
    OwnCard,
    /// The client asked too many challenges, or failed to sign in too often: it waits.
    #[error(
        "too many requests or failed sign-ins from this address: try again in {retry_after} s"
    )]
    RateLimited {
        /// Whole seconds to wait (at least 1).
        retry_after: u64,
    },
    /// Too many outstanding challenges: the service is under load.
    #[error("the service is busy: try again shortly")]
    Busy,
    /// A storage failure.
    #[error("the service's database failed")]
    Database(#[from] rusqlite::Error),
    /// Any other failure inside the service.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CmsError {
    /// The stable code of this error in the API.
    pub fn code(&self) -> ErrorCode {
        use CmsError::*;
        match self {
            MalformedJson(_) => ErrorCode::MalformedJson,
            InvalidRequest(_) => ErrorCode::InvalidRequest,
            MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            InvalidField(_) => ErrorCode::InvalidField,
            UnknownCard(_) => ErrorCode::UnknownCard,
            UnknownUser(_) => ErrorCode::UnknownUser,
            UnknownOperation(_) => ErrorCode::UnknownOperation,
            UnknownEndpoint(_) => ErrorCode::UnknownEndpoint,
            UnknownChallenge => ErrorCode::UnknownChallenge,
            ChallengeExpired => ErrorCode::ChallengeExpired,
            ChallengeMismatch { .. } => ErrorCode::ChallengeMismatch,
            Unauthenticated => ErrorCode::Unauthenticated,
            InvalidSession => ErrorCode::InvalidSession,
            SessionExpired => ErrorCode::SessionExpired,
            InvalidTicket => ErrorCode::InvalidTicket,
            BadSignature => ErrorCode::BadSignature,
            UntrustedCertificate => ErrorCode::UntrustedCertificate,
            CertificateNotOfCard(_) => ErrorCode::CertificateNotOfCard,
            CardExpired { .. } => ErrorCode::CardExpired,
            CardCancelled { .. } => ErrorCode::CardCancelled,
            Forbidden(_) => ErrorCode::Forbidden,
            ActivityRequired { .. } => ErrorCode::ActivityRequired,
            ForeignRole(_) => ErrorCode::ForeignRole,
            AgentVersionBlocked { .. } => ErrorCode::AgentVersionBlocked,
            CardFull(_) => ErrorCode::CardFull,
            NoActiveCertificate(_) => ErrorCode::NoActiveCertificate,
            CardNotRepairable { .. } => ErrorCode::CardNotRepairable,
            OperationInProgress { .. } => ErrorCode::OperationInProgress,
            WrongOperationState { .. } => ErrorCode::WrongOperationState,
            ManagementKeyRejected => ErrorCode::ManagementKeyRejected,
            NoRelayInProgress => ErrorCode::NoRelayInProgress,
            RelayLimit(_) => ErrorCode::RelayLimit,
            BadCsr(_) => ErrorCode::BadCsr,
            CardExists(_) => ErrorCode::CardExists,
            OwnCard => ErrorCode::OwnCard,
            RateLimited { .. } => ErrorCode::RateLimited,
            Busy => ErrorCode::Busy,
            Database(_) | Internal(_) => ErrorCode::Internal,
        }
    }

    /// A refusal to wait `wait` (rounded up to whole seconds, at least one).
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        CmsError::RateLimited {
            retry_after: secs.max(1),
        }
    }

    /// For [`CmsError::RateLimited`], the seconds to wait.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            CmsError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The HTTP status this error is answered with: its code's.
    pub fn status(&self) -> u16 {
        self.code().status()
    }
}

/// The result type of the service's library.
pub type CmsResult<T> = Result<T, CmsError>;
