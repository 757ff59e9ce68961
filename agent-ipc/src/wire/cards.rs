//! A card at the Card Management Service (`card_details`, `cancel_card`) and the card doctor's
//! report.

use super::CardStatus;
use serde::{Deserialize, Serialize};

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
    /// What it came to.
    pub outcome: CheckOutcome,
    /// In words.
    pub message: String,
}

wire_enum::wire_enum! {
    /// What one check of `doctor` came to, from best to worst (so the worst of a report is its
    /// `max()`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum CheckOutcome {
        /// All is well.
        Ok = "ok",
        /// It was wrong and the agent put it right (`heal`).
        Healed = "healed",
        /// Worth knowing; the card still works (or the agent can heal it).
        Warning = "warning",
        /// Only the Registration Authority can put it right.
        NeedsRa = "needs_ra",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_is_the_wire_name() {
        use CheckOutcome::*;
        for outcome in CheckOutcome::ALL {
            assert_eq!(
                serde_json::json!(outcome.as_str()),
                serde_json::json!(outcome)
            );
        }
        assert!(Ok < Healed && Healed < Warning && Warning < NeedsRa);
    }
}
