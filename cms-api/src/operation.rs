//! The kinds of card operation the API runs and the states an operation goes through:
//! `started → certificate_issued → completed`, or `aborted`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Renewal or restoration by the holder, or repair by a Registration Authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Self-renewal by the card holder.
    Renew,
    /// Repair of an expired or full card by a Registration Authority.
    Repair,
    /// The card's current certificate written back to a card that lost it, by the holder.
    Restore,
}

impl OperationKind {
    /// Every kind.
    pub const ALL: [OperationKind; 3] = [Self::Renew, Self::Repair, Self::Restore];

    /// The kind's name on the wire (`renew`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Renew => "renew",
            Self::Repair => "repair",
            Self::Restore => "restore",
        }
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an operation kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an operation kind (renew, repair or restore)")]
pub struct UnknownOperationKind(pub String);

impl FromStr for OperationKind {
    type Err = UnknownOperationKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownOperationKind(s.to_owned()))
    }
}

/// Where an operation is. `Started → CertificateIssued → Completed`, or `Aborted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    /// Open; no certificate issued yet.
    Started,
    /// A certificate is issued and waits for the card's proof.
    CertificateIssued,
    /// The card proved its new key; the certificate is the card's current one.
    Completed,
    /// Ended without completing (aborted, card cancelled, or replaced by a repair).
    Aborted,
}

impl OperationState {
    /// Every state.
    pub const ALL: [OperationState; 4] = [
        Self::Started,
        Self::CertificateIssued,
        Self::Completed,
        Self::Aborted,
    ];

    /// The state's name on the wire (`certificate_issued`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::CertificateIssued => "certificate_issued",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
        }
    }

    /// Whether the operation still takes steps.
    pub fn is_open(self) -> bool {
        match self {
            Self::Started | Self::CertificateIssued => true,
            Self::Completed | Self::Aborted => false,
        }
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an operation state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an operation state")]
pub struct UnknownOperationState(pub String);

impl FromStr for OperationState {
    type Err = UnknownOperationState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownOperationState(s.to_owned()))
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
