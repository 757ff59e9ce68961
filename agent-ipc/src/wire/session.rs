//! The session as clients see it: its state, why it ended, the signed-in user, roles and the
//! ticket.

use serde::{Deserialize, Serialize};

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

impl SessionState {
    /// The state's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::NoCard => "no_card",
            SessionState::CardPresent => "card_present",
            SessionState::WaitingForPin => "waiting_for_pin",
            SessionState::Authenticating => "authenticating",
            SessionState::SignedIn => "signed_in",
            SessionState::Ended => "ended",
        }
    }
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

impl SessionEndReason {
    /// The reason's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEndReason::CardRemoved => "card_removed",
            SessionEndReason::CardChanged => "card_changed",
            SessionEndReason::CertificateChanged => "certificate_changed",
            SessionEndReason::ReaderRemoved => "reader_removed",
            SessionEndReason::Logout => "logout",
            SessionEndReason::CmsSessionExpired => "cms_session_expired",
            SessionEndReason::AgentShutdown => "agent_shutdown",
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_is_the_wire_name() {
        use SessionState::*;
        for state in [
            NoCard,
            CardPresent,
            WaitingForPin,
            Authenticating,
            SignedIn,
            Ended,
        ] {
            assert_eq!(serde_json::json!(state.as_str()), serde_json::json!(state));
        }
        use SessionEndReason::*;
        let reasons = [
            CardRemoved,
            CardChanged,
            CertificateChanged,
            ReaderRemoved,
            Logout,
            CmsSessionExpired,
            AgentShutdown,
        ];
        for reason in reasons {
            assert_eq!(
                serde_json::json!(reason.as_str()),
                serde_json::json!(reason)
            );
        }
    }
}
