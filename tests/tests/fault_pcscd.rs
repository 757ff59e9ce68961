//! pcscd restarted in the middle of a renewal, over the real stack: the holder signed in
//! renews, and pcscd is stopped after every APDU of the renewal in turn (the card holds its
//! next answer at exactly that point, so the stop lands where it is meant to: after the
//! management-key relay, after the new key is generated, after the certificate is written, and
//! everywhere in between). The renew call answers — success, or an error saying pcscd went —
//! instead of hanging. Once pcscd is back and the card is in again, a renewal left journaled
//! is finished by the agent signing the holder in again with one PIN prompt; whatever the
//! point, the card ends signing in and agreeing with the service, with nothing journaled and
//! nothing left open at the service.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use agent_ipc::{
    ClientError, ErrorCode, ErrorObject, Event, OperationStatus, SessionState, Subscription,
};
use cardsim::{AtrProfile, InsertedCard};
use cms::issuance::InitialValidity;
use cms::Policy;
use piv::consts::key;
use piv::{CardSerial, KeyAlgorithm, PivCard};
use std::ffi::CString;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use testbed::stack::{AgentOptions, Stack, StackCard};

/// How long a sign-in, an operation or the card reaching its hold may take (an RSA key is
/// generated).
const PATIENCE: Duration = Duration::from_secs(60);

/// How long the event stream stays quiet before it counts as drained.
const QUIET: Duration = Duration::from_millis(50);

/// The holder's PIN.
const HOLDER_PIN: &str = "246810";

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x4C, n])
}

/// No periodic certificate check adding card traffic of its own to the count.
fn agent_options() -> AgentOptions {
    AgentOptions {
        certificate_check_secs: 3600,
        log_filter: "debug".into(),
        ..AgentOptions::default()
    }
}

/// The tail of the agent's logs, for failure messages.
fn log_tail(stack: &Stack) -> String {
    let logs = stack.agent_logs();
    // Card events print whole certificates: each line is cut short.
    let lines: Vec<String> = logs
        .lines()
        .map(|line| line.chars().take(300).collect())
        .collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Waits until the agent signs in with the card in reader 0; panics with the reason and the
/// agent's log when it does not.
fn wait_signed_in(stack: &Stack, events: &mut Subscription, what: &str) {
    let outcome = stack.next_matching(events, PATIENCE, |e| {
        matches!(e, Event::SessionStarted { .. } | Event::LoginFailed { .. })
    });
    match outcome {
        Some(Event::SessionStarted { session }) => assert_eq!(
            session.reader.as_deref(),
            Some(stack.bed.reader_name(0).as_str()),
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

/// The operations journal's file for `card`.
fn journal_file(stack: &Stack, card: &StackCard) -> PathBuf {
    stack
        .bed
        .dir()
        .join("state/identity-agent/operations")
        .join(format!("{}.json", card.serial))
}

/// The algorithm of the key behind the 9A certificate of the card in reader 0.
fn key_algorithm(stack: &Stack) -> KeyAlgorithm {
    let ctx = stack.bed.context().unwrap();
    let mut card =
        PivCard::connect(&ctx, &CString::new(stack.bed.reader_name(0)).unwrap()).unwrap();
    let tx = card.transaction().unwrap();
    tx.read_certificate(key::AUTHENTICATION)
        .unwrap()
        .public_key()
        .unwrap()
        .algorithm()
        .unwrap()
}

fn outcome_name(outcome: &Result<OperationStatus, ErrorObject>) -> String {
    match outcome {
        Ok(status) => format!("ok ({})", status.step),
        Err(error) => format!("{:?} ({})", error.code, error.message),
    }
}

/// A renewal cut by pcscd stopping.
struct Stopped {
    /// The renew call's answer.
    outcome: Result<OperationStatus, ErrorObject>,
    /// The last step the renewal reported (none before its operation started).
    last_step: Option<String>,
    /// Whether the renewal was left journaled.
    journaled: bool,
}

/// The holder's card signed in through the agent in reader 0.
struct Holder {
    stack: Stack,
    card: StackCard,
    inserted: Option<InsertedCard>,
    events: Subscription,
}

impl Holder {
    /// Starts the stack and the agent, and signs in with a new card valid for 30 days.
    fn start() -> Self {
        let mut stack = Stack::start_with(Policy {
            card_capacity: 10_000,
            ..Policy::default()
        })
        .unwrap();
        let card = stack
            .nurse_card(
                serial(1),
                HOLDER_PIN,
                InitialValidity::Days(30),
                AtrProfile::NhsCis,
            )
            .unwrap();
        stack.pin_answers(&[HOLDER_PIN; 32]).unwrap();
        stack.start_agent(&agent_options()).unwrap();
        let mut events = stack.subscribe();
        let inserted = stack.insert(0, &card).unwrap();
        wait_signed_in(&stack, &mut events, "the first sign-in");
        Self {
            stack,
            card,
            inserted: Some(inserted),
            events,
        }
    }

    fn inserted(&self) -> &InsertedCard {
        self.inserted.as_ref().expect("the card is in")
    }

    /// A renewal that nothing interrupts; returns the APDUs the card answered for it.
    fn clean_renewal(&mut self) -> u32 {
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

    /// Renews with pcscd stopped once the card has answered `k` APDUs of the renewal; returns
    /// the renew call's answer, the last step the renewal reported before it ended, and
    /// whether it was left journaled.
    fn renew_and_stop_pcscd_after(&mut self, k: u32, what: &str) -> Stopped {
        // Events of the sign-in before (an expiry warning, say) are not this renewal's.
        while self
            .stack
            .next_matching(&mut self.events, QUIET, |_| true)
            .is_some()
        {}
        self.stack.pin_answers(&[HOLDER_PIN; 32]).unwrap();
        let base = self.inserted().apdus_answered();
        self.inserted().hold_after(base + k);
        let mut client = self.stack.client();
        let renewal = self
            .stack
            .runtime
            .spawn(async move { client.renew().await });
        let deadline = Instant::now() + PATIENCE;
        while !self.inserted().is_held() {
            assert!(
                Instant::now() < deadline,
                "{what}: the card never answered {k} APDUs\n{}",
                log_tail(&self.stack)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(self.inserted().apdus_answered(), base + k, "{what}");
        self.stack.bed.stop_pcscd();
        let answer = self
            .stack
            .block_on(async { tokio::time::timeout(PATIENCE, renewal).await })
            .unwrap_or_else(|_| {
                panic!(
                    "{what}: the renew call hangs with pcscd stopped\n{}",
                    log_tail(&self.stack)
                )
            })
            .expect("the renew call's task");
        let outcome = answer.map_err(|e| match e {
            ClientError::Agent(error) => error,
            other => panic!("{what}: the agent did not answer: {other}"),
        });
        // The steps come before the result; pcscd going away before or after them.
        let mut last_step = None;
        let mut saw_unavailable = false;
        let mut saw_result = false;
        while !(saw_unavailable && saw_result) {
            let event = self
                .stack
                .next_matching(&mut self.events, PATIENCE, |_| true)
                .unwrap_or_else(|| {
                    panic!(
                        "{what}: no operation result and pcscd loss (result {saw_result}, \
                         loss {saw_unavailable})"
                    )
                });
            match event {
                Event::OperationProgress { operation } if !saw_result => {
                    last_step = Some(operation.step.to_string());
                }
                Event::OperationResult { .. } => saw_result = true,
                Event::PcscUnavailable { .. } => saw_unavailable = true,
                _ => {}
            }
        }
        Stopped {
            outcome,
            last_step,
            journaled: journal_file(&self.stack, &self.card).exists(),
        }
    }

    /// Starts pcscd again and puts the card back: its link to the reader went with the old
    /// pcscd.
    fn restart_pcscd(&mut self) {
        self.stack.bed.restart_pcscd().unwrap();
        drop(self.inserted.take());
        self.inserted = Some(self.stack.insert(0, &self.card).unwrap());
    }

    /// The card in reader 0 signs in and agrees with the service, nothing is journaled, and
    /// the new key is of the card's algorithm.
    fn check_recovered(&self, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self.stack.status();
            if status.pcsc.available && status.session.state == SessionState::SignedIn {
                assert_eq!(
                    status.session.serial,
                    Some(self.card.serial.to_string()),
                    "{what}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the agent is not signed in: {status:?}\n{}",
                log_tail(&self.stack)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !journal_file(&self.stack, &self.card).exists(),
            "{what}: the renewal is still journaled\n{}",
            log_tail(&self.stack)
        );
        if let Err(e) = self.stack.card_agrees_with_cms(0, &self.card) {
            panic!("{what}: {e:#}\n{}", log_tail(&self.stack));
        }
        if let Err(e) = self.stack.sign_in_directly(0, HOLDER_PIN) {
            panic!("{what}: the card does not sign in: {e:#}");
        }
        assert_eq!(
            key_algorithm(&self.stack),
            KeyAlgorithm::Rsa2048,
            "{what}: the new key is of the card's algorithm"
        );
    }
}

/// Steps a stop must land right after, the renewal then unfinished, for the matrix to count:
/// the card unlocked by the management-key relay (no new key yet), the new key generated (its
/// certificate not written yet), and the certificate written (not confirmed yet).
const MUST_INTERRUPT_AFTER: [&str; 3] = ["management_key", "key_generated", "certificate_written"];

// Every APDU index is covered rather than a few chosen points: the card holds its next answer
// at the index, so each stop is exact, and a pcscd restart costs about half a second here (the
// whole matrix takes 30 to 45 s, most of it the RSA keys the renewals generate).
#[test]
fn renewal_survives_pcscd_restarted_after_every_apdu() {
    let clock = Instant::now();
    let mut holder = Holder::start();
    let n = holder.clean_renewal();
    eprintln!("a renewal takes {n} APDUs");
    let mut interrupted_after = Vec::new();
    for k in 1..=n {
        let lap = Instant::now();
        let what = format!("pcscd stopped after renewal APDU {k}/{n}");
        let prompts = holder.stack.pin_prompts().len();
        let Stopped {
            outcome,
            last_step,
            journaled,
        } = holder.renew_and_stop_pcscd_after(k, &what);
        match &outcome {
            Ok(status) => {
                assert!(status.done, "{what}: {status:?}");
                assert!(!journaled, "{what}: a finished renewal is still journaled");
            }
            Err(error) => {
                assert_eq!(
                    error.code,
                    ErrorCode::PcscUnavailable,
                    "{what}: the renewal answered {error:?}"
                );
                if journaled {
                    assert!(
                        error.message.contains("finishes"),
                        "{what}: the error does not say the renewal finishes later: {error:?}"
                    );
                    interrupted_after.extend(last_step.clone());
                }
            }
        }
        // Before the journal is written the service has nothing open either.
        let open = holder
            .stack
            .cms
            .database()
            .open_operation(&holder.card.serial.to_string())
            .unwrap();
        assert!(
            journaled || open.is_none(),
            "{what}: the service has an operation open that the agent did not journal"
        );
        let asked_for_renewal = holder.stack.pin_prompts().len() - prompts;
        assert_eq!(asked_for_renewal, 1, "{what}: the renewal's PIN prompt");
        holder.restart_pcscd();
        if journaled {
            wait_signed_in(&holder.stack, &mut holder.events, &what);
            let asked = holder.stack.pin_prompts().len() - prompts - asked_for_renewal;
            assert_eq!(asked, 1, "{what}: PIN prompts to sign in again");
        }
        holder.check_recovered(&what);
        eprintln!(
            "{what} (last step {}): renew {}, {}signed in and agrees ({} ms)",
            last_step.as_deref().unwrap_or("none"),
            outcome_name(&outcome),
            if journaled {
                "finished at sign-in, "
            } else {
                ""
            },
            lap.elapsed().as_millis()
        );
    }
    for step in MUST_INTERRUPT_AFTER {
        assert!(
            interrupted_after.iter().any(|s| s == step),
            "no stop interrupted the renewal right after {step}: {interrupted_after:?}"
        );
    }
    eprintln!("pcscd restart matrix: {:?}", clock.elapsed());
}
