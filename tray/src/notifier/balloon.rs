//! Notifications on Windows: the notification icon's balloon (Windows 10 and later show it as a
//! toast). An icon has one balloon, so a notice replaces whichever is shown; balloons have no
//! buttons, so the notices take the wording for servers without actions (the menu has Renew).

use super::{ActionInvoked, RateLimiter};
use crate::front::{Balloon, Balloons, Front};
use crate::notices::{Condition, NoticeAction};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// The notification icon's balloon, as the tray uses it.
pub struct Notifier {
    balloons: Balloons,
    limiter: RateLimiter,
    shown: Option<Condition>,
}

impl Notifier {
    /// A notifier showing balloons on `front`'s icon (`_actions` is unused: balloons have none).
    pub async fn connect(_actions: UnboundedSender<(u32, String)>, front: &Front) -> Self {
        Self {
            balloons: front.balloons(),
            limiter: RateLimiter::default(),
            shown: None,
        }
    }

    /// Balloons show no actions.
    pub async fn actions_supported(&mut self) -> bool {
        false
    }

    /// Balloons have no actions, so none is ever invoked.
    pub fn invoked(&self, _id: u32, _key: String) -> Option<ActionInvoked> {
        None
    }

    /// Shows or hides, as `action` says.
    pub async fn apply(&mut self, action: NoticeAction, now: Instant) {
        let outcome = match action {
            NoticeAction::Show(notice) => {
                if !self.limiter.allow(&notice, now) {
                    tracing::debug!(condition = ?notice.condition, "notification held back");
                    return;
                }
                tracing::info!(condition = ?notice.condition, summary = %notice.summary, "notification shown");
                self.shown = Some(notice.condition);
                self.balloons.show(Some(Balloon {
                    title: notice.summary,
                    body: notice.body,
                    urgency: notice.urgency,
                }))
            }
            NoticeAction::Close(condition) if self.shown == Some(condition) => {
                self.shown = None;
                self.limiter.forget(condition);
                self.balloons.show(None)
            }
            NoticeAction::Close(_) => Ok(()),
        };
        if let Err(e) = outcome {
            tracing::warn!("showing a notification failed: {e:#}");
        }
    }
}
