//! The agent's state as `status` and `readers` show it: the smartcard service, the readers and
//! the cards in them.

use super::SessionStatus;
use serde::{Deserialize, Serialize};

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
