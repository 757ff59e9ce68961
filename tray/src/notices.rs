//! Which desktop notification a change deserves, as data: the expiry warning (with its Renew
//! now / Later actions, or the menu's way to renew where the server shows no actions), renewal
//! progress and result, an expired card, a blocked PIN, a session ended by the card, the service
//! unreachable. One [`Condition`] is one notification on the desktop, replaced as it changes.

use crate::dates::{display_date, first_date_in};
use crate::model::AgentView;
use agent_ipc::{
    ErrorCode, ErrorObject, Event, OperationKind, OperationStep, SessionEndReason, SessionState,
};
use std::time::{Duration, Instant};

/// A condition the user is told about; each has one notification, replaced as it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    /// The certificate expires inside the warning window.
    ExpiryWarning,
    /// A renewal running or just finished.
    Renewal,
    /// The card's certificate has expired (or the card was cancelled).
    CardExpired,
    /// The PIN is blocked.
    PinBlocked,
    /// The session ended because the card was removed or replaced.
    SessionEnded,
    /// The Card Management Service cannot be reached.
    CmsUnreachable,
    /// What the user asked for from the menu: card details, the doctor's report, about.
    Info,
}

/// How urgent, as the Desktop Notifications specification grades it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// For information.
    Low,
    /// Most notifications.
    Normal,
    /// Needs the user: the server keeps it until dismissed.
    Critical,
}

/// The action key of "Renew now".
pub const ACTION_RENEW: &str = "renew";
/// The action key of "Later".
pub const ACTION_LATER: &str = "later";

/// One notification, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The condition it is about (one notification each).
    pub condition: Condition,
    /// The summary line.
    pub summary: String,
    /// The body.
    pub body: String,
    /// Urgency.
    pub urgency: Urgency,
    /// The specification's category (`device.error`, `transfer.complete` …).
    pub category: &'static str,
    /// A freedesktop icon name.
    pub icon: &'static str,
    /// Actions as (key, label), shown only where the server has the `actions` capability.
    pub actions: Vec<(&'static str, &'static str)>,
    /// Progress in percent (the `value` hint), for a running operation.
    pub progress: Option<i32>,
    /// Kept on screen until the user acts on it.
    pub resident: bool,
}

/// What to do with the notifications on the desktop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeAction {
    /// Show it, replacing the condition's previous notification.
    Show(Notice),
    /// Take the condition's notification away.
    Close(Condition),
}

/// How long "Later" keeps the expiry warning away (or until the next sign-in).
pub const SNOOZE: Duration = Duration::from_secs(24 * 3600);

/// The steps of a renewal, in order (`PROTOCOL.md`), for its progress.
const RENEW_STEPS: [OperationStep; 6] = [
    OperationStep::Started,
    OperationStep::ManagementKey,
    OperationStep::KeyGenerated,
    OperationStep::CertificateIssued,
    OperationStep::CertificateWritten,
    OperationStep::Confirmed,
];

/// Decides the notifications; remembers the snooze and which session was already warned.
#[derive(Debug, Default)]
pub struct Notices {
    snoozed_until: Option<Instant>,
    warned_session: Option<(Option<String>, Option<i64>)>,
}

impl Notices {
    /// "Later": no expiry warning until the next sign-in or [`SNOOZE`] has passed.
    pub fn snooze(&mut self, now: Instant) -> Vec<NoticeAction> {
        self.snoozed_until = Some(now + SNOOZE);
        vec![NoticeAction::Close(Condition::ExpiryWarning)]
    }

    /// Whether the expiry warning is snoozed at `now`.
    pub fn snoozed(&self, now: Instant) -> bool {
        self.snoozed_until.is_some_and(|until| now < until)
    }

    /// The notifications for a fresh connection: the expiry warning, when the tray starts (or
    /// the agent comes back) after the sign-in that would have warned.
    pub fn on_connected(
        &mut self,
        view: &AgentView,
        warning_days: i64,
        actions: bool,
        now: Instant,
    ) -> Vec<NoticeAction> {
        let Some(status) = &view.status else {
            return Vec::new();
        };
        if status.session.state != SessionState::SignedIn {
            return Vec::new();
        }
        let session = (status.session.serial.clone(), status.session.signed_in_at);
        let Some(card) = view.card() else {
            return Vec::new();
        };
        match (&card.expires_on, card.days_left) {
            (Some(on), Some(days))
                if days <= warning_days
                    && !card.expired
                    && self.warned_session.as_ref() != Some(&session) =>
            {
                self.warned_session = Some(session);
                self.expiry_warning(on, actions, now)
            }
            _ => Vec::new(),
        }
    }

    /// The notifications an event deserves (`view` already has the event applied).
    pub fn on_event(
        &mut self,
        view: &AgentView,
        event: &Event,
        actions: bool,
        now: Instant,
    ) -> Vec<NoticeAction> {
        match event {
            Event::SessionStarted { session } => {
                // A new sign-in lifts "Later".
                self.snoozed_until = None;
                self.warned_session = Some((session.serial.clone(), session.signed_in_at));
                vec![
                    NoticeAction::Close(Condition::SessionEnded),
                    NoticeAction::Close(Condition::CardExpired),
                    NoticeAction::Close(Condition::PinBlocked),
                    NoticeAction::Close(Condition::CmsUnreachable),
                ]
            }
            Event::ExpiryWarning {
                days_left,
                expires_on,
                ..
            } if *days_left >= 0 => self.expiry_warning(expires_on, actions, now),
            Event::ExpiryWarning { expires_on, .. } => vec![expired(expires_on)],
            Event::LoginFailed { error, .. } => self.on_login_refused(view, error),
            Event::SessionEnded { reason, .. } => match reason {
                SessionEndReason::CardRemoved
                | SessionEndReason::CardChanged
                | SessionEndReason::ReaderRemoved
                | SessionEndReason::CertificateChanged => {
                    vec![NoticeAction::Show(Notice {
                        condition: Condition::SessionEnded,
                        summary: "You have been signed out".into(),
                        body: match reason {
                            SessionEndReason::CardChanged => {
                                "Another smartcard was put in the reader.".into()
                            }
                            SessionEndReason::ReaderRemoved => {
                                "The card reader was unplugged.".into()
                            }
                            SessionEndReason::CertificateChanged => {
                                "The certificate on your smartcard was changed.".into()
                            }
                            _ => "Your smartcard was removed.".into(),
                        },
                        urgency: Urgency::Normal,
                        category: "device.removed",
                        icon: "dialog-information",
                        actions: Vec::new(),
                        progress: None,
                        resident: false,
                    })]
                }
                _ => Vec::new(),
            },
            Event::OperationProgress { operation } if operation.kind == OperationKind::Renew => {
                let index = RENEW_STEPS
                    .iter()
                    .position(|s| *s == operation.step)
                    .unwrap_or(0);
                vec![
                    NoticeAction::Close(Condition::ExpiryWarning),
                    NoticeAction::Show(Notice {
                        condition: Condition::Renewal,
                        summary: "Renewing your smartcard…".into(),
                        body: format!(
                            "Step {} of {}: {}. Keep the card in the reader; you stay signed in.",
                            index + 1,
                            RENEW_STEPS.len(),
                            operation.message
                        ),
                        urgency: Urgency::Low,
                        category: "transfer",
                        icon: "emblem-synchronizing",
                        actions: Vec::new(),
                        progress: Some(((index + 1) * 100 / RENEW_STEPS.len()) as i32),
                        resident: false,
                    }),
                ]
            }
            Event::OperationResult { operation, error }
                if operation.kind == OperationKind::Renew =>
            {
                match error {
                    None => {
                        let until = first_date_in(&operation.message)
                            .or_else(|| {
                                view.card()
                                    .and_then(|c| c.expires_on.as_deref().map(display_date))
                            })
                            .unwrap_or_else(|| "its new expiry date".into());
                        vec![NoticeAction::Show(Notice {
                            condition: Condition::Renewal,
                            summary: format!(
                                "Your smartcard has been renewed — valid until {until}"
                            ),
                            body: "You are still signed in; nothing else to do.".into(),
                            urgency: Urgency::Normal,
                            category: "transfer.complete",
                            icon: "dialog-information",
                            actions: Vec::new(),
                            progress: None,
                            resident: false,
                        })]
                    }
                    Some(error) => {
                        let mut out = vec![renewal_failed(&error.message)];
                        if error.code == ErrorCode::CmsUnreachable {
                            out.push(unreachable(&error.message));
                        }
                        out
                    }
                }
            }
            _ => Vec::new(),
        }
    }

    /// The notifications a refused sign-in deserves, whether the refusal came as a
    /// `login_failed` event or as the answer to the tray's own `login`.
    pub fn on_login_refused(&mut self, view: &AgentView, error: &ErrorObject) -> Vec<NoticeAction> {
        match error.code {
            ErrorCode::CertificateExpired | ErrorCode::CardCancelled => {
                let on = view.card().and_then(|c| c.expires_on.clone());
                vec![match (error.code, on) {
                    (ErrorCode::CertificateExpired, Some(on)) => expired(&on),
                    _ => NoticeAction::Show(Notice {
                        body: error.message.clone(),
                        ..expired_notice()
                    }),
                }]
            }
            ErrorCode::PinBlocked => vec![NoticeAction::Show(Notice {
                condition: Condition::PinBlocked,
                summary: "Your smartcard's PIN is blocked — contact your Registration Authority"
                    .into(),
                body: "Too many wrong passcodes were entered. A Registration Authority officer \
                       can unblock the card and let you choose a new passcode."
                    .into(),
                urgency: Urgency::Critical,
                category: "device.error",
                icon: "dialog-error",
                actions: Vec::new(),
                progress: None,
                resident: true,
            })],
            ErrorCode::CmsUnreachable => vec![unreachable(&error.message)],
            _ => Vec::new(),
        }
    }

    fn expiry_warning(
        &mut self,
        expires_on: &str,
        actions: bool,
        now: Instant,
    ) -> Vec<NoticeAction> {
        if self.snoozed(now) {
            return Vec::new();
        }
        let date = display_date(expires_on);
        let summary =
            format!("The security certificate for your smartcard expires on {date}. Renew now?");
        let (body, action_list) = if actions {
            (
                "Renewing takes a few seconds with the card in the reader; you stay signed in."
                    .to_owned(),
                vec![(ACTION_RENEW, "Renew now"), (ACTION_LATER, "Later")],
            )
        } else {
            (
                "To renew, open the Identity Agent icon in the panel and choose \
                 \"Renew certificates\"; you stay signed in."
                    .to_owned(),
                Vec::new(),
            )
        };
        vec![NoticeAction::Show(Notice {
            condition: Condition::ExpiryWarning,
            summary,
            body,
            urgency: Urgency::Normal,
            category: "x-identity-agent.expiry",
            icon: "dialog-warning",
            resident: actions,
            actions: action_list,
            progress: None,
        })]
    }
}

fn expired_notice() -> Notice {
    Notice {
        condition: Condition::CardExpired,
        summary: "Your smartcard has expired — contact your Registration Authority".into(),
        body: String::new(),
        urgency: Urgency::Critical,
        category: "device.error",
        icon: "dialog-error",
        actions: Vec::new(),
        progress: None,
        resident: true,
    }
}

fn expired(expires_on: &str) -> NoticeAction {
    NoticeAction::Show(Notice {
        body: format!(
            "Its certificate expired on {}. It cannot sign in until a Registration Authority \
             officer repairs it.",
            display_date(expires_on)
        ),
        ..expired_notice()
    })
}

/// A renewal that failed, with the reason, saying the card still works.
pub fn renewal_failed(message: &str) -> NoticeAction {
    NoticeAction::Show(Notice {
        condition: Condition::Renewal,
        summary: "Your smartcard was not renewed".into(),
        body: format!("{message} Your card still works; try again from the tray menu."),
        urgency: Urgency::Normal,
        category: "transfer.error",
        icon: "dialog-warning",
        actions: Vec::new(),
        progress: None,
        resident: false,
    })
}

fn unreachable(message: &str) -> NoticeAction {
    NoticeAction::Show(Notice {
        condition: Condition::CmsUnreachable,
        summary: "The Card Management Service cannot be reached".into(),
        body: format!("{message} The agent tries again by itself."),
        urgency: Urgency::Normal,
        category: "network.error",
        icon: "network-error",
        actions: Vec::new(),
        progress: None,
        resident: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_ipc::{OperationStatus, SessionStatus};

    fn warning() -> Event {
        Event::ExpiryWarning {
            serial: "4082A001132F2817".into(),
            days_left: 30,
            expires_on: "2026-11-21".into(),
        }
    }

    fn shown(actions: &[NoticeAction]) -> Vec<&Notice> {
        actions
            .iter()
            .filter_map(|a| match a {
                NoticeAction::Show(n) => Some(n),
                NoticeAction::Close(_) => None,
            })
            .collect()
    }

    #[test]
    fn the_expiry_warning_offers_renew_now_and_later_until_snoozed() {
        let mut notices = Notices::default();
        let view = AgentView::default();
        let now = Instant::now();
        let out = notices.on_event(&view, &warning(), true, now);
        let notice = shown(&out)[0];
        assert_eq!(
            notice.summary,
            "The security certificate for your smartcard expires on 21-Nov-2026. Renew now?"
        );
        assert_eq!(
            notice.actions,
            [(ACTION_RENEW, "Renew now"), (ACTION_LATER, "Later")]
        );

        assert_eq!(
            notices.snooze(now),
            [NoticeAction::Close(Condition::ExpiryWarning)]
        );
        assert!(notices.on_event(&view, &warning(), true, now).is_empty());
        // The next day, or the next sign-in, warns again.
        assert_eq!(
            notices
                .on_event(&view, &warning(), true, now + SNOOZE)
                .len(),
            1
        );
        notices.snooze(now);
        notices.on_event(
            &view,
            &Event::SessionStarted {
                session: SessionStatus::idle(SessionState::SignedIn),
            },
            true,
            now,
        );
        assert_eq!(notices.on_event(&view, &warning(), true, now).len(), 1);
    }

    #[test]
    fn servers_without_actions_are_told_how_to_renew_from_the_menu() {
        let out =
            Notices::default().on_event(&AgentView::default(), &warning(), false, Instant::now());
        let notice = shown(&out)[0];
        assert!(notice.actions.is_empty());
        assert!(
            notice.body.contains("\"Renew certificates\""),
            "{}",
            notice.body
        );
    }

    #[test]
    fn renewal_progress_and_result_replace_one_notification() {
        let mut notices = Notices::default();
        let view = AgentView::default();
        let now = Instant::now();
        let op = |step: OperationStep, message: &str| OperationStatus {
            id: "op".into(),
            kind: OperationKind::Renew,
            serial: "s".into(),
            step,
            message: message.into(),
            done: step == OperationStep::Confirmed,
        };
        let out = notices.on_event(
            &view,
            &Event::OperationProgress {
                operation: op(OperationStep::KeyGenerated, "New key generated on the card"),
            },
            true,
            now,
        );
        assert_eq!(out[0], NoticeAction::Close(Condition::ExpiryWarning));
        let progress = shown(&out)[0];
        assert_eq!(progress.condition, Condition::Renewal);
        assert_eq!(progress.progress, Some(50));
        let out = notices.on_event(
            &view,
            &Event::OperationResult {
                operation: op(OperationStep::Confirmed, "Renewed until 2028-11-21"),
                error: None,
            },
            true,
            now,
        );
        let done = shown(&out)[0];
        assert_eq!(done.condition, Condition::Renewal);
        assert_eq!(
            done.summary,
            "Your smartcard has been renewed — valid until 21-Nov-2028"
        );
        assert_eq!(done.category, "transfer.complete");
    }

    #[test]
    fn failures_that_need_the_ra_are_critical() {
        let mut notices = Notices::default();
        let view = AgentView::default();
        let now = Instant::now();
        let mut on_event = |event: Event| notices.on_event(&view, &event, true, now);
        let failed = |code, message: &str| Event::LoginFailed {
            reader: "r".into(),
            serial: None,
            error: ErrorObject::new(code, message),
        };
        let ended = |reason| Event::SessionEnded {
            reason,
            reader: None,
            serial: None,
        };
        for (code, condition) in [
            (ErrorCode::CertificateExpired, Condition::CardExpired),
            (ErrorCode::PinBlocked, Condition::PinBlocked),
        ] {
            let out = on_event(failed(code, "refused"));
            let notice = shown(&out)[0];
            assert_eq!(notice.condition, condition);
            assert_eq!(notice.urgency, Urgency::Critical);
            assert!(notice.summary.contains("Registration Authority"));
        }
        let out = on_event(failed(ErrorCode::CmsUnreachable, "down."));
        assert_eq!(shown(&out)[0].category, "network.error");
        assert!(on_event(failed(ErrorCode::PinCancelled, "cancelled")).is_empty());
        let out = on_event(ended(SessionEndReason::CardRemoved));
        assert_eq!(shown(&out)[0].category, "device.removed");
        assert!(on_event(ended(SessionEndReason::Logout)).is_empty());
    }
}
