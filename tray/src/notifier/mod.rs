//! Shows [`Notice`]s on the desktop: one notification per [`Condition`], replaced in place as
//! it changes, rate-limited so a card pulled and pushed again and again gives no flood. Where
//! they go is the platform's: `org.freedesktop.Notifications` on a Unix desktop (`dbus`, with
//! actions where the server has them), the notification icon's balloon on Windows (`balloon`,
//! which Windows 10 and later show as a toast). An action the user chooses comes back as
//! [`ActionInvoked`].

use crate::notices::{Condition, Notice};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[cfg(windows)]
mod balloon;
#[cfg(unix)]
mod dbus;
#[cfg(windows)]
pub use balloon::Notifier;
#[cfg(unix)]
pub use dbus::Notifier;

/// The user chose an action on one of our notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionInvoked {
    /// The condition whose notification it was.
    pub condition: Condition,
    /// The action's key.
    pub key: String,
}

/// How often one condition may be shown: the same text again within [`REPEAT_AFTER`] is
/// dropped, and a condition that is not progress is shown at most once per [`MIN_INTERVAL`].
#[derive(Debug, Default)]
pub struct RateLimiter {
    last: HashMap<Condition, (Instant, String)>,
}

/// The same notification is not repeated sooner than this.
pub const REPEAT_AFTER: Duration = Duration::from_secs(300);
/// A condition (other than progress and what the user asked for) at most this often.
pub const MIN_INTERVAL: Duration = Duration::from_secs(20);

impl RateLimiter {
    /// Whether `notice` may be shown at `now`; records it when it may.
    pub fn allow(&mut self, notice: &Notice, now: Instant) -> bool {
        let text = format!("{}\n{}", notice.summary, notice.body);
        if let Some((at, last)) = self.last.get(&notice.condition) {
            let since = now.saturating_duration_since(*at);
            let progress = matches!(notice.condition, Condition::Renewal | Condition::Info);
            if (*last == text && since < REPEAT_AFTER) || (!progress && since < MIN_INTERVAL) {
                return false;
            }
        }
        self.last.insert(notice.condition, (now, text));
        true
    }

    /// Forgets `condition` (its notification was closed on purpose: the next is news).
    pub fn forget(&mut self, condition: Condition) {
        self.last.remove(&condition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notices::Urgency;

    fn notice(condition: Condition, summary: &str) -> Notice {
        Notice {
            condition,
            summary: summary.into(),
            body: String::new(),
            urgency: Urgency::Normal,
            category: "device",
            icon: "dialog-information",
            actions: Vec::new(),
            progress: None,
            resident: false,
        }
    }

    #[test]
    fn a_card_pulled_and_pushed_gives_no_flood() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        let ended = notice(Condition::SessionEnded, "You have been signed out");
        let shown = (0..50)
            .filter(|i| limiter.allow(&ended, start + Duration::from_millis(500) * *i))
            .count();
        assert_eq!(shown, 1, "25 s of pulling and pushing, one notification");
        // Later, and changed, it is news again.
        let changed = notice(Condition::SessionEnded, "Another card");
        assert!(limiter.allow(&changed, start + MIN_INTERVAL * 2));
    }

    #[test]
    fn progress_replaces_freely_but_never_repeats_itself() {
        let mut limiter = RateLimiter::default();
        let now = Instant::now();
        assert!(limiter.allow(&notice(Condition::Renewal, "step 1"), now));
        assert!(limiter.allow(&notice(Condition::Renewal, "step 2"), now));
        assert!(!limiter.allow(&notice(Condition::Renewal, "step 2"), now));
        limiter.forget(Condition::Renewal);
        assert!(limiter.allow(&notice(Condition::Renewal, "step 2"), now));
    }
}
