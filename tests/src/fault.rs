//! The fault tests' holder: a nurse's card signed in through the agent in reader 0, renewed
//! while something fails underneath it (the card pulled, pcscd stopped, the agent killed, the
//! service unreachable), and the checks that the card recovered.

use crate::stack::{AgentOptions, Stack, StackCard, NURSE_PIN};
use agent_ipc::{ClientError, ErrorObject, Event, OperationStatus, Subscription};
use cardsim::{AtrProfile, InsertedCard};
use cms::issuance::InitialValidity;
use cms::Policy;
use piv::consts::key;
use piv::{CardSerial, KeyAlgorithm, PivCard};
use std::ffi::CString;
use std::path::PathBuf;
use std::time::Duration;

/// How long a sign-in, an operation finished by the agent or the card reaching its hold may
/// take (an RSA key is generated).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The holder's PIN: the nurse's card [`Holder::start`] signs in with has it.
pub const HOLDER_PIN: &str = NURSE_PIN;

/// The agent as the fault tests run it: no periodic certificate check adding card or service
/// traffic of its own to what they count.
pub fn agent_options() -> AgentOptions {
    AgentOptions {
        certificate_check_secs: 3600,
        log_filter: "debug".into(),
        ..AgentOptions::default()
    }
}

/// A service whose cards take as many renewals as a fault matrix makes.
pub fn roomy_policy() -> Policy {
    Policy {
        card_capacity: 10_000,
        ..Policy::default()
    }
}

/// The tail of the agent's logs, for failure messages.
pub fn log_tail(stack: &Stack) -> String {
    let logs = stack.agent_logs();
    // Card events print whole certificates: each line is cut short.
    let lines: Vec<String> = logs
        .lines()
        .map(|line| line.chars().take(300).collect())
        .collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Waits until the agent signs in with the card in reader `slot`; panics with the reason and
/// the agent's log when it does not.
pub fn wait_signed_in(stack: &Stack, events: &mut Subscription, slot: usize, what: &str) {
    let outcome = stack.next_matching(events, PATIENCE, |e| {
        matches!(e, Event::SessionStarted { .. } | Event::LoginFailed { .. })
    });
    match outcome {
        Some(Event::SessionStarted { session }) => assert_eq!(
            session.reader.as_deref(),
            Some(stack.bed.reader_name(slot).as_str()),
            "{what}"
        ),
        Some(Event::LoginFailed { error, .. }) => panic!(
            "{what}: the card did not sign in: {error:?}\n{}",
            log_tail(stack)
        ),
        Some(_) => unreachable!(),
        None => panic!(
            "{what}: no sign-in within {PATIENCE:?}\n{}",
            log_tail(stack)
        ),
    }
}

/// The agent's operations journal file for `card`: it exists while an operation on the card is
/// unfinished.
pub fn journal_file(stack: &Stack, card: &StackCard) -> PathBuf {
    stack
        .bed
        .dir()
        .join("state/identity-agent/operations")
        .join(format!("{}.json", card.serial))
}

/// The algorithm of the key behind the 9A certificate of the card in reader `slot`.
pub fn key_algorithm(stack: &Stack, slot: usize) -> KeyAlgorithm {
    let ctx = stack.bed.context().unwrap();
    let mut card =
        PivCard::connect(&ctx, &CString::new(stack.bed.reader_name(slot)).unwrap()).unwrap();
    let tx = card.transaction().unwrap();
    tx.read_certificate(key::AUTHENTICATION)
        .unwrap()
        .public_key()
        .unwrap()
        .algorithm()
        .unwrap()
}

/// A renew or repair call's answer as a test's progress line prints it.
pub fn outcome_name(outcome: &Result<OperationStatus, ErrorObject>) -> String {
    match outcome {
        Ok(status) => format!("ok ({})", status.step),
        Err(error) => format!("{:?} ({})", error.code, error.message),
    }
}

/// The holder's card signed in through the agent in reader 0.
pub struct Holder {
    /// The stack, agent running.
    pub stack: Stack,
    /// The holder's card.
    pub card: StackCard,
    /// The card in reader 0 (`None` while a test has it out).
    pub inserted: Option<InsertedCard>,
    /// The agent's events since the first sign-in.
    pub events: Subscription,
}

impl Holder {
    /// Starts a stack with a [`roomy_policy`] and the agent, and signs in with a new card
    /// `serial` valid for 30 days, the PIN prompt answering [`HOLDER_PIN`].
    pub fn start(serial: CardSerial) -> Self {
        let mut stack = Stack::start_with(roomy_policy()).unwrap();
        let card = stack
            .nurse_card(serial, InitialValidity::Days(30), AtrProfile::NhsCis)
            .unwrap();
        stack.pin_answers(&[HOLDER_PIN; 32]).unwrap();
        stack.start_agent(&agent_options()).unwrap();
        let mut events = stack.subscribe();
        let inserted = stack.insert(0, &card).unwrap();
        wait_signed_in(&stack, &mut events, 0, "the first sign-in");
        Self {
            stack,
            card,
            inserted: Some(inserted),
            events,
        }
    }

    /// The card in reader 0.
    pub fn inserted(&self) -> &InsertedCard {
        self.inserted.as_ref().expect("the card is in")
    }

    /// A renewal that nothing interrupts; returns the APDUs the card answered for it.
    pub fn clean_renewal(&mut self) -> u32 {
        let before = self.inserted().apdus_answered();
        let done = self
            .stack
            .block_on(self.stack.client().renew())
            .expect("a renewal nothing interrupts");
        assert!(done.done, "{done:?}");
        let answered = self.inserted().apdus_answered() - before;
        self.stack
            .next_matching(&mut self.events, PATIENCE, |e| {
                matches!(e, Event::OperationResult { .. })
            })
            .expect("the renewal's result");
        self.stack.card_agrees_with_cms(0, &self.card).unwrap();
        answered
    }

    /// Asks the agent to renew without waiting for the answer (a test makes something fail
    /// meanwhile); the task ends with the renew call's answer.
    pub fn spawn_renewal(&self) -> tokio::task::JoinHandle<Result<OperationStatus, ClientError>> {
        let mut client = self.stack.client();
        self.stack
            .runtime
            .spawn(async move { client.renew().await })
    }

    /// Whether the agent's journal holds an unfinished operation for the card.
    pub fn journaled(&self) -> bool {
        journal_file(&self.stack, &self.card).exists()
    }

    /// The card in reader 0 and the service agree, and the card's new key is of its algorithm.
    pub fn check_agreement(&self, what: &str) {
        if let Err(e) = self.stack.card_agrees_with_cms(0, &self.card) {
            panic!("{what}: {e:#}\n{}", log_tail(&self.stack));
        }
        assert_eq!(
            key_algorithm(&self.stack, 0),
            KeyAlgorithm::Rsa2048,
            "{what}: the new key is of the card's algorithm"
        );
    }
}
