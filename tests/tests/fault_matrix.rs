//! The fault matrix of renewal and repair through the agent, over the real stack: the card
//! pulled after every APDU, the agent killed at every step, the service unreachable before
//! every call. Whatever the interruption, the agent finishes the operation by itself and the
//! card ends able to sign in, agreeing with the service.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use agent_ipc::{
    ClientError, ErrorCode, ErrorObject, Event, OperationStatus, SessionState, Subscription,
};
use cardsim::{AtrProfile, InsertedCard};
use cms::issuance::InitialValidity;
use piv::{CardSerial, KeyAlgorithm};
use std::time::{Duration, Instant};
use testbed::agent_client::RENEWAL_STEPS;
use testbed::fault::{
    agent_options, journal_file, key_algorithm, log_tail, outcome_name, wait_signed_in, Holder,
    HOLDER_PIN, PATIENCE,
};
use testbed::stack::{Stack, StackCard, NURSE, RA_OFFICER};

/// The officer's PIN.
const OFFICER_PIN: &str = "192837";
/// The PIN a repaired card's holder chooses.
const NEW_PIN: &str = "13572468";

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x3B, n])
}

/// The scripted pinentry answers `pin` to every prompt for a while.
fn answer_pin(stack: &Stack, pin: &str) {
    stack.pin_answers(&[pin; 32]).unwrap();
}

/// Waits until every one of `wanted` has matched an event, in any order; returns the first
/// event each matched. `None` when `timeout` passes first.
fn wait_all(
    stack: &Stack,
    events: &mut Subscription,
    timeout: Duration,
    wanted: &[&dyn Fn(&Event) -> bool],
) -> Option<Vec<Event>> {
    stack.block_on(async {
        let mut found: Vec<Option<Event>> = vec![None; wanted.len()];
        tokio::time::timeout(timeout, async {
            while found.iter().any(Option::is_none) {
                let event = events.next_event().await.expect("the event stream");
                for (slot, want) in found.iter_mut().zip(wanted) {
                    if slot.is_none() && want(&event) {
                        *slot = Some(event.clone());
                    }
                }
            }
        })
        .await
        .ok()?;
        Some(found.into_iter().map(Option::unwrap).collect())
    })
}

/// [`wait_signed_in`] for an agent just started: it may have signed in before the
/// subscription.
fn wait_signed_in_after_start(stack: &Stack, events: &mut Subscription, slot: usize, what: &str) {
    if stack.status().session.state != SessionState::SignedIn {
        wait_signed_in(stack, events, slot, what);
    }
}

fn is_removal_from(reader: String) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::CardRemoved { reader: r, .. } if *r == reader)
}

fn is_result(e: &Event) -> bool {
    matches!(e, Event::OperationResult { .. })
}

/// The agent's answer to a renew or repair call: the status, or the error it answered with.
fn agent_answer(
    answer: Result<OperationStatus, ClientError>,
) -> Result<OperationStatus, ErrorObject> {
    answer.map_err(|e| match e {
        ClientError::Agent(error) => error,
        other => panic!("the agent did not answer: {other}"),
    })
}

fn renew(stack: &Stack) -> Result<OperationStatus, ErrorObject> {
    agent_answer(stack.block_on(stack.client().renew()))
}

fn repair(stack: &Stack, card: &StackCard) -> Result<OperationStatus, ErrorObject> {
    agent_answer(stack.block_on(stack.client().repair(
        Some(stack.bed.reader_name(1)),
        Some(card.serial.to_string()),
    )))
}

/// The holder signed in with card 1. A card that takes every algorithm gets the service's
/// strongest: the renewal matrix relays AES-256 (the repair matrix below, 3DES).
fn signed_in_holder() -> Holder {
    let holder = Holder::start(serial(1));
    assert_eq!(
        holder
            .stack
            .card_record(&holder.card)
            .unwrap()
            .management_algorithm,
        piv::ManagementAlgorithm::Aes256
    );
    holder
}

/// Waits for the renew call's result and for the card to leave reader 0 (pulling it now if the
/// fault did not), then inserts it again and waits until the agent signs in with it, finishing
/// what the journal held. Returns whether a renewal was left to finish.
fn reinsert_and_sign_in(holder: &mut Holder, what: &str) -> bool {
    let inserted = holder.inserted.take().expect("the card is in");
    if inserted.is_connected() {
        inserted.pull_after(0);
    }
    inserted.wait().unwrap();
    let removed = is_removal_from(holder.stack.bed.reader_name(0));
    wait_all(
        &holder.stack,
        &mut holder.events,
        PATIENCE,
        &[&is_result, &removed],
    )
    .unwrap_or_else(|| panic!("{what}: no result and removal\n{}", log_tail(&holder.stack)));
    let journaled = holder.journaled();
    holder.inserted = Some(holder.stack.insert(0, &holder.card).unwrap());
    wait_signed_in(&holder.stack, &mut holder.events, 0, what);
    assert!(
        !holder.journaled(),
        "{what}: the renewal is still journaled"
    );
    journaled
}

#[test]
fn renewal_survives_a_pull_after_every_apdu() {
    let clock = Instant::now();
    let mut holder = signed_in_holder();
    let n = holder.clean_renewal();
    eprintln!("a renewal takes {n} APDUs");
    // The protocol's 15 for an RSA-2048 card, the PIN logout and the management-key logout
    // (BENCHMARKS.md says why each is there).
    assert!(n <= 17, "a renewal takes {n} APDUs, more than 15 + 2");
    for k in 1..=n {
        let lap = Instant::now();
        let what = format!("renewal pulled after APDU {k}/{n}");
        answer_pin(&holder.stack, HOLDER_PIN);
        let base = holder.inserted().apdus_answered();
        holder.inserted().pull_after(base + k);
        let outcome = renew(&holder.stack);
        if let Err(error) = &outcome {
            assert!(
                matches!(
                    error.code,
                    ErrorCode::CardRemoved | ErrorCode::CardError | ErrorCode::NoCard
                ),
                "{what}: {error:?}"
            );
        }
        let answered = holder.inserted().apdus_answered() - base;
        let resumed = reinsert_and_sign_in(&mut holder, &what);
        holder.check_agreement(&what);
        eprintln!(
            "{what}: renew {}, pulled after {answered}, {}signed in again and agrees ({} ms)",
            outcome_name(&outcome),
            if resumed { "finished at sign-in, " } else { "" },
            lap.elapsed().as_millis()
        );
    }
    eprintln!("renewal pull matrix: {:?}", clock.elapsed());
}

#[test]
fn renewal_survives_the_agent_killed_at_each_step() {
    let clock = Instant::now();
    let mut holder = signed_in_holder();
    for step in RENEWAL_STEPS {
        let lap = Instant::now();
        let what = format!("agent killed at {step}");
        answer_pin(&holder.stack, HOLDER_PIN);
        let renewal = holder.spawn_renewal();
        let reached = |e: &Event| matches!(e, Event::OperationProgress { operation } if operation.step.as_str() == step);
        wait_all(&holder.stack, &mut holder.events, PATIENCE, &[&reached])
            .unwrap_or_else(|| panic!("{what}: the step never came\n{}", log_tail(&holder.stack)));
        holder.stack.kill_agent().unwrap();
        // The call ends with the agent, whatever it answered last.
        let _ = holder.stack.block_on(renewal).unwrap();
        let journaled = holder.journaled();
        answer_pin(&holder.stack, HOLDER_PIN);
        holder.stack.start_agent(&agent_options()).unwrap();
        holder.events = holder.stack.subscribe();
        wait_signed_in_after_start(&holder.stack, &mut holder.events, 0, &what);
        assert!(
            !holder.journaled(),
            "{what}: the renewal is still journaled"
        );
        holder.check_agreement(&what);
        eprintln!(
            "{what}: {}restarted, signed in and agrees ({} ms)",
            if journaled {
                "journaled, finished at sign-in, "
            } else {
                ""
            },
            lap.elapsed().as_millis()
        );
    }
    eprintln!("agent kill matrix: {:?}", clock.elapsed());
}

#[test]
fn renewal_survives_the_cms_stopped_before_each_call() {
    let clock = Instant::now();
    let mut holder = signed_in_holder();
    let before = holder.stack.cms_requests();
    holder.clean_renewal();
    let m = holder.stack.cms_requests() - before;
    eprintln!("a renewal makes {m} service requests");
    // The service's 5 operation calls and the logout of the renewal's own token.
    assert!(
        m <= 6,
        "a renewal makes {m} service requests, more than 5 + 1"
    );
    for c in 0..m {
        let lap = Instant::now();
        let what = format!("service stopped before request {}/{m}", c + 1);
        answer_pin(&holder.stack, HOLDER_PIN);
        let base = holder.stack.cms_requests();
        holder.stack.cms_refuse_after(Some(base + c));
        let outcome = renew(&holder.stack);
        holder.stack.cms_refuse_after(None);
        match &outcome {
            Err(error) => assert_eq!(error.code, ErrorCode::CmsUnreachable, "{what}: {error:?}"),
            // Only the logout of the renewal's own token, after the confirmation, may be refused
            // without the renewal failing.
            Ok(_) => assert_eq!(c + 1, m, "{what}: the renewal did not fail"),
        }
        let resumed = reinsert_and_sign_in(&mut holder, &what);
        holder.check_agreement(&what);
        eprintln!(
            "{what}: renew {}, {}inserted again, signed in and agrees ({} ms)",
            outcome_name(&outcome),
            if resumed {
                "journaled, finished at sign-in, "
            } else {
                ""
            },
            lap.elapsed().as_millis()
        );
    }
    eprintln!("service stop matrix: {:?}", clock.elapsed());
}

/// The officer signed in through the agent in reader 0, and expired holder cards to repair in
/// reader 1.
struct Repairs {
    stack: Stack,
    jane: String,
    _officer: InsertedCard,
    events: Option<Subscription>,
}

/// An expired card of Jane's (`jane`) that takes 3DES management keys only, as a factory
/// YubiKey before 5.4, issued through reader 1 (which must be empty).
fn expired_card(stack: &Stack, jane: &str, n: u8) -> StackCard {
    let spec =
        cardsim::CardSpec::new(serial(n)).with_management_algorithm(piv::ManagementAlgorithm::Tdes);
    stack
        .issue_spec(
            jane,
            spec,
            HOLDER_PIN,
            InitialValidity::Expired,
            KeyAlgorithm::Rsa2048,
        )
        .unwrap()
}

impl Repairs {
    /// Starts the stack with Jane's expired card `first` issued, and the agent with the
    /// officer signed in.
    fn start(first: u8) -> (Self, StackCard) {
        let stack = Stack::start().unwrap();
        let (jane, _) = stack.user("Jane Doe", &[NURSE]).unwrap();
        let (olu, _) = stack.user("Olu Officer", &[RA_OFFICER]).unwrap();
        let officer = stack
            .issue(
                &olu,
                serial(2),
                OFFICER_PIN,
                InitialValidity::Days(730),
                AtrProfile::NhsCis,
            )
            .unwrap();
        let card = expired_card(&stack, &jane, first);
        let inserted = stack.insert(0, &officer).unwrap();
        let mut repairs = Self {
            events: None,
            stack,
            jane,
            _officer: inserted,
        };
        repairs.start_agent();
        (repairs, card)
    }

    /// Starts the agent (the officer's card in reader 0, reader 1 empty) and waits until the
    /// officer is signed in.
    fn start_agent(&mut self) {
        answer_pin(&self.stack, OFFICER_PIN);
        self.stack.start_agent(&agent_options()).unwrap();
        let mut events = self.stack.subscribe();
        wait_signed_in_after_start(&self.stack, &mut events, 0, "the officer's sign-in");
        self.events = Some(events);
    }

    /// Issues Jane's expired cards `numbers` with the agent stopped meanwhile (issuing uses
    /// reader 1), and signs the officer in again.
    fn issue_expired(&mut self, numbers: impl Iterator<Item = u8>) -> Vec<StackCard> {
        self.stack.stop_agent().unwrap();
        self.events = None;
        let cards = numbers
            .map(|n| expired_card(&self.stack, &self.jane, n))
            .collect();
        self.start_agent();
        cards
    }

    /// [`wait_all`] on the officer's events, for as long as a repair may take.
    fn wait_all(&mut self, wanted: &[&dyn Fn(&Event) -> bool]) -> Option<Vec<Event>> {
        wait_all(&self.stack, self.events.as_mut().unwrap(), PATIENCE, wanted)
    }

    /// After an interrupted repair that started nothing: the officer repairs `card` again, and
    /// the repair's result comes.
    fn repair_again(&mut self, card: &StackCard, what: &str) {
        repair(&self.stack, card).unwrap_or_else(|e| panic!("{what}: the repair again: {e:?}"));
        self.wait_all(&[&is_result]).unwrap();
    }

    /// Inserts `card` into reader 1 and waits until the agent has seen it.
    fn insert_holder(&mut self, card: &StackCard) -> InsertedCard {
        let inserted = self.stack.insert(1, card).unwrap();
        let reader = self.stack.bed.reader_name(1);
        let serial = card.serial.to_string();
        let seen = |e: &Event| {
            matches!(e, Event::CardInserted { reader: r, card: c }
                if *r == reader && c.serial.as_deref() == Some(serial.as_str()))
        };
        self.wait_all(&[&seen])
            .expect("the agent sees the holder's card");
        inserted
    }

    /// Takes the card out of reader 1 and waits until the agent has seen it go.
    fn remove_holder(&mut self, inserted: InsertedCard) {
        self.stack.bed.remove(1, inserted).unwrap();
        let removed = is_removal_from(self.stack.bed.reader_name(1));
        self.wait_all(&[&removed])
            .expect("the agent sees the card go");
    }

    /// After an interrupted repair whose card left reader 1: waits for the repair's result and
    /// the removal, and checks that what is left to finish is journaled (nothing may be open
    /// at the service otherwise). Returns whether it is journaled.
    fn interrupted(&mut self, card: &StackCard, what: &str) -> bool {
        let removed = is_removal_from(self.stack.bed.reader_name(1));
        self.wait_all(&[&is_result, &removed])
            .unwrap_or_else(|| panic!("{what}: no result and removal\n{}", log_tail(&self.stack)));
        let journaled = journal_file(&self.stack, card).exists();
        let open = self
            .stack
            .cms
            .database()
            .open_operation(&card.serial.to_string())
            .unwrap();
        assert!(
            journaled || open.is_none(),
            "{what}: the service has an operation open that the agent did not journal\n{}",
            log_tail(&self.stack)
        );
        journaled
    }

    /// The repaired card in reader 1 signs in with the new PIN and agrees with the service.
    fn check_repaired(&self, card: &StackCard, what: &str) {
        if let Err(e) = self.stack.sign_in_directly(1, NEW_PIN) {
            panic!(
                "{what}: the repaired card does not sign in: {e:#}\n{}",
                log_tail(&self.stack)
            );
        }
        let repaired = StackCard {
            pin: NEW_PIN.into(),
            ..card.clone()
        };
        if let Err(e) = self.stack.card_agrees_with_cms(1, &repaired) {
            panic!("{what}: {e:#}\n{}", log_tail(&self.stack));
        }
        assert_eq!(
            key_algorithm(&self.stack, 1),
            KeyAlgorithm::Rsa2048,
            "{what}: the new key is of the card's algorithm"
        );
    }
}

#[test]
fn repair_survives_a_pull_after_every_apdu() {
    let clock = Instant::now();
    let (mut repairs, first) = Repairs::start(0x10);

    // One repair nothing interrupts, to count its APDUs.
    answer_pin(&repairs.stack, NEW_PIN);
    let inserted = repairs.insert_holder(&first);
    let before = inserted.apdus_answered();
    let done = repair(&repairs.stack, &first).expect("a repair nothing interrupts");
    assert!(done.done, "{done:?}");
    let n = inserted.apdus_answered() - before;
    repairs.wait_all(&[&is_result]).unwrap();
    repairs.check_repaired(&first, "a repair nothing interrupts");
    repairs.remove_holder(inserted);
    eprintln!("a repair takes {n} APDUs");
    let cards = repairs.issue_expired((1..=n).map(|k| 0x10 + u8::try_from(k).unwrap()));

    for (k, card) in (1..=n).zip(cards) {
        let lap = Instant::now();
        let what = format!("repair pulled after APDU {k}/{n}");
        answer_pin(&repairs.stack, NEW_PIN);
        let inserted = repairs.insert_holder(&card);
        let base = inserted.apdus_answered();
        inserted.pull_after(base + k);
        let outcome = repair(&repairs.stack, &card);
        let answered = inserted.apdus_answered() - base;
        if inserted.is_connected() {
            inserted.pull_after(0);
        }
        inserted.wait().unwrap();
        let journaled = repairs.interrupted(&card, &what);
        let inserted = repairs.insert_holder(&card);
        let finished = if journaled {
            // The agent finishes the repair by itself, asking the holder's new PIN again.
            let serial = card.serial.to_string();
            let result = |e: &Event| matches!(e, Event::OperationResult { operation, .. } if operation.serial == serial);
            let events = repairs.wait_all(&[&result]).unwrap_or_else(|| {
                panic!(
                    "{what}: the repair was not finished\n{}",
                    log_tail(&repairs.stack)
                )
            });
            let Event::OperationResult { error, .. } = &events[0] else {
                unreachable!()
            };
            assert!(error.is_none(), "{what}: finishing failed: {error:?}");
            "finished by the agent"
        } else if outcome.is_ok() {
            "done"
        } else {
            // Nothing was started: the officer repairs the card again.
            repairs.repair_again(&card, &what);
            "repaired again"
        };
        repairs.check_repaired(&card, &what);
        repairs.remove_holder(inserted);
        eprintln!(
            "{what}: repair {}, pulled after {answered}, {finished}, signs in and agrees ({} ms)",
            outcome_name(&outcome),
            lap.elapsed().as_millis()
        );
    }
    eprintln!("repair pull matrix: {:?}", clock.elapsed());
}

#[test]
fn repair_survives_the_cms_stopped_before_each_call() {
    let clock = Instant::now();
    let (mut repairs, first) = Repairs::start(0x40);

    // One repair nothing interrupts, to count its service requests.
    answer_pin(&repairs.stack, NEW_PIN);
    let inserted = repairs.insert_holder(&first);
    let before = repairs.stack.cms_requests();
    let done = repair(&repairs.stack, &first).expect("a repair nothing interrupts");
    assert!(done.done, "{done:?}");
    let m = repairs.stack.cms_requests() - before;
    repairs.wait_all(&[&is_result]).unwrap();
    repairs.check_repaired(&first, "a repair nothing interrupts");
    repairs.remove_holder(inserted);
    eprintln!("a repair makes {m} service requests");
    let count = u8::try_from(m).unwrap();
    let cards = repairs.issue_expired((1..=count).map(|c| 0x40 + c));

    for (c, card) in (0..m).zip(cards) {
        let lap = Instant::now();
        let what = format!(
            "repair with the service stopped before request {}/{m}",
            c + 1
        );
        let serial = card.serial.to_string();
        let cms = repairs.stack.cms.clone();
        let db = cms.database();
        let expired = db.active_certificate(&serial).unwrap().unwrap().der;
        answer_pin(&repairs.stack, NEW_PIN);
        let inserted = repairs.insert_holder(&card);
        let base = repairs.stack.cms_requests();
        repairs.stack.cms_refuse_after(Some(base + c));
        let outcome = repair(&repairs.stack, &card);
        repairs.stack.cms_refuse_after(None);
        if let Err(error) = &outcome {
            assert_eq!(error.code, ErrorCode::CmsUnreachable, "{what}: {error:?}");
        }

        // Pulled and inserted again, the agent finishes what it journaled.
        repairs.stack.bed.remove(1, inserted).unwrap();
        let journaled = repairs.interrupted(&card, &what);
        let inserted = repairs.insert_holder(&card);
        let finished = if journaled {
            // Earlier tries (the agent also retries once the first one fails) may have failed.
            let succeeded = |e: &Event| {
                matches!(e, Event::OperationResult { operation, error: None }
                    if operation.serial == serial)
            };
            repairs.wait_all(&[&succeeded]).unwrap_or_else(|| {
                panic!(
                    "{what}: the repair was not finished\n{}",
                    log_tail(&repairs.stack)
                )
            });
            "finished by the agent"
        } else if db.active_certificate(&serial).unwrap().unwrap().der != expired {
            "done"
        } else {
            // Nothing was started: the officer repairs the card again.
            repairs.repair_again(&card, &what);
            "repaired again"
        };
        assert!(
            !journal_file(&repairs.stack, &card).exists(),
            "{what}: the repair is still journaled"
        );
        repairs.check_repaired(&card, &what);
        repairs.remove_holder(inserted);
        eprintln!(
            "{what}: repair {}, {finished}, signs in and agrees ({} ms)",
            outcome_name(&outcome),
            lap.elapsed().as_millis()
        );
    }
    eprintln!("repair service stop matrix: {:?}", clock.elapsed());
}
