//! The stable codes of the API's error answers (`{"error": {"code": …}}`) and the HTTP status
//! each is answered with, as `cms/API.md` lists them. The service picks one for every refusal;
//! a client matches on them, exhaustively.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A stable, machine-readable error code of the API; on the wire as its snake-case name
/// ([`ErrorCode::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON.
    MalformedJson,
    /// JSON of the wrong shape: not an object, missing or unknown fields, wrong types.
    InvalidRequest,
    /// A field of the right type but unusable (a bad serial, bad base64, an unknown kind …).
    InvalidField,
    /// The challenge was issued for another card.
    ChallengeMismatch,
    /// The certificate request cannot be used.
    BadCsr,
    /// No session token was presented.
    Unauthenticated,
    /// The session token is unknown, or its session ended.
    InvalidSession,
    /// The session is past its lifetime.
    SessionExpired,
    /// The ticket is unknown, or its session ended or expired.
    InvalidTicket,
    /// The challenge was never issued, or was already used.
    UnknownChallenge,
    /// The challenge is past its lifetime.
    ChallengeExpired,
    /// The signature does not verify with the certificate's key.
    BadSignature,
    /// The certificate was not issued by the service's CA.
    UntrustedCertificate,
    /// The certificate is the CA's but not a current certificate of the card.
    CertificateNotOfCard,
    /// The card's certificates have expired.
    CardExpired,
    /// The card was cancelled.
    CardCancelled,
    /// The session's user may not see or do this.
    Forbidden,
    /// The selected role lacks the activity the call needs.
    ActivityRequired,
    /// The role profile is not the session user's.
    ForeignRole,
    /// The agent's version may not renew cards.
    AgentVersionBlocked,
    /// The card's answer in the relayed 9B exchange is wrong.
    ManagementKeyRejected,
    /// A Registration Authority tried to repair their own card.
    OwnCard,
    /// No card with this serial is registered.
    UnknownCard,
    /// No user with this id.
    UnknownUser,
    /// No operation with this id.
    UnknownOperation,
    /// No endpoint at this path.
    UnknownEndpoint,
    /// The endpoint does not take this method.
    MethodNotAllowed,
    /// The card can take no more self-renewals.
    CardFull,
    /// The card has no certificate to restore.
    NoActiveCertificate,
    /// Repair of a card that is neither expired nor full.
    CardNotRepairable,
    /// Another kind of operation is open for the card.
    OperationInProgress,
    /// The step is not possible in the operation's state.
    WrongOperationState,
    /// A 9B answer without a relayed witness first.
    NoRelayInProgress,
    /// A card with this serial is already registered.
    CardExists,
    /// The body is larger than the service takes.
    PayloadTooLarge,
    /// The operation used all its relayed 9B exchanges.
    RelayLimit,
    /// The service failed.
    Internal,
    /// The service is busy.
    Busy,
}

impl ErrorCode {
    /// Every code, in the order of `cms/API.md`'s table.
    pub const ALL: [ErrorCode; 38] = [
        Self::MalformedJson,
        Self::InvalidRequest,
        Self::InvalidField,
        Self::ChallengeMismatch,
        Self::BadCsr,
        Self::Unauthenticated,
        Self::InvalidSession,
        Self::SessionExpired,
        Self::InvalidTicket,
        Self::UnknownChallenge,
        Self::ChallengeExpired,
        Self::BadSignature,
        Self::UntrustedCertificate,
        Self::CertificateNotOfCard,
        Self::CardExpired,
        Self::CardCancelled,
        Self::Forbidden,
        Self::ActivityRequired,
        Self::ForeignRole,
        Self::AgentVersionBlocked,
        Self::ManagementKeyRejected,
        Self::OwnCard,
        Self::UnknownCard,
        Self::UnknownUser,
        Self::UnknownOperation,
        Self::UnknownEndpoint,
        Self::MethodNotAllowed,
        Self::CardFull,
        Self::NoActiveCertificate,
        Self::CardNotRepairable,
        Self::OperationInProgress,
        Self::WrongOperationState,
        Self::NoRelayInProgress,
        Self::CardExists,
        Self::PayloadTooLarge,
        Self::RelayLimit,
        Self::Internal,
        Self::Busy,
    ];

    /// The code on the wire (`card_expired`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidField => "invalid_field",
            Self::ChallengeMismatch => "challenge_mismatch",
            Self::BadCsr => "bad_csr",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidSession => "invalid_session",
            Self::SessionExpired => "session_expired",
            Self::InvalidTicket => "invalid_ticket",
            Self::UnknownChallenge => "unknown_challenge",
            Self::ChallengeExpired => "challenge_expired",
            Self::BadSignature => "bad_signature",
            Self::UntrustedCertificate => "untrusted_certificate",
            Self::CertificateNotOfCard => "certificate_not_of_card",
            Self::CardExpired => "card_expired",
            Self::CardCancelled => "card_cancelled",
            Self::Forbidden => "forbidden",
            Self::ActivityRequired => "activity_required",
            Self::ForeignRole => "foreign_role",
            Self::AgentVersionBlocked => "agent_version_blocked",
            Self::ManagementKeyRejected => "management_key_rejected",
            Self::OwnCard => "own_card",
            Self::UnknownCard => "unknown_card",
            Self::UnknownUser => "unknown_user",
            Self::UnknownOperation => "unknown_operation",
            Self::UnknownEndpoint => "unknown_endpoint",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::CardFull => "card_full",
            Self::NoActiveCertificate => "no_active_certificate",
            Self::CardNotRepairable => "card_not_repairable",
            Self::OperationInProgress => "operation_in_progress",
            Self::WrongOperationState => "wrong_operation_state",
            Self::NoRelayInProgress => "no_relay_in_progress",
            Self::CardExists => "card_exists",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RelayLimit => "relay_limit",
            Self::Internal => "internal",
            Self::Busy => "busy",
        }
    }

    /// The HTTP status an answer with this code has.
    pub fn status(self) -> u16 {
        match self {
            Self::MalformedJson
            | Self::InvalidRequest
            | Self::InvalidField
            | Self::ChallengeMismatch
            | Self::BadCsr => 400,
            Self::Unauthenticated
            | Self::InvalidSession
            | Self::SessionExpired
            | Self::InvalidTicket
            | Self::UnknownChallenge
            | Self::ChallengeExpired
            | Self::BadSignature
            | Self::UntrustedCertificate
            | Self::CertificateNotOfCard => 401,
            Self::CardExpired
            | Self::CardCancelled
            | Self::Forbidden
            | Self::ActivityRequired
            | Self::ForeignRole
            | Self::AgentVersionBlocked
            | Self::ManagementKeyRejected
            | Self::OwnCard => 403,
            Self::UnknownCard
            | Self::UnknownUser
            | Self::UnknownOperation
            | Self::UnknownEndpoint => 404,
            Self::MethodNotAllowed => 405,
            Self::CardFull
            | Self::NoActiveCertificate
            | Self::CardNotRepairable
            | Self::OperationInProgress
            | Self::WrongOperationState
            | Self::NoRelayInProgress
            | Self::CardExists => 409,
            Self::PayloadTooLarge => 413,
            Self::RelayLimit => 429,
            Self::Internal => 500,
            Self::Busy => 503,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code this version of the API does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an error code of this API")]
pub struct UnknownErrorCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|code| code.as_str() == s)
            .ok_or_else(|| UnknownErrorCode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_in_its_wire_name() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
        }
        assert!("reissue".parse::<ErrorCode>().is_err());
    }
}
