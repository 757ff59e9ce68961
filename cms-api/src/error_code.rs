//! The stable codes of the API's error answers (`{"error": {"code": …}}`) and the HTTP status
//! each is answered with, as `cms/API.md` lists them. The service picks one for every refusal;
//! a client matches on them, exhaustively.

crate::wire_enum! {
    /// A stable, machine-readable error code of the API; on the wire as its snake-case name
    /// ([`ErrorCode::as_str`]). Declared in the order of `cms/API.md`'s table, which is the
    /// order of [`ErrorCode::ALL`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ErrorCode {
        /// The body is not JSON.
        MalformedJson = "malformed_json",
        /// JSON of the wrong shape: not an object, missing or unknown fields, wrong types.
        InvalidRequest = "invalid_request",
        /// A field of the right type but unusable (a bad serial, bad base64, an unknown kind …).
        InvalidField = "invalid_field",
        /// The challenge was issued for another card.
        ChallengeMismatch = "challenge_mismatch",
        /// The certificate request cannot be used.
        BadCsr = "bad_csr",
        /// No session token was presented.
        Unauthenticated = "unauthenticated",
        /// The session token is unknown, or its session ended.
        InvalidSession = "invalid_session",
        /// The session is past its lifetime.
        SessionExpired = "session_expired",
        /// The ticket is unknown, or its session ended or expired.
        InvalidTicket = "invalid_ticket",
        /// The challenge was never issued, or was already used.
        UnknownChallenge = "unknown_challenge",
        /// The challenge is past its lifetime.
        ChallengeExpired = "challenge_expired",
        /// The signature does not verify with the certificate's key.
        BadSignature = "bad_signature",
        /// The certificate was not issued by the service's CA.
        UntrustedCertificate = "untrusted_certificate",
        /// The certificate is the CA's but not a current certificate of the card.
        CertificateNotOfCard = "certificate_not_of_card",
        /// The card's certificates have expired.
        CardExpired = "card_expired",
        /// The card was cancelled.
        CardCancelled = "card_cancelled",
        /// The session's user may not see or do this.
        Forbidden = "forbidden",
        /// The selected role lacks the activity the call needs.
        ActivityRequired = "activity_required",
        /// The role profile is not the session user's.
        ForeignRole = "foreign_role",
        /// The agent's version may not renew cards.
        AgentVersionBlocked = "agent_version_blocked",
        /// The card's answer in the relayed 9B exchange is wrong.
        ManagementKeyRejected = "management_key_rejected",
        /// A Registration Authority tried to repair their own card.
        OwnCard = "own_card",
        /// No card with this serial is registered.
        UnknownCard = "unknown_card",
        /// No user with this id.
        UnknownUser = "unknown_user",
        /// No operation with this id.
        UnknownOperation = "unknown_operation",
        /// No endpoint at this path.
        UnknownEndpoint = "unknown_endpoint",
        /// The endpoint does not take this method.
        MethodNotAllowed = "method_not_allowed",
        /// The card can take no more self-renewals.
        CardFull = "card_full",
        /// The card has no certificate to restore.
        NoActiveCertificate = "no_active_certificate",
        /// Repair of a card that is neither expired nor full.
        CardNotRepairable = "card_not_repairable",
        /// Another kind of operation is open for the card.
        OperationInProgress = "operation_in_progress",
        /// The step is not possible in the operation's state.
        WrongOperationState = "wrong_operation_state",
        /// A 9B answer without a relayed witness first.
        NoRelayInProgress = "no_relay_in_progress",
        /// A card with this serial is already registered.
        CardExists = "card_exists",
        /// The body is larger than the service takes.
        PayloadTooLarge = "payload_too_large",
        /// The operation used all its relayed 9B exchanges.
        RelayLimit = "relay_limit",
        /// The client asked too often (challenges) or failed to sign in too often: it may try
        /// again after the answer's `retry_after` seconds.
        RateLimited = "rate_limited",
        /// The service failed.
        Internal = "internal",
        /// The service is busy.
        Busy = "busy",
    }
    /// A code this version of the API does not define.
    pub struct UnknownErrorCode("is not an error code of this API");
}

impl ErrorCode {
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
            Self::RelayLimit | Self::RateLimited => 429,
            Self::Internal => 500,
            Self::Busy => 503,
        }
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
