//! The kinds of card operation the API runs and the states an operation goes through:
//! `started → certificate_issued → completed`, or `aborted`.

crate::wire_enum! {
    /// Renewal or restoration by the holder, or repair by a Registration Authority.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum OperationKind {
        /// Self-renewal by the card holder.
        Renew = "renew",
        /// Repair of an expired or full card by a Registration Authority.
        Repair = "repair",
        /// The card's current certificate written back to a card that lost it, by the holder.
        Restore = "restore",
    }
    /// A name that is not an operation kind.
    pub struct UnknownOperationKind("is not an operation kind (renew, repair or restore)");
}

crate::wire_enum! {
    /// Where an operation is. `Started → CertificateIssued → Completed`, or `Aborted`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum OperationState {
        /// Open; no certificate issued yet.
        Started = "started",
        /// A certificate is issued and waits for the card's proof.
        CertificateIssued = "certificate_issued",
        /// The card proved its new key; the certificate is the card's current one.
        Completed = "completed",
        /// Ended without completing (aborted, card cancelled, or replaced by a repair).
        Aborted = "aborted",
    }
    /// A name that is not an operation state.
    pub struct UnknownOperationState("is not an operation state");
}

impl OperationState {
    /// Whether the operation still takes steps.
    pub fn is_open(self) -> bool {
        match self {
            Self::Started | Self::CertificateIssued => true,
            Self::Completed | Self::Aborted => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_states_read_back_in_their_wire_names() {
        for kind in OperationKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<OperationKind>(&json).unwrap(), kind);
            assert_eq!(kind.as_str().parse::<OperationKind>(), Ok(kind));
        }
        for state in OperationState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
            assert_eq!(
                serde_json::from_str::<OperationState>(&json).unwrap(),
                state
            );
            assert_eq!(state.as_str().parse::<OperationState>(), Ok(state));
        }
        assert!("reissue".parse::<OperationKind>().is_err());
        assert!("superseded".parse::<OperationState>().is_err());
        assert!(OperationState::CertificateIssued.is_open());
        assert!(!OperationState::Aborted.is_open());
    }
}
