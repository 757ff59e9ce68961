//! What the tray shows for each thing the agent can say.

use super::*;
use agent_ipc::{
    fixtures, OperationKind, ReaderStatus, Role, SessionEndReason, SessionStatus, User,
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
    fixtures::status(
        vec![ReaderStatus {
            name: fixtures::READER.into(),
            card,
        }],
        session,
    )
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
    for (days_left, state, icon) in [
        (400, SessionState::CardPresent, IconKind::CardInserted),
        (400, SessionState::WaitingForPin, IconKind::SigningIn),
        (400, SessionState::SignedIn, IconKind::SignedIn),
        (30, SessionState::SignedIn, IconKind::ExpiringSoon),
        (-3, SessionState::CardPresent, IconKind::NeedsRa),
    ] {
        assert_eq!(
            connected(status(Some(card(days_left)), state)).icon(90),
            icon,
            "{days_left} days, {state:?}"
        );
    }

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
