//! The card doctor over the real stack: a healthy card, a cancelled passcode prompt, a wrong
//! passcode try, an expired card, a certificate deleted by another program (written back from
//! the service by healing, unless the card's key changed too), and a renewal interrupted after
//! the card got its new key, finished by healing.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use agent_ipc::{DoctorCheck, DoctorReport, ErrorCode, Event, SessionState};
use cardsim::AtrProfile;
use cms::issuance::InitialValidity;
use piv::consts::key;
use piv::{CardSerial, Pin, PivCard};
use std::ffi::CString;
use testbed::agent_client::OperationReport;
use testbed::stack::{AgentOptions, Stack, StackCard};

const CHECKS: [&str; 8] = [
    "applet",
    "chuid",
    "certificate",
    "certificate_chain",
    "expiry",
    "pin",
    "key_matches_certificate",
    "unfinished_operation",
];

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x2D, n])
}

/// A stack with one card for Jane Doe (`validity`), the agent started without signing in on
/// insertion, and the card inserted in reader 0 and seen by the agent.
fn stack_with_card(
    n: u8,
    validity: InitialValidity,
    pin_answers: &[&str],
) -> (Stack, StackCard, cardsim::InsertedCard) {
    let (mut stack, card) =
        Stack::with_nurse_card(serial(n), validity, AtrProfile::NhsCis).unwrap();
    stack.pin_answers(pin_answers).unwrap();
    stack
        .start_agent(&AgentOptions {
            login_on_insert: false,
            ..AgentOptions::default()
        })
        .unwrap();
    let mut events = stack.subscribe();
    let inserted = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::CardInserted { .. }));
    (stack, card, inserted)
}

fn doctor(stack: &Stack, heal: bool) -> DoctorReport {
    stack
        .block_on(stack.client().doctor(None, heal))
        .expect("the doctor's report")
}

fn check<'a>(report: &'a DoctorReport, name: &str) -> &'a DoctorCheck {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#?}"))
}

/// Asserts the checks come in the documented order and each has the expected outcome
/// (`ok` for those not named).
fn assert_outcomes(report: &DoctorReport, expected: &[(&str, &str)]) {
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, CHECKS, "{report:#?}");
    for c in &report.checks {
        let want = expected
            .iter()
            .find(|(name, _)| *name == c.name)
            .map_or("ok", |(_, outcome)| outcome);
        assert_eq!(c.outcome.as_str(), want, "{}: {report:#?}", c.name);
        assert!(!c.message.is_empty(), "{}", c.name);
    }
}

fn connect(stack: &Stack, slot: usize) -> (pcsc::Context, CString) {
    (
        stack.bed.context().unwrap(),
        CString::new(stack.bed.reader_name(slot)).unwrap(),
    )
}

#[test]
fn a_healthy_card_is_all_ok() {
    let (stack, card, _inserted) = stack_with_card(1, InitialValidity::Days(400), &["246810"]);
    let report = doctor(&stack, false);
    assert_outcomes(&report, &[]);
    assert_eq!(report.card.serial, Some(card.serial.to_string()));
    assert!(report.card.piv);
    assert!(!report.card.expired);
    assert!(check(&report, "key_matches_certificate")
        .message
        .contains("matches"));
    let prompts = stack.pin_prompts();
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    let asked = prompts[0].to_string();
    assert!(asked.contains(&card.serial.to_string()), "{asked}");
    assert!(asked.contains("card doctor"), "{asked}");
    // The doctor wrote nothing: the card and the service still agree.
    stack.card_agrees_with_cms(0, &card).unwrap();
}

#[test]
fn a_cancelled_prompt_leaves_the_key_unchecked() {
    let (stack, _card, _inserted) = stack_with_card(2, InitialValidity::Days(400), &["!cancel"]);
    let report = doctor(&stack, false);
    assert_outcomes(&report, &[("key_matches_certificate", "warning")]);
    let key_check = check(&report, "key_matches_certificate");
    assert!(
        key_check.message.starts_with("Not checked"),
        "{}",
        key_check.message
    );
    assert!(
        key_check.message.contains("cancelled"),
        "{}",
        key_check.message
    );
}

#[test]
fn a_wrong_passcode_try_is_a_warning_until_the_right_one() {
    let (stack, card, _inserted) =
        stack_with_card(3, InitialValidity::Days(400), &["246810", "246810"]);
    // Another program tries a wrong passcode once.
    {
        let (ctx, reader) = connect(&stack, 0);
        let mut piv = PivCard::connect(&ctx, &reader).unwrap();
        let tx = piv.transaction().unwrap();
        let wrong = tx.verify_pin(&Pin::new("999999").unwrap()).unwrap_err();
        assert!(
            matches!(wrong, piv::Error::WrongPin { tries_left: 2 }),
            "{wrong:?}"
        );
        drop(tx);
        piv.disconnect().unwrap();
    }
    let report = doctor(&stack, false);
    assert_outcomes(&report, &[("pin", "warning")]);
    let pin = check(&report, "pin");
    assert!(pin.message.contains("2 of 3 tries"), "{}", pin.message);
    let prompts = stack.pin_prompts();
    assert!(
        prompts[0].to_string().contains("2 tries left"),
        "{prompts:?}"
    );

    // The right passcode at the doctor's prompt set the count back.
    let again = doctor(&stack, false);
    assert_outcomes(&again, &[]);
    stack.card_agrees_with_cms(0, &card).unwrap();
}

#[test]
fn an_expired_card_needs_the_ra() {
    let (stack, _card, _inserted) = stack_with_card(4, InitialValidity::Expired, &["246810"]);
    let report = doctor(&stack, false);
    assert_outcomes(&report, &[("expiry", "needs_ra")]);
    assert_eq!(
        check(&report, "expiry").message,
        agent::cms::EXPIRED_MESSAGE
    );
    assert!(report.card.expired);
}

/// Another program holding the card's management key empties its certificate object and,
/// with `new_key`, also replaces the card's key.
fn lose_certificate(stack: &Stack, card: &StackCard, new_key: bool) {
    stack.lose_certificate(0, card, new_key).unwrap();
}

/// Whether the card in reader 0 holds a certificate.
fn has_certificate(stack: &Stack) -> bool {
    let (ctx, reader) = connect(stack, 0);
    let mut piv = PivCard::connect(&ctx, &reader).unwrap();
    let tx = piv.transaction().unwrap();
    match tx.read_certificate(key::AUTHENTICATION) {
        Ok(_) => true,
        Err(piv::Error::NotFound) => false,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_deleted_certificate_is_written_back_from_the_service_by_healing() {
    let (stack, card, inserted) = stack_with_card(
        5,
        InitialValidity::Days(400),
        &["246810", "246810", "246810"],
    );
    lose_certificate(&stack, &card, false);
    assert!(!has_certificate(&stack));
    // Out and in again: the agent sees the card without its certificate.
    let mut events = stack.subscribe();
    stack.bed.remove(0, inserted).unwrap();
    let _inserted = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::CardInserted { .. }));

    // Signing in is refused before any passcode prompt, saying what heals it.
    let refused = stack
        .block_on(stack.client().login(None))
        .expect_err("no sign-in without a certificate");
    let agent_ipc::ClientError::Agent(refused) = refused else {
        panic!("{refused:?}")
    };
    assert!(
        refused.message.contains("lost its certificate") && refused.message.contains("doctor"),
        "{refused:?}"
    );
    assert!(stack.pin_prompts().is_empty(), "{:?}", stack.pin_prompts());

    // With the service unreachable there is no copy to prove the key against: try again later.
    stack.cms_refuse_after(Some(stack.cms_requests()));
    let unreachable = doctor(&stack, true);
    stack.cms_refuse_after(None);
    assert_outcomes(
        &unreachable,
        &[
            ("certificate", "warning"),
            ("certificate_chain", "warning"),
            ("expiry", "warning"),
            ("key_matches_certificate", "warning"),
        ],
    );
    let certificate = &check(&unreachable, "certificate").message;
    assert!(certificate.contains("cannot be reached"), "{certificate}");
    assert!(stack.pin_prompts().is_empty(), "{:?}", stack.pin_prompts());

    // Examined: the card's key matches the service's copy, which healing writes back.
    let report = doctor(&stack, false);
    assert_outcomes(
        &report,
        &[
            ("certificate", "warning"),
            ("certificate_chain", "warning"),
            ("expiry", "warning"),
        ],
    );
    let certificate = check(&report, "certificate").message.clone();
    assert!(
        certificate.contains("missing") && certificate.contains("healing"),
        "{certificate}"
    );
    assert!(check(&report, "key_matches_certificate")
        .message
        .contains("Card Management Service's record"));
    assert!(!has_certificate(&stack), "examining writes nothing");

    let healed = doctor(&stack, true);
    assert_outcomes(&healed, &[("certificate", "healed")]);
    assert!(healed.card.days_left.unwrap() > 390, "{healed:#?}");
    let OperationReport {
        steps,
        operation,
        error,
    } = stack.follow_operation(&mut events);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(operation.kind, agent_ipc::OperationKind::Restore);
    assert_eq!(operation.step, agent_ipc::OperationStep::Confirmed);
    assert_eq!(
        steps,
        [
            "started",
            "management_key",
            "certificate_written",
            "confirmed"
        ],
        "no key is generated"
    );
    stack.card_agrees_with_cms(0, &card).unwrap();
    assert!(
        stack.audit_log().contains("\"event\":\"restore\""),
        "{}",
        stack.audit_log()
    );
    let prompts = stack.pin_prompts();
    assert!(
        prompts[1].to_string().contains("written back"),
        "{prompts:?}"
    );

    // The card signs in again.
    stack.block_on(stack.client().login(None)).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));
    assert_eq!(stack.pin_prompts().len(), 3);
}

#[test]
fn a_certificate_lost_with_the_key_replaced_needs_the_ra_and_nothing_is_written() {
    let (stack, card, _inserted) =
        stack_with_card(7, InitialValidity::Days(400), &["246810", "246810"]);
    lose_certificate(&stack, &card, true);
    let expected = [
        ("certificate", "needs_ra"),
        ("certificate_chain", "warning"),
        ("expiry", "warning"),
        ("key_matches_certificate", "needs_ra"),
    ];
    for heal in [false, true] {
        let report = doctor(&stack, heal);
        assert_outcomes(&report, &expected);
        let certificate = &check(&report, "certificate").message;
        assert!(
            certificate.contains("not for the key the card holds")
                && certificate.contains("Registration Authority"),
            "{certificate}"
        );
        assert_eq!(report.card.holder, None);
    }
    assert!(!has_certificate(&stack));
    assert!(
        !stack.audit_log().contains("restore"),
        "{}",
        stack.audit_log()
    );
    let served = stack
        .cms
        .database()
        .audit_log(Some(&card.serial.to_string()), 50);
    assert!(
        !served
            .unwrap()
            .iter()
            .any(|e| e.action.starts_with("restore")),
        "the service was asked for nothing"
    );
}

#[test]
fn an_interrupted_renewal_is_finished_by_healing() {
    let (mut stack, card) =
        Stack::with_nurse_card(serial(6), InitialValidity::Days(30), AtrProfile::NhsCis).unwrap();
    // Sign-in, renewal, doctor, healing doctor, sign-in again.
    stack.pin_answers(&[card.pin.as_str(); 5]).unwrap();
    stack.start_agent(&AgentOptions::default()).unwrap();
    let mut events = stack.subscribe();
    let inserted = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));

    // The service goes away right after unlocking the card for the renewal: the card has its
    // new key, the service has not issued its certificate.
    let served = stack.cms_requests();
    // start, witness, response — then the certificate request.
    stack.cms_refuse_after(Some(served + 3));
    let failed = stack.block_on(stack.client().renew()).unwrap_err();
    let agent_ipc::ClientError::Agent(failed) = failed else {
        panic!("{failed:?}")
    };
    assert_eq!(failed.code, ErrorCode::CmsUnreachable, "{failed:?}");
    stack.cms_refuse_after(None);

    let report = doctor(&stack, false);
    assert_outcomes(
        &report,
        &[
            ("expiry", "warning"),
            ("key_matches_certificate", "warning"),
            ("unfinished_operation", "warning"),
        ],
    );
    assert_eq!(
        check(&report, "unfinished_operation").message,
        "An interrupted renewal; it finishes at the next sign-in."
    );
    assert!(check(&report, "key_matches_certificate")
        .message
        .contains("does not match"));

    let healed = doctor(&stack, true);
    assert_outcomes(
        &healed,
        &[
            ("key_matches_certificate", "healed"),
            ("unfinished_operation", "healed"),
        ],
    );
    assert!(healed.card.days_left.unwrap() > 700, "{healed:#?}");
    // The failed renewal's result, then the finished one's.
    let Event::OperationResult { error, .. } =
        stack.wait_for(&mut events, |e| matches!(e, Event::OperationResult { .. }))
    else {
        unreachable!()
    };
    assert_eq!(error.map(|e| e.code), Some(ErrorCode::CmsUnreachable));
    let Event::OperationResult { operation, error } =
        stack.wait_for(&mut events, |e| matches!(e, Event::OperationResult { .. }))
    else {
        unreachable!()
    };
    assert!(error.is_none(), "{error:?}");
    assert_eq!(operation.step, agent_ipc::OperationStep::Confirmed);
    // The holder stays signed in with the renewed card, which agrees with the service.
    let status = stack.status();
    assert_eq!(status.session.state, SessionState::SignedIn);
    assert!(status.readers[0].card.as_ref().unwrap().days_left.unwrap() > 700);
    stack.card_agrees_with_cms(0, &card).unwrap();
    assert!(stack.audit_log().contains("by the card doctor"));

    // Out and in again: the card signs in.
    let _again = stack.reinsert_and_sign_in(&mut events, inserted, &card);
    assert_eq!(stack.pin_prompts().len(), 5);
}

#[test]
fn a_restore_pulled_after_any_apdu_is_healed_by_the_next_try() {
    let pin = "246810";
    let (stack, card, inserted) = stack_with_card(8, InitialValidity::Days(400), &[]);
    let mut events = stack.subscribe();
    let mut inserted = Some(inserted);
    let answered = |i: &Option<cardsim::InsertedCard>| i.as_ref().unwrap().apdus_answered();

    // A restore nothing interrupts, to count the doctor's APDUs.
    lose_certificate(&stack, &card, false);
    stack.pin_answers(&[pin]).unwrap();
    let base = answered(&inserted);
    assert_outcomes(&doctor(&stack, true), &[("certificate", "healed")]);
    let n = answered(&inserted) - base;
    eprintln!("a healing doctor with a restore takes {n} APDUs");

    for k in 1..=n {
        let what = format!("restore pulled after APDU {k}/{n}");
        lose_certificate(&stack, &card, false);
        stack.pin_answers(&[pin, pin]).unwrap();
        let card_in = inserted.take().unwrap();
        let base = card_in.apdus_answered();
        card_in.pull_after(base + k);
        // The doctor answers: an error if the card went while it read, else its report.
        let first = stack.block_on(stack.client().doctor(None, true));
        if let Ok(report) = &first {
            let outcome = &check(report, "certificate").outcome;
            assert!(
                ["warning", "healed"].contains(&outcome.as_str()),
                "{what}: {report:#?}"
            );
        }
        if card_in.is_connected() {
            card_in.pull_after(0);
        }
        card_in.wait().unwrap();
        stack.wait_for(&mut events, |e| matches!(e, Event::CardRemoved { .. }));
        inserted = Some(stack.insert(0, &card).unwrap());
        stack.wait_for(&mut events, |e| matches!(e, Event::CardInserted { .. }));

        // The next try heals what is left, or finds nothing to heal.
        let again = doctor(&stack, true);
        let outcome = check(&again, "certificate").outcome;
        assert!(
            ["healed", "ok"].contains(&outcome.as_str()),
            "{what}: {again:#?}"
        );
        for c in again.checks.iter().filter(|c| c.name != "certificate") {
            assert_eq!(c.outcome, agent_ipc::CheckOutcome::Ok, "{what}: {again:#?}");
        }
        if let Err(e) = stack.card_agrees_with_cms(0, &card) {
            panic!("{what}: {e:#}");
        }
        eprintln!(
            "{what}: first try {}, then {outcome}",
            if first.is_ok() { "answered" } else { "failed" }
        );
    }
}

#[test]
fn while_the_doctor_runs_other_card_work_is_busy_and_status_still_answers() {
    let (mut stack, card) =
        Stack::with_nurse_card(serial(9), InitialValidity::Days(30), AtrProfile::NhsCis).unwrap();
    // The sign-in's passcode, then a doctor's prompt nobody answers.
    stack.pin_answers(&["246810", "!hang"]).unwrap();
    stack.start_agent(&AgentOptions::default()).unwrap();
    let mut events = stack.subscribe();
    let _inserted = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));

    let mut first = stack.client();
    let examining = stack
        .runtime
        .spawn(async move { first.doctor(None, false).await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while stack.pin_prompts().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the doctor never asked"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let busy =
        |outcome: Result<serde_json::Value, agent_ipc::ClientError>, what: &str| match outcome {
            Err(agent_ipc::ClientError::Agent(e)) => {
                assert_eq!(e.code, ErrorCode::Busy, "{what}: {e:?}");
                assert!(e.message.contains("doctor"), "{what}: {}", e.message);
            }
            other => panic!("{what}: {other:?}"),
        };
    busy(
        stack
            .block_on(stack.client().doctor(None, false))
            .map(|r| serde_json::to_value(r).unwrap()),
        "a second doctor",
    );
    busy(
        stack
            .block_on(stack.client().renew())
            .map(|r| serde_json::to_value(r).unwrap()),
        "a renewal",
    );
    // Everything else is served, and the holder stays signed in.
    let status = stack.status();
    assert_eq!(status.session.state, SessionState::SignedIn);
    assert!(!examining.is_finished());
    examining.abort();
}
