//! Notifications through `org.freedesktop.Notifications` (notify-rust over zbus): replaced in
//! place by id, urgency and category hints, actions only where the server lists the `actions`
//! capability.

use super::{ActionInvoked, RateLimiter};
use crate::front::Front;
use crate::notices::{Condition, Notice, NoticeAction, Urgency};
use notify_rust::{Hint, Notification, Timeout};
use std::collections::HashMap;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

const BUS_NAME: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";

/// The desktop's notification server, as the tray uses it.
pub struct Notifier {
    bus: Option<zbus::Connection>,
    ids: HashMap<Condition, u32>,
    limiter: RateLimiter,
    capabilities: Option<Vec<String>>,
    actions: UnboundedSender<(u32, String)>,
}

impl Notifier {
    /// A notifier on the session bus; the actions chosen are sent to `actions` as (id, key)
    /// for [`Notifier::invoked`] to name. Without a session bus it logs and shows nothing.
    ///
    /// Servers send `ActionInvoked` to the connection that sent the notification (dunst does),
    /// so a notification with actions keeps its own connection, waited on by a thread of its
    /// own until the user acts or it is closed; it is closed, not replaced, when it changes, so
    /// that thread always ends. The tray item (`_front`) is not involved on this platform.
    pub async fn connect(actions: UnboundedSender<(u32, String)>, _front: &Front) -> Self {
        let bus = match zbus::Connection::session().await {
            Ok(bus) => Some(bus),
            Err(e) => {
                tracing::warn!("no D-Bus session bus, so no notifications: {e}");
                None
            }
        };
        Self {
            bus,
            ids: HashMap::new(),
            limiter: RateLimiter::default(),
            capabilities: None,
            actions,
        }
    }

    /// Whether the server shows actions (its capabilities list `actions`); asked once.
    pub async fn actions_supported(&mut self) -> bool {
        if self.capabilities.is_none() {
            if let Some(bus) = &self.bus {
                let reply = bus
                    .call_method(Some(BUS_NAME), PATH, Some(BUS_NAME), "GetCapabilities", &())
                    .await;
                match reply.and_then(|r| r.body().deserialize::<Vec<String>>()) {
                    Ok(caps) => {
                        tracing::info!(?caps, "notification server capabilities");
                        self.capabilities = Some(caps);
                    }
                    Err(e) => tracing::warn!("no notification server answers: {e}"),
                }
            }
        }
        self.capabilities
            .as_ref()
            .is_some_and(|caps| caps.iter().any(|c| c == "actions"))
    }

    /// Which of our conditions notification `id` is.
    pub fn invoked(&self, id: u32, key: String) -> Option<ActionInvoked> {
        self.ids
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(condition, _)| ActionInvoked {
                condition: *condition,
                key,
            })
    }

    /// Shows or closes, as `action` says.
    pub async fn apply(&mut self, action: NoticeAction, now: Instant) {
        match action {
            NoticeAction::Show(notice) => self.show(notice, now).await,
            NoticeAction::Close(condition) => self.close(condition).await,
        }
    }

    async fn show(&mut self, notice: Notice, now: Instant) {
        if self.bus.is_none() || !self.limiter.allow(&notice, now) {
            tracing::debug!(condition = ?notice.condition, "notification held back");
            return;
        }
        let with_actions = !notice.actions.is_empty() && self.actions_supported().await;
        let mut n = Notification::new();
        n.appname("Identity Agent")
            .summary(&notice.summary)
            .body(&notice.body)
            .icon(notice.icon)
            .hint(Hint::Category(notice.category.to_owned()))
            .hint(Hint::DesktopEntry("identity-agent-tray".to_owned()))
            .urgency(match notice.urgency {
                Urgency::Low => notify_rust::Urgency::Low,
                Urgency::Normal => notify_rust::Urgency::Normal,
                Urgency::Critical => notify_rust::Urgency::Critical,
            });
        if notice.resident {
            n.hint(Hint::Resident(true)).timeout(Timeout::Never);
        }
        if let Some(value) = notice.progress {
            n.hint(Hint::CustomInt("value".to_owned(), value));
        }
        if with_actions {
            for (key, label) in &notice.actions {
                n.action(key, label);
            }
        }
        if with_actions {
            // Its predecessor's waiting thread ends when the server says it was closed.
            self.close(notice.condition).await;
            self.limiter.allow(&notice, now);
        } else if let Some(id) = self.ids.get(&notice.condition) {
            n.id(*id);
        }
        match n.show_async().await {
            Ok(handle) => {
                let id = handle.id();
                tracing::info!(condition = ?notice.condition, id, summary = %notice.summary, "notification shown");
                self.ids.insert(notice.condition, id);
                if with_actions {
                    let actions = self.actions.clone();
                    let waiting = std::thread::Builder::new()
                        .name("notification-actions".into())
                        .spawn(move || {
                            handle.wait_for_action(|key| {
                                let _ = actions.send((id, key.to_owned()));
                            })
                        });
                    if let Err(e) = waiting {
                        tracing::warn!("cannot wait for the notification's actions: {e}");
                    }
                }
            }
            Err(e) => {
                tracing::warn!("showing a notification failed: {e}");
                // The server may have gone or changed: ask its capabilities again next time.
                self.capabilities = None;
            }
        }
    }

    async fn close(&mut self, condition: Condition) {
        let (Some(bus), Some(id)) = (&self.bus, self.ids.remove(&condition)) else {
            return;
        };
        self.limiter.forget(condition);
        if let Err(e) = bus
            .call_method(
                Some(BUS_NAME),
                PATH,
                Some(BUS_NAME),
                "CloseNotification",
                &(id),
            )
            .await
        {
            tracing::debug!("closing notification {id}: {e}");
        }
    }
}
