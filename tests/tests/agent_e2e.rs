//! The agent over the real stack: private pcscd with two virtual readers, cards issued by the
//! reference CMS over PC/SC, the CMS over HTTPS, the agent as a process with the scripted
//! pinentry, and clients on its socket.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use agent_ipc::{ErrorCode, Event, SessionEndReason, SessionState, Subscription};
use cardsim::{AtrProfile, InsertedCard};
use cms::issuance::InitialValidity;
use cms_api::client::CmsClient;
use piv::CardSerial;
use std::time::Duration;
use testbed::agent_client::EVENT_TIMEOUT;
use testbed::pki::TestCa;
use testbed::stack::{AgentOptions, Stack, StackCard, NURSE, RA_OFFICER, WARD_MANAGER};
use testbed::user_id_in;

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x29, n])
}

/// A stack with one holder (two roles) and their card, healthy for 400 days.
fn holder_stack() -> (Stack, StackCard, Vec<i64>) {
    let stack = Stack::start().unwrap();
    let (jane, roles) = stack.user("Jane Doe", &[NURSE, WARD_MANAGER]).unwrap();
    let card = stack
        .issue(
            &jane,
            serial(1),
            "246810",
            InitialValidity::Days(400),
            AtrProfile::NhsCis,
        )
        .unwrap();
    (stack, card, roles)
}

/// A stack (service `policy`) with one nurse, Jane Doe, and her card `serial(n)`.
fn nurse_stack(
    policy: cms::Policy,
    n: u8,
    validity: InitialValidity,
    profile: AtrProfile,
) -> (Stack, StackCard) {
    let stack = Stack::start_with(policy).unwrap();
    let card = stack.nurse_card(serial(n), validity, profile).unwrap();
    (stack, card)
}

/// Starts the agent (default options) with the pinentry answering `pins`, subscribes, and inserts
/// `card` into reader 0.
fn start_and_insert(
    stack: &mut Stack,
    pins: &[&str],
    card: &StackCard,
) -> (Subscription, InsertedCard) {
    stack.pin_answers(pins).unwrap();
    stack.start_agent(&AgentOptions::default()).unwrap();
    let events = stack.subscribe();
    let inserted = stack.insert(0, card).unwrap();
    (events, inserted)
}

fn session_ended(reason: SessionEndReason) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::SessionEnded { reason: r, .. } if *r == reason)
}

fn is_session_started(e: &Event) -> bool {
    matches!(e, Event::SessionStarted { .. })
}

/// What `iactl status` prints for people.
fn iactl_status(stack: &Stack) -> String {
    let out = std::process::Command::new(testbed::stack::workspace_binary("iactl").unwrap())
        .arg("--socket")
        .arg(stack.socket().unwrap())
        .arg("status")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The first PIN prompt's description is `expected`, and it names no user id.
fn assert_first_prompt(stack: &Stack, expected: &str) {
    let prompts = stack.pin_prompts();
    let description = prompts[0]["description"].as_str().unwrap();
    assert_eq!(description, expected);
    assert_eq!(user_id_in(description), None, "{description}");
}

/// The status names Jane Doe as the holder of `card` in reader 0, giving her id only in its
/// JSON; returns what `iactl status` printed, which names her card and her but no user id.
fn status_names_jane(stack: &Stack, card: &StackCard) -> String {
    let status = stack.status();
    let shown = status.readers[0].card.as_ref().unwrap();
    assert_eq!(shown.holder.as_deref(), Some("Jane Doe"), "{status:?}");
    assert_eq!(shown.holder_id.as_deref(), Some(card.user_id.as_str()));
    let text = iactl_status(stack);
    assert!(
        text.contains(&format!("NHS CIS card {}, Jane Doe, expires", card.serial)),
        "{text}"
    );
    assert_eq!(user_id_in(&text), None, "{text}");
    text
}

/// Replaces the 9A certificate of `card` (out of every reader) with one the service's CA
/// issued the way it did before certificates named the holder (`CN=<user id>`), valid for
/// 400 days, and records it at the service as the card's active certificate.
fn give_certificate_naming_the_user_id(stack: &Stack, card: &StackCard) {
    let files = cms::ca::CaFiles::in_dir(&stack.bed.dir().join("cms"));
    let key = std::fs::read_to_string(files.ca_key).unwrap();
    let mut ca = TestCa::from_pem(&key, stack.cms.ca().certificate_pem()).unwrap();
    let inserted = stack.insert(1, card).unwrap();
    let ctx = stack.bed.context().unwrap();
    let reader = std::ffi::CString::new(stack.bed.reader_name(1)).unwrap();
    let mut piv_card = piv::PivCard::connect(&ctx, &reader).unwrap();
    let certificate = {
        let tx = piv_card.transaction().unwrap();
        let current = tx
            .read_certificate(piv::consts::key::AUTHENTICATION)
            .unwrap();
        let der = ca
            .issue(&card.user_id, &current.spki_der().unwrap(), 400)
            .unwrap();
        let certificate = piv::Certificate::from_der(&der).unwrap();
        let key = stack
            .cms
            .card_management_key(&card.serial.to_string())
            .unwrap();
        tx.authenticate_management_key(&mut piv::LocalResponder::new(key))
            .unwrap();
        tx.write_certificate(piv::consts::key::AUTHENTICATION, &certificate)
            .unwrap();
        certificate
    };
    piv_card.disconnect().unwrap();
    stack.bed.remove(1, inserted).unwrap();

    let serial = card.serial.to_string();
    let record = cms::db::CertificateRecord {
        serial: certificate.serial_hex(),
        card_serial: serial.clone(),
        operation_id: None,
        spki: certificate.spki_der().unwrap(),
        der: certificate.der().to_vec(),
        not_before: cms::ca::CertificateAuthority::not_before(&certificate),
        not_after: cms::ca::CertificateAuthority::not_after(&certificate),
        status: cms::db::CertificateStatus::Active,
    };
    let event = cms::db::AuditEvent {
        actor: "admin",
        action: "card.certify",
        card_serial: Some(&serial),
        detail: String::new(),
    };
    stack
        .cms
        .database()
        .add_issued_certificate(&record, cms::dates::now(), &event)
        .unwrap();
}

/// No PIN (nor the ticket) in any log the agent or the pinentry wrote, at trace level.
fn assert_no_secrets(stack: &Stack, secrets: &[&str]) {
    let logs = format!(
        "{}{}{}",
        stack.agent_logs(),
        stack.audit_log(),
        serde_json::to_string(&stack.pin_prompts()).unwrap()
    );
    assert!(logs.len() > 1000, "the trace log is suspiciously short");
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret:?} appears in a log");
    }
}

#[test]
fn insert_pin_role_ticket_then_pull_ends_the_session() {
    let (mut stack, card, roles) = holder_stack();
    let (mut events, inserted) = start_and_insert(&mut stack, &[&card.pin, &card.pin], &card);
    let Event::CardInserted { card: seen, .. } =
        stack.wait_for(&mut events, |e| matches!(e, Event::CardInserted { .. }))
    else {
        unreachable!()
    };
    assert_eq!(
        seen.serial.as_deref(),
        Some(card.serial.to_string().as_str())
    );
    assert_eq!(seen.card_type, "NHS CIS");
    assert!(seen.piv && !seen.expired);
    assert!((398..=400).contains(&seen.days_left.unwrap()), "{seen:?}");
    // The certificate names the holder for people, and carries their id for programs.
    assert_eq!(seen.holder.as_deref(), Some("Jane Doe"));
    assert_eq!(seen.holder_id.as_deref(), Some(card.user_id.as_str()));

    let Event::SessionStarted { session } = stack.wait_for(&mut events, is_session_started) else {
        unreachable!()
    };
    assert_eq!(session.state, SessionState::SignedIn);
    assert_eq!(session.user.as_ref().unwrap().name, "Jane Doe");
    assert_eq!(
        session.role, None,
        "two roles and no default: the user picks"
    );
    assert_first_prompt(
        &stack,
        &format!(
            "Enter the passcode of Jane Doe's smartcard {}.\n3 tries left before the card locks.",
            card.serial
        ),
    );

    // The status names the holder; only the JSON carries their id.
    let text = status_names_jane(&stack, &card);
    assert!(text.contains("session: signed in as Jane Doe"), "{text}");

    // Role selection, remembered as the default.
    let mut c = stack.client();
    let listed = stack.block_on(c.roles()).unwrap();
    assert_eq!(listed.roles.len(), 2);
    let manager = roles[1].to_string();
    let selected = stack.block_on(c.select_role(&manager, true)).unwrap();
    assert_eq!(selected.role.unwrap().job_role, "Ward Manager");
    stack.wait_for(&mut events, |e| matches!(e, Event::RoleChanged { .. }));

    // The ticket is accepted by the service, for this user and role.
    let ticket = stack.block_on(c.ticket()).unwrap();
    let cms = CmsClient::new(stack.cms_url(), stack.cms.ca().certificate_pem()).unwrap();
    let valid = stack.block_on(cms.validate_ticket(&ticket.ticket)).unwrap();
    assert_eq!(valid.user.id, card.user_id);
    assert_eq!(valid.role.unwrap().job_role, "Ward Manager");

    // Pulled: the session ends, and the service no longer accepts the ticket.
    stack.bed.remove(0, inserted).unwrap();
    let ended = stack.wait_for(&mut events, session_ended(SessionEndReason::CardRemoved));
    assert!(
        matches!(ended, Event::SessionEnded { serial: Some(s), .. } if s == card.serial.to_string())
    );
    assert_eq!(stack.status().session.state, SessionState::NoCard);
    let refused = (0..50).find_map(|_| {
        std::thread::sleep(Duration::from_millis(50));
        stack.block_on(cms.validate_ticket(&ticket.ticket)).err()
    });
    assert!(refused.is_some(), "the ticket outlived the session");

    // Back in: signed in again with the remembered role.
    let _again = stack.insert(0, &card).unwrap();
    let Event::SessionStarted { session } = stack.wait_for(&mut events, is_session_started) else {
        unreachable!()
    };
    assert_eq!(session.role.unwrap().job_role, "Ward Manager");

    let audit = stack.audit_log();
    for needle in ["sign_in", "sign_out", "card_removed", "role_changed"] {
        assert!(
            audit.contains(needle),
            "{needle} missing from the audit log:\n{audit}"
        );
    }
    assert_no_secrets(&stack, &[&card.pin, &ticket.ticket]);
}

#[test]
fn a_certificate_naming_only_the_user_id_shows_no_id_and_the_session_gives_the_name() {
    let (stack, card) =
        Stack::with_nurse_card(serial(8), InitialValidity::Days(400), AtrProfile::NhsCis).unwrap();
    give_certificate_naming_the_user_id(&stack, &card);
    let mut stack = stack;
    let (mut events, _in) = start_and_insert(&mut stack, &[&card.pin], &card);

    // Before sign-in the certificate gives the id only: no name, and no id for people.
    let Event::CardInserted { card: seen, .. } =
        stack.wait_for(&mut events, |e| matches!(e, Event::CardInserted { .. }))
    else {
        unreachable!()
    };
    assert_eq!(seen.holder, None, "{seen:?}");
    assert_eq!(seen.holder_id.as_deref(), Some(card.user_id.as_str()));

    // The prompt names the card by the serial printed on it.
    stack.wait_for(&mut events, is_session_started);
    assert_first_prompt(
        &stack,
        &format!(
            "Enter the passcode of smartcard {}.\n3 tries left before the card locks.",
            card.serial
        ),
    );

    // Signed in, the status names the holder as the service's session does.
    status_names_jane(&stack, &card);
}

#[test]
fn another_card_in_the_reader_ends_the_session() {
    let (mut stack, jane_card, _) = holder_stack();
    let bob_card = stack
        .nurse_card_of(
            "Bob Smith",
            serial(2),
            "135790",
            InitialValidity::Days(300),
            AtrProfile::Piv,
        )
        .unwrap();
    stack.pin_answers(&[&jane_card.pin, &bob_card.pin]).unwrap();
    // Under `keep` the session survives its card leaving, so only the new card can end it.
    let options = AgentOptions {
        removal_action: "keep",
        ..AgentOptions::default()
    };
    stack.start_agent(&options).unwrap();
    let mut events = stack.subscribe();

    let jane_in = stack.insert(0, &jane_card).unwrap();
    stack.wait_for(&mut events, is_session_started);
    stack.bed.remove(0, jane_in).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::CardRemoved { .. }));
    assert_eq!(stack.status().session.state, SessionState::SignedIn);

    let _bob_in = stack.insert(0, &bob_card).unwrap();
    let ended = stack.wait_for(&mut events, |e| matches!(e, Event::SessionEnded { .. }));
    assert!(
        matches!(
            ended,
            Event::SessionEnded {
                reason: SessionEndReason::CardChanged,
                ..
            }
        ),
        "{ended:?}"
    );
    // Bob's card signs Bob in.
    let Event::SessionStarted { session } = stack.wait_for(&mut events, is_session_started) else {
        unreachable!()
    };
    assert_eq!(session.user.unwrap().name, "Bob Smith");
    assert_eq!(
        session.role.unwrap().job_role,
        "Staff Nurse",
        "one role: selected at once"
    );
    assert_no_secrets(&stack, &[&jane_card.pin, &bob_card.pin]);
}

#[test]
fn a_wrong_pin_shows_tries_left_and_is_never_retried() {
    let (mut stack, card, _) = holder_stack();
    let (mut events, _in) = start_and_insert(&mut stack, &["999999"], &card);

    let failed = stack.wait_for(&mut events, |e| matches!(e, Event::LoginFailed { .. }));
    let Event::LoginFailed { error, .. } = failed else {
        unreachable!()
    };
    assert_eq!(error.code, ErrorCode::WrongPin);
    assert_eq!(error.data.unwrap()["tries_left"], 2);
    assert!(error.message.contains("2 tries left"), "{}", error.message);
    // Not retried: one prompt, and the card waits for the holder.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(stack.pin_prompts().len(), 1);
    assert_eq!(stack.status().session.state, SessionState::CardPresent);

    // The holder tries again: the prompt says 2 tries are left; the right PIN signs in.
    stack.pin_answers(&[&card.pin]).unwrap();
    let session = stack.block_on(stack.client().login(None)).unwrap();
    assert_eq!(session.state, SessionState::SignedIn);
    let prompts = stack.pin_prompts();
    assert!(prompts[1]["description"]
        .as_str()
        .unwrap()
        .contains("2 tries left"));
    assert!(stack.audit_log().contains("wrong_pin"));
    assert_no_secrets(&stack, &[&card.pin, "999999"]);
}

#[test]
fn a_blocked_pin_sends_the_holder_to_the_ra() {
    let (mut stack, card, _) = holder_stack();
    let options = AgentOptions {
        login_on_insert: false,
        ..AgentOptions::default()
    };
    stack.start_agent(&options).unwrap();
    let _in = stack.insert(0, &card).unwrap();
    let mut c = stack.client();
    stack.block_on(async {
        tokio::time::timeout(EVENT_TIMEOUT, async {
            while c
                .status()
                .await
                .unwrap()
                .readers
                .iter()
                .all(|r| r.card.is_none())
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap()
    });
    for expected in [
        ErrorCode::WrongPin,
        ErrorCode::WrongPin,
        ErrorCode::PinBlocked,
    ] {
        stack.pin_answers(&["111111"]).unwrap();
        let e = stack.block_on(c.login(None)).unwrap_err();
        assert_eq!(e.agent_error().unwrap().code, expected, "{e}");
    }
    // Blocked: said at once, without asking for a PIN.
    let e = stack.block_on(c.login(None)).unwrap_err();
    let e = e.agent_error().unwrap();
    assert_eq!(e.code, ErrorCode::PinBlocked);
    assert!(
        e.message.contains("Registration Authority"),
        "{}",
        e.message
    );
    assert_eq!(stack.pin_prompts().len(), 3);
    assert!(stack.audit_log().contains("pin_blocked"));
}

#[test]
fn an_expired_card_is_refused_with_the_ra_message() {
    let (mut stack, card) = nurse_stack(
        cms::Policy::default(),
        3,
        InitialValidity::Expired,
        AtrProfile::Oberthur,
    );
    let (mut events, _in) = start_and_insert(&mut stack, &[&card.pin], &card);

    let Event::CardInserted { card: seen, .. } =
        stack.wait_for(&mut events, |e| matches!(e, Event::CardInserted { .. }))
    else {
        unreachable!()
    };
    assert!(seen.expired);
    assert!(seen.days_left.unwrap() < 0);
    let Event::LoginFailed { error, .. } =
        stack.wait_for(&mut events, |e| matches!(e, Event::LoginFailed { .. }))
    else {
        unreachable!()
    };
    assert_eq!(error.code, ErrorCode::CertificateExpired);
    assert_eq!(
        error.message,
        "Your smartcard has expired — contact your Registration Authority"
    );
    let e = stack.block_on(stack.client().login(None)).unwrap_err();
    assert_eq!(e.agent_error().unwrap().code, ErrorCode::CertificateExpired);
    assert!(
        stack.pin_prompts().is_empty(),
        "no PIN is asked for an expired card"
    );
}

#[test]
fn two_readers_at_once_leave_the_session_with_the_first_card() {
    let stack = Stack::start().unwrap();
    let ra_card = stack
        .officer_card(&[RA_OFFICER], serial(4), "864209")
        .unwrap();
    let holder_card = stack
        .nurse_card_of(
            "Harry Holder",
            serial(5),
            "975310",
            InitialValidity::Expired,
            AtrProfile::YubiKey,
        )
        .unwrap();
    let mut stack = stack;
    let (mut events, _ra_in) = start_and_insert(&mut stack, &[&ra_card.pin], &ra_card);
    stack.wait_for(&mut events, is_session_started);
    let holder_in = stack.insert(1, &holder_card).unwrap();
    stack.wait_for(
        &mut events,
        |e| matches!(e, Event::CardInserted { reader, .. } if *reader == stack.bed.reader_name(1)),
    );
    let now = stack.status();
    assert_eq!(now.session.state, SessionState::SignedIn);
    assert_eq!(now.session.user.as_ref().unwrap().name, "Rita Admin");
    let types: Vec<String> = now
        .readers
        .iter()
        .filter_map(|r| r.card.as_ref().map(|c| c.card_type.clone()))
        .collect();
    assert_eq!(types.len(), 2, "{now:?}");
    // The second card leaving does not touch the session either.
    stack.bed.remove(1, holder_in).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::CardRemoved { .. }));
    assert_eq!(stack.status().session.state, SessionState::SignedIn);
}

#[test]
fn the_agent_recovers_when_pcscd_restarts_during_a_session() {
    let (mut stack, card, _) = holder_stack();
    let (mut events, inserted) = start_and_insert(&mut stack, &[&card.pin, &card.pin], &card);
    stack.wait_for(&mut events, is_session_started);

    stack.bed.stop_pcscd();
    stack.wait_for(&mut events, |e| matches!(e, Event::PcscUnavailable { .. }));
    let down = stack.status();
    assert!(!down.pcsc.available);
    assert!(down.pcsc.message.is_some());

    stack.bed.restart_pcscd().unwrap();
    drop(inserted);
    // The virtual card's link went with the old pcscd: it comes back in.
    let _again = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::PcscAvailable));
    let mut c = stack.client();
    stack.block_on(async {
        tokio::time::timeout(EVENT_TIMEOUT, async {
            loop {
                let now = c.status().await.unwrap();
                if now.pcsc.available
                    && now.session.state == SessionState::SignedIn
                    && now.readers.len() == 2
                {
                    assert_eq!(now.session.serial, Some(card.serial.to_string()));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the agent did not come back to a signed-in session")
    });
    assert_no_secrets(&stack, &[&card.pin]);
}

#[test]
fn the_agent_stops_cleanly_and_ends_the_session() {
    let (mut stack, card, _) = holder_stack();
    let (mut events, _in) = start_and_insert(&mut stack, &[&card.pin], &card);
    stack.wait_for(&mut events, is_session_started);
    let socket = stack.socket().unwrap();
    let exit = stack.stop_agent().unwrap();
    assert!(exit.success(), "{exit}");
    assert!(!socket.exists(), "the socket outlived the agent");
    assert!(stack.audit_log().contains("agent_shutdown"));
    assert_no_secrets(&stack, &[&card.pin]);
}

#[test]
fn a_card_inside_the_warning_window_warns_at_sign_in() {
    let (mut stack, card) = nurse_stack(
        cms::Policy::default(),
        6,
        InitialValidity::Days(30),
        AtrProfile::NhsCis,
    );
    let (mut events, _in) = start_and_insert(&mut stack, &[&card.pin], &card);
    stack.wait_for(&mut events, is_session_started);
    let Event::ExpiryWarning {
        serial: warned,
        days_left,
        expires_on,
    } = stack.wait_for(&mut events, |e| matches!(e, Event::ExpiryWarning { .. }))
    else {
        unreachable!()
    };
    assert_eq!(warned, card.serial.to_string());
    assert!((29..=30).contains(&days_left), "{days_left}");
    let status = stack.status();
    let shown = status.readers[0].card.as_ref().unwrap();
    assert_eq!(shown.expires_on.as_deref(), Some(expires_on.as_str()));
}

/// Another program writes a certificate of another CA for the same key into the card's slot 9A,
/// leaving the card in its reader and without a reset (so the reader's event counter stays).
fn rewrite_certificate_elsewhere(stack: &Stack, card: &StackCard) {
    let ctx = stack.bed.context().unwrap();
    let reader = std::ffi::CString::new(stack.bed.reader_name(0)).unwrap();
    let mut piv_card = piv::PivCard::connect(&ctx, &reader).unwrap();
    {
        let tx = piv_card.transaction().unwrap();
        let current = tx
            .read_certificate(piv::consts::key::AUTHENTICATION)
            .unwrap();
        let mut rogue_ca = testbed::pki::TestCa::new("Somebody Else").unwrap();
        let rogue = rogue_ca
            .issue("Jane Doe", &current.spki_der().unwrap(), 30)
            .unwrap();
        let key = stack
            .cms
            .card_management_key(&card.serial.to_string())
            .unwrap();
        tx.authenticate_management_key(&mut piv::LocalResponder::new(key))
            .unwrap();
        tx.write_certificate(
            piv::consts::key::AUTHENTICATION,
            &piv::Certificate::from_der(&rogue).unwrap(),
        )
        .unwrap();
    }
    piv_card.disconnect().unwrap();
}

#[test]
fn a_certificate_changed_by_someone_else_ends_the_session_at_the_configured_re_check() {
    let (mut stack, card, _) = holder_stack();
    stack.pin_answers(&[&card.pin]).unwrap();
    let options = AgentOptions {
        certificate_check_secs: 1,
        ..AgentOptions::default()
    };
    stack.start_agent(&options).unwrap();
    let mut events = stack.subscribe();
    let _in = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, is_session_started);

    rewrite_certificate_elsewhere(&stack, &card);
    stack.wait_for(
        &mut events,
        session_ended(SessionEndReason::CertificateChanged),
    );
    assert_eq!(stack.status().session.state, SessionState::Ended);
}

#[test]
fn a_certificate_changed_by_someone_else_ends_the_session_at_the_agents_next_use_of_the_card() {
    let (mut stack, card, _) = holder_stack();
    // The sign-in's PIN, then the doctor's (it proves the key against the certificate).
    let (mut events, _in) = start_and_insert(&mut stack, &[&card.pin, &card.pin], &card);
    stack.wait_for(&mut events, is_session_started);

    rewrite_certificate_elsewhere(&stack, &card);
    // By default nothing reads the card on a clock: the session goes on for now.
    assert!(
        stack
            .next_matching(&mut events, Duration::from_secs(3), |e| matches!(
                e,
                Event::SessionEnded { .. }
            ))
            .is_none(),
        "the session ended with no use of the card"
    );
    assert_eq!(stack.status().session.state, SessionState::SignedIn);

    // The agent's next use of the card (here the doctor's look) verifies the certificate.
    stack.block_on(stack.client().doctor(None, false)).unwrap();
    stack.wait_for(
        &mut events,
        session_ended(SessionEndReason::CertificateChanged),
    );
    assert_eq!(stack.status().session.state, SessionState::Ended);
}

#[test]
fn a_card_swapped_too_quickly_to_see_its_removal_ends_the_session() {
    let (mut stack, jane_card, _) = holder_stack();
    let bob_card = stack
        .nurse_card_of(
            "Bob Smith",
            serial(2),
            "135790",
            InitialValidity::Days(300),
            AtrProfile::Piv,
        )
        .unwrap();
    let slow_card = stack
        .nurse_card_of(
            "Carl Slow",
            serial(3),
            "112233",
            InitialValidity::Days(300),
            AtrProfile::Piv,
        )
        .unwrap();
    let (mut events, jane_in) = start_and_insert(&mut stack, &[&jane_card.pin], &jane_card);
    stack.wait_for(&mut events, is_session_started);

    // A card answering a second late in the other reader keeps the agent's watcher reading it
    // for seconds, while the session's card is swapped: the watcher never sees reader 0 empty,
    // only its event counter moved.
    let sluggish = cardsim::Faults::reply_delay(Duration::from_millis(1000));
    let _slow_in = stack.insert_with(1, &slow_card, sluggish).unwrap();
    stack.bed.remove(0, jane_in).unwrap();
    let _bob_in = stack.insert(0, &bob_card).unwrap();

    let ended = stack.wait_for(&mut events, |e| matches!(e, Event::SessionEnded { .. }));
    assert!(
        matches!(
            ended,
            Event::SessionEnded {
                reason: SessionEndReason::CardChanged | SessionEndReason::CardRemoved,
                ..
            }
        ),
        "{ended:?}"
    );
    assert_ne!(stack.status().session.state, SessionState::SignedIn);
}

#[test]
fn the_session_ends_when_the_cms_session_expires() {
    let policy = cms::Policy {
        session_ttl: Duration::from_secs(3),
        ..cms::Policy::default()
    };
    let (mut stack, card) = nurse_stack(policy, 7, InitialValidity::Days(400), AtrProfile::NhsCis);
    let (mut events, _in) = start_and_insert(&mut stack, &[&card.pin], &card);
    stack.wait_for(&mut events, is_session_started);
    stack.wait_for(
        &mut events,
        session_ended(SessionEndReason::CmsSessionExpired),
    );
    let now = stack.status();
    assert_eq!(
        now.session.state,
        SessionState::Ended,
        "no new prompt by itself"
    );
    assert_eq!(stack.pin_prompts().len(), 1);
}

#[test]
fn a_session_whose_card_is_not_back_after_pcscd_restarts_ends() {
    let (mut stack, card, _) = holder_stack();
    let (mut events, inserted) = start_and_insert(&mut stack, &[&card.pin], &card);
    stack.wait_for(&mut events, is_session_started);

    stack.bed.stop_pcscd();
    stack.wait_for(&mut events, |e| matches!(e, Event::PcscUnavailable { .. }));
    // The card's link went with pcscd, and the card is not put back.
    drop(inserted);
    stack.bed.restart_pcscd().unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::PcscAvailable));
    stack.wait_for(&mut events, |e| {
        matches!(
            e,
            Event::SessionEnded {
                reason: SessionEndReason::CardRemoved,
                ..
            }
        )
    });
    assert_eq!(stack.status().session.state, SessionState::NoCard);
}
