//! Talking to the stack's agent from a test: clients, subscriptions and waiting for events.

use crate::stack::{Stack, StackCard};
use agent_ipc::{
    Client, ErrorObject, Event, OperationStatus, SessionEndReason, Status, Subscription,
};
use cardsim::InsertedCard;
use std::future::Future;
use std::time::Duration;

/// How long a test waits for an event before failing.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A renew or repair as its events told it: the steps it reported, then its result.
#[derive(Debug)]
pub struct OperationReport {
    /// The steps its progress events reported, in order.
    pub steps: Vec<String>,
    /// The operation as its result gave it.
    pub operation: OperationStatus,
    /// Why it failed, if it did.
    pub error: Option<ErrorObject>,
}

/// The steps the agent reports for a renewal, in order.
pub const RENEWAL_STEPS: [&str; 6] = [
    "started",
    "management_key",
    "key_generated",
    "certificate_issued",
    "certificate_written",
    "confirmed",
];

impl OperationReport {
    /// Asserts that the operation `id` succeeded, its progress having reported exactly `steps`
    /// in order.
    pub fn assert_succeeded(&self, id: &str, steps: &[&str]) {
        assert!(self.error.is_none(), "{:?}", self.error);
        assert_eq!(self.operation.id, id);
        assert_eq!(self.steps, steps);
    }
}

/// Whether `event` is an operation's progress or its result.
pub fn is_operation_event(event: &Event) -> bool {
    matches!(
        event,
        Event::OperationProgress { .. } | Event::OperationResult { .. }
    )
}

/// Follows an operation through the events `next` gives until its result, collecting the steps
/// its progress reported on the way (other events are passed over).
pub fn follow_operation_with(mut next: impl FnMut() -> Event) -> OperationReport {
    let mut steps = Vec::new();
    loop {
        match next() {
            Event::OperationProgress { operation } => steps.push(operation.step.to_string()),
            Event::OperationResult { operation, error } => {
                return OperationReport {
                    steps,
                    operation,
                    error,
                }
            }
            _ => {}
        }
    }
}

impl Stack {
    /// Runs `f` on the stack's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// A new client of the agent's socket.
    pub fn client(&self) -> Client {
        self.block_on(Client::connect(self.socket().expect("the agent runs")))
            .expect("connecting to the agent")
    }

    /// A new subscription to the agent's events.
    pub fn subscribe(&self) -> Subscription {
        self.block_on(self.client().subscribe())
            .expect("subscribing")
    }

    /// The agent's status.
    pub fn status(&self) -> Status {
        self.block_on(self.client().status()).expect("status")
    }

    /// The next event matching `wanted`, skipping others; `None` once `timeout` passes.
    pub fn next_matching(
        &self,
        events: &mut Subscription,
        timeout: Duration,
        wanted: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        self.block_on(async {
            tokio::time::timeout(timeout, async {
                loop {
                    let event = events.next_event().await.expect("the event stream");
                    if wanted(&event) {
                        return event;
                    }
                }
            })
            .await
            .ok()
        })
    }

    /// [`Stack::next_matching`] that panics after `timeout`.
    pub fn wait_for_within(
        &self,
        events: &mut Subscription,
        timeout: Duration,
        wanted: impl Fn(&Event) -> bool,
    ) -> Event {
        self.next_matching(events, timeout, wanted)
            .expect("the event did not come")
    }

    /// [`Stack::wait_for_within`] with [`EVENT_TIMEOUT`].
    pub fn wait_for(&self, events: &mut Subscription, wanted: impl Fn(&Event) -> bool) -> Event {
        self.wait_for_within(events, EVENT_TIMEOUT, wanted)
    }

    /// Follows the operation under way through `events` until its result; each of its events
    /// may take [`EVENT_TIMEOUT`].
    pub fn follow_operation(&self, events: &mut Subscription) -> OperationReport {
        follow_operation_with(|| self.wait_for(events, is_operation_event))
    }

    /// Takes the signed-in `card` out of reader 0 (its session ends) and puts it back, waiting
    /// until it signs in again; returns it inserted.
    pub fn reinsert_and_sign_in(
        &self,
        events: &mut Subscription,
        inserted: InsertedCard,
        card: &StackCard,
    ) -> InsertedCard {
        self.bed.remove(0, inserted).expect("removing the card");
        self.wait_for(events, |e| {
            matches!(
                e,
                Event::SessionEnded {
                    reason: SessionEndReason::CardRemoved,
                    ..
                }
            )
        });
        let again = self.insert(0, card).expect("inserting the card again");
        self.wait_for(events, |e| matches!(e, Event::SessionStarted { .. }));
        again
    }
}
