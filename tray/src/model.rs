//! What the tray shows, derived purely from what the agent said: its status, the user's roles,
//! the operation running and the last failure. [`AgentView`] is fed by the agent link;
//! [`AgentView::view`] gives the icon, tooltip and menu as plain data ([`TrayView`]), so every
//! state is testable without a desktop.

use crate::dates::display_date;
use crate::icons::IconKind;
use agent_ipc::{
    CardStatus, ErrorCode, ErrorObject, Event, HelloResult, OperationStatus, Roles, SessionState,
    Status,
};

/// The tray's knowledge of the agent, from the socket API only.
#[derive(Debug, Clone, Default)]
pub struct AgentView {
    /// What `hello` said, while connected; `None` while the agent is not running.
    pub hello: Option<HelloResult>,
    /// Why the last connection attempt failed, while not connected.
    pub unreachable: Option<String>,
    /// The latest `status`.
    pub status: Option<Status>,
    /// The signed-in user's roles, once fetched.
    pub roles: Option<Roles>,
    /// The renew, repair or restore running now.
    pub operation: Option<OperationStatus>,
    /// The last sign-in or operation failure, until the card or session changes.
    pub failure: Option<ErrorObject>,
}

/// How many days before expiry the tray shows "expiring soon" (the agent's default window).
pub const DEFAULT_WARNING_DAYS: i64 = 90;

impl AgentView {
    /// Forgets everything the agent said: it is not running (`why` says how connecting failed).
    pub fn disconnected(&mut self, why: String) {
        *self = AgentView {
            unreachable: Some(why),
            ..AgentView::default()
        };
    }

    /// A new connection: `hello` and the first status.
    pub fn connected(&mut self, hello: HelloResult, status: Status) {
        *self = AgentView {
            hello: Some(hello),
            status: Some(status),
            ..AgentView::default()
        };
    }

    /// Takes in one event (the link refreshes `status` after events; this keeps what status
    /// does not carry: the operation and the last failure).
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::OperationProgress { operation } => self.operation = Some(operation.clone()),
            Event::OperationResult { operation, error } => {
                if self
                    .operation
                    .as_ref()
                    .is_none_or(|op| op.id == operation.id)
                {
                    self.operation = None;
                }
                self.failure = error.clone();
            }
            Event::LoginFailed { error, .. } => self.failure = Some(error.clone()),
            Event::SessionStarted { .. } | Event::CardInserted { .. } => self.failure = None,
            Event::CardRemoved { .. } => {
                self.failure = None;
                self.roles = None;
            }
            Event::SessionEnded { .. } => self.roles = None,
            Event::RoleChanged { role } => {
                if let Some(roles) = &mut self.roles {
                    roles.selected = Some(role.id.clone());
                }
            }
            _ => {}
        }
    }

    /// Whether the agent serves `method` (from `hello`'s capabilities).
    pub fn can(&self, method: &str) -> bool {
        self.hello
            .as_ref()
            .is_some_and(|h| h.capabilities.iter().any(|c| c == method))
    }

    /// The session's state, when connected.
    pub fn session_state(&self) -> Option<SessionState> {
        self.status.as_ref().map(|s| s.session.state)
    }

    /// The card that matters: the session's, else the first PIV card in a reader, else any.
    pub fn card(&self) -> Option<&CardStatus> {
        let status = self.status.as_ref()?;
        if let Some(reader) = &status.session.reader {
            if let Some(card) = status
                .readers
                .iter()
                .find(|r| &r.name == reader)
                .and_then(|r| r.card.as_ref())
            {
                return Some(card);
            }
        }
        let cards = || status.readers.iter().filter_map(|r| r.card.as_ref());
        cards().find(|c| c.piv).or_else(|| cards().next())
    }

    /// The icon for the agent's state.
    pub fn icon(&self, warning_days: i64) -> IconKind {
        let Some(status) = (self.hello.is_some())
            .then_some(self.status.as_ref())
            .flatten()
        else {
            return IconKind::AgentNotRunning;
        };
        if self.operation.is_some() {
            return IconKind::InProgress;
        }
        if !status.pcsc.available {
            return IconKind::Error;
        }
        if status.readers.is_empty() {
            return IconKind::NoReader;
        }
        let state = status.session.state;
        if matches!(
            state,
            SessionState::WaitingForPin | SessionState::Authenticating
        ) {
            return IconKind::SigningIn;
        }
        let card = self.card();
        let failure = self.failure.as_ref().map(|f| f.code);
        if card.is_some_and(|c| c.expired)
            || matches!(
                failure,
                Some(
                    ErrorCode::PinBlocked
                        | ErrorCode::CertificateExpired
                        | ErrorCode::CardCancelled
                )
            )
        {
            return IconKind::NeedsRa;
        }
        if failure.is_some_and(|code| code != ErrorCode::PinCancelled) {
            return IconKind::Error;
        }
        match (state, card) {
            (SessionState::SignedIn, Some(card))
                if card.days_left.is_some_and(|d| d <= warning_days) =>
            {
                IconKind::ExpiringSoon
            }
            (SessionState::SignedIn, _) => IconKind::SignedIn,
            (_, Some(_)) => IconKind::CardInserted,
            (_, None) => IconKind::NoCard,
        }
    }

    /// Everything the tray shows.
    pub fn view(&self, warning_days: i64, portal_url: Option<&str>) -> TrayView {
        let icon = self.icon(warning_days);
        let connected = self.hello.is_some() && self.status.is_some();
        let state = self.session_state();
        let signed_in = state == Some(SessionState::SignedIn);
        let card = self.card();

        let mut lines = vec![self.headline(icon)];
        let mut tooltip = Vec::new();
        if let Some(status) = self.status.as_ref().filter(|_| connected) {
            let user = status.session.user.as_ref().map(|u| u.name.clone());
            if let Some(name) = user.or_else(|| card.and_then(|c| c.holder.clone())) {
                tooltip.push(name);
            }
            if let Some(role) = &status.session.role {
                tooltip.push(format!("{} — {}", role.job_role, role.organisation));
            }
            if let Some(card) = card {
                tooltip.push(format!(
                    "Card {} ({})",
                    card.serial.as_deref().unwrap_or("without serial"),
                    card.card_type
                ));
                tooltip.push(expiry_line(card));
            }
            if let Some(op) = &self.operation {
                tooltip.push(op.message.clone());
            }
            if let Some(f) = &self.failure {
                tooltip.push(f.message.clone());
            }
        } else if let Some(why) = &self.unreachable {
            tooltip.push(why.clone());
        }
        if connected {
            lines.extend(tooltip.iter().cloned());
        } else {
            lines.push("Reconnecting by itself".into());
        }

        let sign = if signed_in {
            Toggle::new("Sign out", true)
        } else {
            let busy = matches!(
                state,
                Some(SessionState::WaitingForPin | SessionState::Authenticating)
            );
            Toggle::new(
                if busy { "Signing in…" } else { "Sign in" },
                connected && card.is_some_and(|c| c.piv) && !busy,
            )
        };

        let roles = match (&self.roles, signed_in) {
            (Some(roles), true) => roles
                .roles
                .iter()
                .map(|r| RoleEntry {
                    id: r.id.clone(),
                    label: format!("{} — {}", r.job_role, r.organisation),
                    checked: roles.selected.as_deref() == Some(r.id.as_str()),
                })
                .collect(),
            _ => Vec::new(),
        };

        TrayView {
            icon,
            title: format!("Identity Agent — {}", lines[0]),
            tooltip: tooltip.join("\n"),
            status_lines: lines,
            sign,
            roles_enabled: !roles.is_empty(),
            roles,
            renew: self.renew_toggle(),
            card_details: Toggle::new(
                "Card details",
                connected && card.is_some() && self.can("card_details"),
            ),
            check_card: Toggle::new(
                "Check card (doctor)",
                connected && card.is_some() && self.can("doctor") && self.operation.is_none(),
            ),
            portal: match portal_url {
                Some(url) => Toggle::new("Open portal", !url.is_empty()),
                None => Toggle::new("Open portal (no portal configured)", false),
            },
        }
    }

    /// The first status line: the state in words.
    fn headline(&self, icon: IconKind) -> String {
        match icon {
            IconKind::AgentNotRunning => "Agent not running".into(),
            IconKind::InProgress => match &self.operation {
                Some(op) => format!("{} in progress", capitalised(op.kind.as_str())),
                None => "Working…".into(),
            },
            IconKind::Error => match (&self.status, &self.failure) {
                (Some(s), _) if !s.pcsc.available => s
                    .pcsc
                    .message
                    .clone()
                    .unwrap_or_else(|| "The smartcard service is not running".into()),
                (_, Some(f)) => error_headline(f),
                _ => "Error".into(),
            },
            IconKind::NoReader => "No card reader".into(),
            IconKind::NoCard => "No smartcard".into(),
            IconKind::CardInserted => "Smartcard inserted — not signed in".into(),
            IconKind::SigningIn => "Signing in — enter your passcode".into(),
            IconKind::SignedIn => "Signed in".into(),
            IconKind::ExpiringSoon => "Signed in — certificate expires soon".into(),
            IconKind::NeedsRa => match &self.failure {
                Some(f) if f.code == ErrorCode::PinBlocked => {
                    "PIN blocked — contact your Registration Authority".into()
                }
                Some(f) if f.code == ErrorCode::CardCancelled => {
                    "Card cancelled — contact your Registration Authority".into()
                }
                _ => "Certificate expired — contact your Registration Authority".into(),
            },
        }
    }

    fn renew_toggle(&self) -> Toggle {
        const LABEL: &str = "Renew certificates";
        let reason = if self.hello.is_none() {
            Some("agent not running")
        } else if !self.can("renew") {
            Some("this agent cannot renew")
        } else if self.operation.is_some() {
            Some("an operation is running")
        } else if self.card().is_some_and(|c| c.expired) {
            Some("expired: contact your RA")
        } else if self.session_state() != Some(SessionState::SignedIn) {
            Some("sign in first")
        } else {
            None
        };
        match reason {
            Some(why) => Toggle::new(format!("{LABEL} ({why})"), false),
            None => Toggle::new(LABEL, true),
        }
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn error_headline(error: &ErrorObject) -> String {
    match error.code {
        ErrorCode::CmsUnreachable => "The Card Management Service cannot be reached".into(),
        ErrorCode::WrongPin => error.message.clone(),
        _ => format!("Error: {}", error.message),
    }
}

/// "Certificate expires 21-Nov-2026 (30 days left)", or that it has expired.
pub fn expiry_line(card: &CardStatus) -> String {
    match (&card.expires_on, card.days_left) {
        (Some(on), Some(days)) if card.expired || days < 0 => {
            format!("Certificate expired on {}", display_date(on))
        }
        (Some(on), Some(1)) => format!("Certificate expires {} (1 day left)", display_date(on)),
        (Some(on), Some(days)) => {
            format!(
                "Certificate expires {} ({days} days left)",
                display_date(on)
            )
        }
        (Some(on), None) => format!("Certificate expires {}", display_date(on)),
        _ => "Certificate expiry unknown".into(),
    }
}

/// A menu entry's label and whether it can be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toggle {
    /// The label.
    pub label: String,
    /// Whether it can be chosen.
    pub enabled: bool,
}

impl Toggle {
    fn new(label: impl Into<String>, enabled: bool) -> Self {
        Self {
            label: label.into(),
            enabled,
        }
    }
}

/// One role in the Select role submenu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleEntry {
    /// The role's id for `select_role`.
    pub id: String,
    /// "Staff Nurse — Leeds Teaching Hospitals".
    pub label: String,
    /// Whether it is the selected role.
    pub checked: bool,
}

/// The icon, tooltip and menu, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayView {
    /// The icon.
    pub icon: IconKind,
    /// The item's title (the tooltip's first line).
    pub title: String,
    /// The tooltip's text: holder, role and organisation, card serial, expiry and days left.
    pub tooltip: String,
    /// The status lines at the top of the menu (not clickable).
    pub status_lines: Vec<String>,
    /// Sign in or Sign out.
    pub sign: Toggle,
    /// The user's roles, the current one checked.
    pub roles: Vec<RoleEntry>,
    /// Whether the Select role submenu can be opened.
    pub roles_enabled: bool,
    /// Renew certificates (the reason in the label when it cannot be chosen).
    pub renew: Toggle,
    /// Card details.
    pub card_details: Toggle,
    /// Check card (doctor).
    pub check_card: Toggle,
    /// Open portal.
    pub portal: Toggle,
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_ipc::{
        OperationKind, PcscStatus, ReaderStatus, Role, SessionEndReason, SessionStatus, User,
    };

    fn hello() -> HelloResult {
        HelloResult {
            protocol: 1,
            agent_version: "0.1.0".into(),
            capabilities: ["status", "subscribe", "login", "logout", "renew", "doctor"]
                .map(String::from)
                .to_vec(),
        }
    }

    fn card(days_left: i64) -> CardStatus {
        CardStatus {
            serial: Some("4082A001132F2817".into()),
            card_type: "NHS CIS".into(),
            atr: "3B".into(),
            piv: true,
            holder: Some("Jane Doe".into()),
            holder_id: None,
            expires_on: Some("2026-11-21".into()),
            days_left: Some(days_left),
            expired: days_left < 0,
        }
    }

    fn status(card: Option<CardStatus>, state: SessionState) -> Status {
        let mut session = SessionStatus::idle(state);
        if state == SessionState::SignedIn {
            session.reader = Some("Virtual PCD 00 00".into());
            session.user = Some(User {
                id: "u".into(),
                name: "Jane Doe".into(),
            });
            session.role = Some(nurse());
        }
        Status {
            agent_version: "0.1.0".into(),
            pcsc: PcscStatus {
                available: true,
                message: None,
            },
            readers: vec![ReaderStatus {
                name: "Virtual PCD 00 00".into(),
                card,
            }],
            session,
        }
    }

    fn nurse() -> Role {
        Role {
            id: "R1".into(),
            organisation: "Leeds Teaching Hospitals".into(),
            job_role: "Staff Nurse".into(),
            activities: vec![],
        }
    }

    fn connected(status: Status) -> AgentView {
        let mut view = AgentView::default();
        view.connected(hello(), status);
        view
    }

    #[test]
    fn every_state_has_its_icon() {
        let mut view = AgentView::default();
        view.disconnected("no socket".into());
        assert_eq!(view.icon(90), IconKind::AgentNotRunning);

        let mut no_reader = status(None, SessionState::NoCard);
        no_reader.readers.clear();
        assert_eq!(connected(no_reader).icon(90), IconKind::NoReader);
        assert_eq!(
            connected(status(None, SessionState::NoCard)).icon(90),
            IconKind::NoCard
        );
        assert_eq!(
            connected(status(Some(card(400)), SessionState::CardPresent)).icon(90),
            IconKind::CardInserted
        );
        assert_eq!(
            connected(status(Some(card(400)), SessionState::WaitingForPin)).icon(90),
            IconKind::SigningIn
        );
        assert_eq!(
            connected(status(Some(card(400)), SessionState::SignedIn)).icon(90),
            IconKind::SignedIn
        );
        assert_eq!(
            connected(status(Some(card(30)), SessionState::SignedIn)).icon(90),
            IconKind::ExpiringSoon
        );
        assert_eq!(
            connected(status(Some(card(-3)), SessionState::CardPresent)).icon(90),
            IconKind::NeedsRa
        );

        let mut blocked = connected(status(Some(card(400)), SessionState::CardPresent));
        blocked.apply(&Event::LoginFailed {
            reader: "r".into(),
            serial: None,
            error: ErrorObject::new(ErrorCode::PinBlocked, "PIN blocked"),
        });
        assert_eq!(blocked.icon(90), IconKind::NeedsRa);
        blocked.apply(&Event::CardRemoved {
            reader: "r".into(),
            serial: None,
        });
        assert_eq!(
            blocked.icon(90),
            IconKind::CardInserted,
            "failure forgotten"
        );

        let mut busy = connected(status(Some(card(30)), SessionState::SignedIn));
        let op = OperationStatus {
            id: "op".into(),
            kind: OperationKind::Renew,
            serial: "s".into(),
            step: agent_ipc::OperationStep::Started,
            message: "Renewal started".into(),
            done: false,
        };
        busy.apply(&Event::OperationProgress {
            operation: op.clone(),
        });
        assert_eq!(busy.icon(90), IconKind::InProgress);
        busy.apply(&Event::OperationResult {
            operation: op,
            error: Some(ErrorObject::new(ErrorCode::CmsUnreachable, "unreachable")),
        });
        assert_eq!(busy.icon(90), IconKind::Error);

        let mut no_pcscd = status(None, SessionState::NoCard);
        no_pcscd.pcsc.available = false;
        assert_eq!(connected(no_pcscd).icon(90), IconKind::Error);
    }

    #[test]
    fn the_tooltip_names_holder_role_card_and_expiry() {
        let view = connected(status(Some(card(30)), SessionState::SignedIn)).view(90, None);
        assert_eq!(
            view.tooltip,
            "Jane Doe\nStaff Nurse — Leeds Teaching Hospitals\nCard 4082A001132F2817 (NHS CIS)\n\
             Certificate expires 21-Nov-2026 (30 days left)"
        );
        assert_eq!(
            view.title,
            "Identity Agent — Signed in — certificate expires soon"
        );
        assert_eq!(view.status_lines.len(), 5);
    }

    #[test]
    fn the_menu_follows_the_session() {
        let mut signed_in = connected(status(Some(card(30)), SessionState::SignedIn));
        signed_in.roles = Some(Roles {
            roles: vec![
                nurse(),
                Role {
                    id: "R2".into(),
                    job_role: "Ward Manager".into(),
                    ..nurse()
                },
            ],
            selected: Some("R1".into()),
            default: None,
        });
        let view = signed_in.view(90, Some("https://portal.example"));
        assert_eq!(view.sign, Toggle::new("Sign out", true));
        assert_eq!(view.renew, Toggle::new("Renew certificates", true));
        assert!(view.portal.enabled);
        assert_eq!(
            view.roles
                .iter()
                .map(|r| (r.label.as_str(), r.checked))
                .collect::<Vec<_>>(),
            [
                ("Staff Nurse — Leeds Teaching Hospitals", true),
                ("Ward Manager — Leeds Teaching Hospitals", false)
            ]
        );

        signed_in.apply(&Event::SessionEnded {
            reason: SessionEndReason::Logout,
            reader: None,
            serial: None,
        });
        signed_in.status = Some(status(Some(card(30)), SessionState::Ended));
        let view = signed_in.view(90, None);
        assert_eq!(view.sign, Toggle::new("Sign in", true));
        assert!(view.roles.is_empty() && !view.roles_enabled);
        assert_eq!(
            view.renew,
            Toggle::new("Renew certificates (sign in first)", false)
        );
        assert!(!view.portal.enabled);

        let expired = connected(status(Some(card(-1)), SessionState::CardPresent)).view(90, None);
        assert_eq!(
            expired.renew,
            Toggle::new("Renew certificates (expired: contact your RA)", false)
        );
        let mut gone = AgentView::default();
        gone.disconnected("identity-agent is not running".into());
        let view = gone.view(90, None);
        assert_eq!(view.status_lines[0], "Agent not running");
        assert!(!view.sign.enabled && !view.renew.enabled && !view.check_card.enabled);
    }
}
