//! RA repair through the agent over the real stack: an officer signed in with their card in
//! reader 0 repairs, inspects or cancels the holder's card in reader 1; the holder chooses a
//! new PIN through pinentry, checked against the passcode policy.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use agent_ipc::{ClientError, ErrorCode, ErrorObject, Event, OperationKind, OperationStatus};
use agent_ipc::{SessionState, Subscription};
use cardsim::{AtrProfile, InsertedCard};
use cms::issuance::InitialValidity;
use cms_api::client::CmsClient;
use cms_api::pin_policy::{check_pin, PinPolicyError};
use piv::CardSerial;
use std::path::PathBuf;
use std::time::Duration;
use testbed::agent_client::{follow_operation_with, is_operation_event};
use testbed::stack::{AgentOptions, PinentrySetup, RoleSpec, Stack, StackCard, NURSE, RA_OFFICER};
use testbed::user_id_in;

/// How long a whole repair (RSA key generation on the virtual card included) may take.
const REPAIR_TIMEOUT: Duration = Duration::from_secs(90);

const RA_PIN: &str = "864209";
const HOLDER_PIN: &str = "975310";
const NEW_PIN: &str = "918273";

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x2B, n])
}

/// An officer signed in through the agent with their card in reader 0 and a holder's card in
/// reader 1.
struct Desk {
    stack: Stack,
    events: Subscription,
    officer: StackCard,
    holder: StackCard,
    /// Every event seen since the officer's session started.
    seen: Vec<Event>,
    _officer_in: InsertedCard,
    _holder_in: InsertedCard,
}

impl Desk {
    /// Issues the officer's card (roles `officer_roles`) and the holder's card (`validity`),
    /// scripts the PIN answers `answers` (the officer's PIN first), starts the agent, signs
    /// the officer in with the card in reader 0 and puts the holder's card in reader 1.
    fn open(officer_roles: &[RoleSpec<'_>], validity: InitialValidity, answers: &[&str]) -> Desk {
        Desk::open_with(&[], officer_roles, validity, answers)
    }

    /// [`Desk::open`] with `flags` given to the scripted pinentry too.
    fn open_with(
        flags: &[&str],
        officer_roles: &[RoleSpec<'_>],
        validity: InitialValidity,
        answers: &[&str],
    ) -> Desk {
        let mut stack = Stack::start().unwrap();
        let officer = stack
            .officer_card(officer_roles, serial(1), RA_PIN)
            .unwrap();
        let (holder, _) = stack.user("Harry Holder", &[NURSE]).unwrap();
        let holder = stack
            .issue(&holder, serial(2), HOLDER_PIN, validity, AtrProfile::NhsCis)
            .unwrap();
        stack.pin_answers(answers).unwrap();
        let options = pinentry_with(&stack, flags);
        stack.start_agent(&options).unwrap();
        let mut events = stack.subscribe();
        let officer_in = stack.insert(0, &officer).unwrap();
        stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));
        let holder_in = stack.insert(1, &holder).unwrap();
        let mut desk = Desk {
            stack,
            events,
            officer,
            holder,
            seen: Vec::new(),
            _officer_in: officer_in,
            _holder_in: holder_in,
        };
        let reader = desk.stack.bed.reader_name(1);
        desk.collect_until(|e| matches!(e, Event::CardInserted { reader: r, .. } if *r == reader));
        desk
    }

    /// Records events until one matching `last` (included).
    fn collect_until(&mut self, last: impl Fn(&Event) -> bool) -> Event {
        loop {
            let event = self.stack.wait_for(&mut self.events, |_| true);
            self.seen.push(event.clone());
            if last(&event) {
                return event;
            }
        }
    }

    /// Asks the agent to repair the card in reader 1, confirmed as `serial`.
    fn repair(&self, serial: &CardSerial) -> Result<OperationStatus, ClientError> {
        let mut client = self.stack.client();
        self.stack.block_on(async {
            tokio::time::timeout(
                REPAIR_TIMEOUT,
                client.repair(
                    Some(self.stack.bed.reader_name(1)),
                    Some(serial.to_string()),
                ),
            )
            .await
            .expect("the repair answered in time")
        })
    }

    /// The holder's card record at the service.
    fn holder_record(&self) -> cms::db::CardRecord {
        self.stack.card_record(&self.holder).unwrap()
    }

    /// Nothing for the agent to finish, the holder's card as `before` at the service, and the
    /// officer still signed in.
    fn assert_nothing_done(&self, before: &cms::db::CardRecord) {
        let journal = self.journal_entries();
        assert!(journal.is_empty(), "{journal:?}");
        self.assert_record_unchanged(before);
        assert_eq!(self.stack.status().session.state, SessionState::SignedIn);
    }

    /// The holder's card as `before` at the service (the same certificates, the same PUK
    /// generation); returns the record now.
    fn assert_record_unchanged(&self, before: &cms::db::CardRecord) -> cms::db::CardRecord {
        let after = self.holder_record();
        assert_eq!(after.puk_generation, before.puk_generation);
        assert_eq!(after.certs_expire, before.certs_expire);
        after
    }

    /// The officer's repair refused because their role does not permit it; returns the error.
    fn assert_refused_for_the_role(&self) -> ErrorObject {
        let refused = agent_error(self.repair(&self.holder.serial).unwrap_err());
        assert_eq!(refused.code, ErrorCode::RoleNotPermitted);
        assert!(
            refused.message.contains("does not permit Repair Smartcard"),
            "{}",
            refused.message
        );
        refused
    }

    /// The officer's repair is refused for the holder's new passcode, the error saying `why`,
    /// after `prompts` PIN prompts in all, and nothing is done.
    fn assert_refused_for_the_new_passcode(&self, why: &str, prompts: usize) {
        let before = self.holder_record();
        let refused = agent_error(self.repair(&self.holder.serial).unwrap_err());
        assert_eq!(refused.code, ErrorCode::PinPolicy, "{refused:?}");
        assert!(refused.message.contains(why), "{}", refused.message);
        assert_eq!(self.stack.pin_prompts().len(), prompts);
        self.assert_nothing_done(&before);
    }

    /// Repairs the holder's card in reader 1 and asserts that the repair finished.
    fn repair_holder_card(&self) -> OperationStatus {
        let done = self.repair(&self.holder.serial).unwrap();
        assert!(done.done, "{done:?}");
        done
    }

    /// Repairs the holder's card in reader 1, and asserts that the repair finished after
    /// `prompts` PIN prompts in all and that the card is repaired.
    fn assert_repaired_after_prompts(&self, prompts: usize) {
        self.repair_holder_card();
        assert_eq!(self.stack.pin_prompts().len(), prompts);
        self.assert_repaired();
    }

    /// The agent's status, asserting that the officer, Rita Admin, is still signed in.
    fn officer_status(&self) -> agent_ipc::Status {
        let status = self.stack.status();
        assert_eq!(status.session.state, SessionState::SignedIn);
        assert_eq!(
            status.session.user.as_ref().unwrap().name,
            "Rita Admin",
            "{status:?}"
        );
        status
    }

    /// The holder's card in reader 1 agrees with the service and signs in with the new PIN.
    fn assert_repaired(&self) {
        self.stack.card_agrees_with_cms(1, &self.holder).unwrap();
        self.stack.sign_in_directly(1, NEW_PIN).unwrap();
    }

    /// The operations journal's entries (file names) in the agent's state directory.
    fn journal_entries(&self) -> Vec<PathBuf> {
        let dir = self.stack.bed.dir().join("state/identity-agent/operations");
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The session events since the officer's session started, other than it being signed in.
    fn session_events(&self) -> Vec<&Event> {
        self.seen
            .iter()
            .filter(|e| match e {
                Event::SessionState { state } => *state != SessionState::SignedIn,
                Event::SessionStarted { .. }
                | Event::SessionEnded { .. }
                | Event::LoginFailed { .. } => true,
                _ => false,
            })
            .collect()
    }
}

/// The agent's options: the scripted pinentry reading [`Stack::pin_answers`], given `flags`
/// too.
fn pinentry_with(stack: &Stack, flags: &[&str]) -> AgentOptions {
    if flags.is_empty() {
        return AgentOptions::default();
    }
    let dir = stack.bed.dir();
    let mut args: Vec<String> = [("--script", "pinentry-script"), ("--log", "pinentry.log")]
        .iter()
        .flat_map(|(flag, file)| [flag.to_string(), dir.join(file).display().to_string()])
        .collect();
    args.extend(flags.iter().map(|f| f.to_string()));
    AgentOptions {
        pinentry: Some(PinentrySetup {
            program: testbed::stack::workspace_binary("ia-pinentry").unwrap(),
            args,
            tty: None,
        }),
        ..AgentOptions::default()
    }
}

fn agent_error(e: ClientError) -> ErrorObject {
    match e {
        ClientError::Agent(e) => e,
        other => panic!("not an agent error: {other:?}"),
    }
}

fn cms_code(error: &ErrorObject) -> Option<&str> {
    error.data.as_ref()?.get("cms_code")?.as_str()
}

#[test]
fn an_officer_repairs_an_expired_card_and_the_holder_signs_in_with_the_new_pin() {
    let mut desk = Desk::open(&[RA_OFFICER], InitialValidity::Expired, &[RA_PIN, NEW_PIN]);
    let before = desk.holder_record();

    // The second card leaves the officer's session alone.
    let status = desk.officer_status();
    assert_eq!(
        status.session.reader.as_deref(),
        Some(desk.stack.bed.reader_name(0).as_str())
    );
    assert!(
        desk.session_events().is_empty(),
        "{:?}",
        desk.session_events()
    );
    // Both cards name their holders: the officer's as the session does, the holder's as
    // its certificate does.
    let holders: Vec<_> = status
        .readers
        .iter()
        .map(|r| {
            let card = r.card.as_ref().unwrap();
            (card.holder.as_deref(), card.holder_id.as_deref())
        })
        .collect();
    assert_eq!(
        holders,
        [
            (Some("Rita Admin"), Some(desk.officer.user_id.as_str())),
            (Some("Harry Holder"), Some(desk.holder.user_id.as_str())),
        ]
    );

    // The Smartcard Details the officer confirms.
    let details = desk
        .stack
        .block_on(desk.stack.client().card_details(None))
        .unwrap();
    let recorded = desk
        .stack
        .cms
        .card_view(&before, cms::dates::now())
        .unwrap();
    assert_eq!(details.serial, desk.holder.serial.to_string());
    assert_eq!(details.card_type, recorded.card_type);
    assert_eq!(details.holder_id, desk.holder.user_id);
    assert_eq!(details.holder_name.as_deref(), Some("Harry Holder"));
    assert_eq!(details.issued_on, recorded.issued_on);
    assert_eq!(details.certs_expire, recorded.certs_expire);
    assert!(details.certs_expire.is_some());
    assert_eq!(details.status, "Active");
    assert!(details.expired);
    assert!(details.cancelled_on.is_none());

    let done = desk.repair_holder_card();
    assert_eq!(done.kind, OperationKind::Repair);
    assert_eq!(done.step, agent_ipc::OperationStep::Confirmed);
    assert_eq!(done.serial, desk.holder.serial.to_string());
    assert!(
        done.message.starts_with("Repaired until "),
        "{}",
        done.message
    );

    // Every step was reported, in order, then the result.
    let report = follow_operation_with(|| desk.collect_until(is_operation_event));
    report.assert_succeeded(
        &done.id,
        &[
            "started",
            "pin_set",
            "puk_rotated",
            "management_key",
            "key_generated",
            "certificate_issued",
            "certificate_written",
            "confirmed",
        ],
    );

    // The officer is still signed in, with no session event on the way.
    assert!(
        desk.session_events().is_empty(),
        "{:?}",
        desk.session_events()
    );
    desk.officer_status();

    // The new PIN was asked once, with its repeat (which pinentry confirmed), after the
    // officer's.
    let prompts = desk.stack.pin_prompts();
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert!(prompts[0]["repeat"].is_null(), "{prompts:?}");
    assert!(prompts[1]["repeat"].is_string(), "{prompts:?}");
    assert_eq!(prompts[1]["repeated"], true, "{prompts:?}");
    assert!(prompts[1]["error"].is_null(), "{prompts:?}");
    let description = prompts[1]["description"].as_str().unwrap();
    assert!(
        description.contains(&desk.holder.serial.to_string()),
        "{description}"
    );
    let officer_prompt = prompts[0]["description"].as_str().unwrap();
    assert!(
        officer_prompt.starts_with(&format!(
            "Enter the passcode of Rita Admin's smartcard {}.",
            desk.officer.serial
        )),
        "{officer_prompt}"
    );
    for prompt in &prompts {
        for field in ["title", "description", "prompt", "error", "repeat"] {
            let text = prompt[field].as_str().unwrap_or_default();
            assert_eq!(user_id_in(text), None, "{field}: {text}");
        }
    }

    // The service: not expired, renewals reset, the next PUK generation, nothing open.
    let after = desk.holder_record();
    let now = cms::dates::now();
    assert!(!after.is_expired(now));
    assert!(after.certs_expire.unwrap() > now + 700 * cms::dates::DAY);
    assert_eq!(after.renewals_used, 0);
    assert!(
        after.puk_generation > before.puk_generation,
        "{} then {}",
        before.puk_generation,
        after.puk_generation
    );
    let details = desk
        .stack
        .block_on(desk.stack.client().card_details(None))
        .unwrap();
    assert!(!details.expired);
    assert_eq!(details.status, "Active");

    // The card: the service's certificate and its next PUK, and the new PIN signs in.
    desk.stack.card_agrees_with_cms(1, &desk.holder).unwrap();
    let session = desk.stack.sign_in_directly(1, NEW_PIN).unwrap();
    assert_eq!(session.session.user.id, desk.holder.user_id);
    assert!(
        desk.stack.sign_in_directly(1, HOLDER_PIN).is_err(),
        "the old PIN no longer works"
    );
    assert!(
        desk.journal_entries().is_empty(),
        "{:?}",
        desk.journal_entries()
    );
    assert!(desk.stack.audit_log().contains("\"repair\""));
}

#[test]
fn an_officer_whose_role_lacks_b0267_cannot_repair_or_cancel() {
    let desk = Desk::open(&[NURSE], InitialValidity::Expired, &[RA_PIN, NEW_PIN]);
    let before = desk.holder_record();

    desk.assert_refused_for_the_role();
    let refused = agent_error(
        desk.stack
            .block_on(
                desk.stack
                    .client()
                    .cancel_card(desk.holder.serial.to_string(), "lost"),
            )
            .unwrap_err(),
    );
    assert_eq!(refused.code, ErrorCode::RoleNotPermitted);

    // Nothing asked after the sign-in, nothing changed.
    assert_eq!(desk.stack.pin_prompts().len(), 1);
    let after = desk.assert_record_unchanged(&before);
    assert!(after.cancelled_on.is_none());
    assert!(desk.journal_entries().is_empty());
    desk.stack.card_agrees_with_cms(1, &desk.holder).unwrap();
    assert_eq!(desk.stack.status().session.state, SessionState::SignedIn);
}

#[test]
fn an_officer_must_select_the_ra_role_before_repairing() {
    let desk = Desk::open(
        &[NURSE, RA_OFFICER],
        InitialValidity::Expired,
        &[RA_PIN, NEW_PIN],
    );
    let before = desk.holder_record();
    let refused = desk.assert_refused_for_the_role();
    assert!(
        refused.message.contains("select your role"),
        "{}",
        refused.message
    );
    assert_eq!(desk.stack.pin_prompts().len(), 1);
    desk.assert_record_unchanged(&before);
    desk.stack.card_agrees_with_cms(1, &desk.holder).unwrap();
}

#[test]
fn the_service_refuses_to_repair_a_healthy_card_and_nothing_is_left_behind() {
    let desk = Desk::open(
        &[RA_OFFICER],
        InitialValidity::Days(400),
        &[RA_PIN, NEW_PIN],
    );
    let before = desk.holder_record();
    let refused = agent_error(desk.repair(&desk.holder.serial).unwrap_err());
    assert_eq!(refused.code, ErrorCode::CmsRefused, "{refused:?}");
    assert_eq!(
        cms_code(&refused),
        Some("card_not_repairable"),
        "{refused:?}"
    );

    assert!(
        desk.journal_entries().is_empty(),
        "{:?}",
        desk.journal_entries()
    );
    assert_eq!(desk.stack.pin_prompts().len(), 1, "no new PIN is asked");
    desk.assert_record_unchanged(&before);
    desk.stack.card_agrees_with_cms(1, &desk.holder).unwrap();
    let session = desk.stack.sign_in_directly(1, HOLDER_PIN).unwrap();
    assert_eq!(session.session.user.id, desk.holder.user_id);
    assert_eq!(desk.stack.status().session.state, SessionState::SignedIn);
}

#[test]
fn a_new_pin_breaking_the_policy_is_asked_again_with_the_rule() {
    let desk = Desk::open(
        &[RA_OFFICER],
        InitialValidity::Expired,
        &[RA_PIN, "1234", "9999", NEW_PIN],
    );
    let done = desk.repair_holder_card();
    assert_eq!(done.step, agent_ipc::OperationStep::Confirmed);

    let prompts = desk.stack.pin_prompts();
    assert_eq!(prompts.len(), 4, "{prompts:?}");
    assert!(prompts[1]["error"].is_null(), "{prompts:?}");
    let error = |i: usize| prompts[i]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error(2).contains("sequence"), "{}", error(2));
    assert!(error(3).contains("repeated"), "{}", error(3));
    for prompt in &prompts[1..] {
        assert!(prompt["repeat"].is_string(), "{prompt}");
    }

    desk.assert_repaired();
}

#[test]
fn three_new_pins_breaking_the_policy_stop_the_repair_before_the_card_is_touched() {
    let desk = Desk::open(
        &[RA_OFFICER],
        InitialValidity::Expired,
        &[RA_PIN, "1234", "0000", "12a4"],
    );
    desk.assert_refused_for_the_new_passcode("4 to 8 digits", 4);

    // The officer tries again: the service's open repair is taken up, the agent is not busy
    // asking the holder on its own, and the card ends up repaired.
    desk.stack.pin_answers(&[NEW_PIN]).unwrap();
    desk.assert_repaired_after_prompts(5);
}

#[test]
fn a_pinentry_ignoring_the_repeat_has_the_agent_ask_again_until_both_match() {
    let desk = Desk::open_with(
        &["--ignore-repeat"],
        &[RA_OFFICER],
        InitialValidity::Expired,
        &[RA_PIN, NEW_PIN, "918274", NEW_PIN, NEW_PIN],
    );
    let done = desk.repair_holder_card();
    assert_eq!(done.step, agent_ipc::OperationStep::Confirmed);

    // The officer's PIN; the new one, then its repeat asked by the agent, which differs; the
    // new one again with the mismatch named, and its repeat.
    let prompts = desk.stack.pin_prompts();
    assert_eq!(prompts.len(), 5, "{prompts:?}");
    let text = |i: usize, key: &str| prompts[i][key].as_str().unwrap_or_default().to_owned();
    for i in [1, 3] {
        assert_eq!(text(i, "prompt"), "New passcode:", "{prompts:?}");
        assert!(prompts[i]["repeat"].is_string(), "{prompts:?}");
        assert_eq!(prompts[i]["repeated"], false, "{prompts:?}");
    }
    for i in [2, 4] {
        assert_eq!(text(i, "prompt"), "Repeat the passcode:", "{prompts:?}");
        assert!(prompts[i]["repeat"].is_null(), "{prompts:?}");
        assert!(prompts[i]["error"].is_null(), "{prompts:?}");
    }
    assert!(prompts[1]["error"].is_null(), "{prompts:?}");
    assert!(
        text(3, "error").contains("did not match"),
        "{}",
        text(3, "error")
    );

    desk.assert_repaired();
}

#[test]
fn three_mismatched_repeats_stop_the_repair_before_the_card_is_touched() {
    let desk = Desk::open_with(
        &["--ignore-repeat"],
        &[RA_OFFICER],
        InitialValidity::Expired,
        &[
            RA_PIN, NEW_PIN, "918274", NEW_PIN, "918275", NEW_PIN, "918276",
        ],
    );
    desk.assert_refused_for_the_new_passcode("did not match", 7);

    // The officer tries again and the holder types the same passcode twice: the service's
    // open repair is taken up and the card ends up repaired.
    desk.stack.pin_answers(&[NEW_PIN, NEW_PIN]).unwrap();
    desk.assert_repaired_after_prompts(9);
}

#[test]
fn the_passcode_policy_table() {
    for refused in ["4321", "1234", "0000", "11111", "87654321", "7890"] {
        assert!(
            matches!(
                check_pin(refused),
                Err(PinPolicyError::Sequence | PinPolicyError::Repeated)
            ),
            "{refused}"
        );
    }
    for refused in ["12a4", "123", "123456789", ""] {
        assert_eq!(check_pin(refused), Err(PinPolicyError::Format), "{refused}");
    }
    for allowed in ["918273", "2580", NEW_PIN, HOLDER_PIN, RA_PIN] {
        assert_eq!(check_pin(allowed), Ok(()), "{allowed}");
    }
}

#[test]
fn an_officer_cancels_a_card_and_it_cannot_sign_in_any_more() {
    let desk = Desk::open(&[RA_OFFICER], InitialValidity::Days(400), &[RA_PIN]);
    let serial = desk.holder.serial.to_string();
    let cancelled = desk
        .stack
        .block_on(desk.stack.client().cancel_card(serial.clone(), "lost"))
        .unwrap();
    assert_eq!(cancelled.serial, serial);
    assert_eq!(cancelled.status, "Cancelled");
    assert!(cancelled.cancelled_on.is_some());
    let record = desk.holder_record();
    assert!(record.cancelled_on.is_some());
    assert_eq!(record.cancel_reason.as_deref(), Some("lost"));

    let cms = CmsClient::new(desk.stack.cms_url(), desk.stack.cms.ca().certificate_pem()).unwrap();
    match desk.stack.block_on(cms.challenge(&serial)) {
        Err(cms_api::client::ClientError::Api { code, .. }) => {
            assert_eq!(code, cms_api::ErrorCode::CardCancelled)
        }
        other => panic!("{other:?}"),
    }
    assert!(desk.stack.sign_in_directly(1, HOLDER_PIN).is_err());
    // A cancelled card cannot be repaired either.
    let refused = agent_error(desk.repair(&desk.holder.serial).unwrap_err());
    assert_eq!(refused.code, ErrorCode::CardCancelled, "{refused:?}");
    assert_eq!(desk.stack.status().session.state, SessionState::SignedIn);
}

#[test]
fn an_officer_cannot_repair_their_own_card() {
    let desk = Desk::open(&[RA_OFFICER], InitialValidity::Expired, &[RA_PIN, NEW_PIN]);
    let mut client = desk.stack.client();
    let refused = desk
        .stack
        .block_on(client.repair(
            Some(desk.stack.bed.reader_name(0)),
            Some(desk.officer.serial.to_string()),
        ))
        .unwrap_err();
    let refused = agent_error(refused);
    assert_eq!(cms_code(&refused), Some("own_card"), "{refused:?}");
    assert_eq!(desk.stack.pin_prompts().len(), 1);
    assert!(desk.journal_entries().is_empty());
    assert_eq!(desk.stack.status().session.state, SessionState::SignedIn);
    desk.stack.card_agrees_with_cms(0, &desk.officer).unwrap();
}

/// Runs the built `iactl` against the desk's agent with `args`, standard input closed.
fn iactl(desk: &Desk, args: &[&str]) -> std::process::Output {
    let socket = desk.stack.socket().unwrap();
    std::process::Command::new(testbed::stack::workspace_binary("iactl").unwrap())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Runs iactl with `args`, asserts that it succeeded, and returns what it printed.
fn iactl_succeeds(desk: &Desk, args: &[&str]) -> String {
    let output = iactl(desk, args);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn iactl_shows_the_details_asks_to_confirm_and_repairs() {
    let desk = Desk::open(
        &[RA_OFFICER],
        InitialValidity::Expired,
        &[RA_PIN, NEW_PIN, NEW_PIN],
    );
    let reader = desk.stack.bed.reader_name(1);
    let serial = desk.holder.serial.to_string();

    let shown = iactl_succeeds(&desk, &["card", "--reader", &reader]);
    assert!(
        shown.contains(&serial)
            && shown.contains("(expired)")
            && shown.contains("holder Harry Holder, renewals used 0 of "),
        "{shown}"
    );
    assert_eq!(user_id_in(&shown), None, "{shown}");
    // The holder's id is there for programs.
    let json = iactl(&desk, &["--json", "card", "--reader", &reader]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        parsed["holder_id"],
        desk.holder.user_id.as_str(),
        "{parsed}"
    );
    assert_eq!(parsed["holder_name"], "Harry Holder", "{parsed}");

    // Without a terminal to confirm on, nothing is done.
    let unconfirmed = iactl(&desk, &["repair", "--reader", &reader]);
    assert!(!unconfirmed.status.success(), "{unconfirmed:?}");
    let said = String::from_utf8_lossy(&unconfirmed.stderr);
    assert!(
        said.contains("--yes") && said.contains("nothing was done"),
        "{said}"
    );
    assert!(desk.journal_entries().is_empty());
    let db = desk.stack.cms.database();
    assert!(db.open_operation(&serial).unwrap().is_none());

    let out = iactl_succeeds(&desk, &["repair", "--reader", &reader, "--yes"]);
    assert!(
        out.contains(&serial)
            && out.contains("holder Harry Holder,")
            && out.contains("Repaired until"),
        "{out}"
    );
    assert!(!out.contains(&desk.holder.user_id), "{out}");
    assert!(!desk.holder_record().is_expired(cms::dates::now()));
    desk.stack.card_agrees_with_cms(1, &desk.holder).unwrap();
}

#[test]
fn pulling_the_holders_card_while_the_new_passcode_is_asked_ends_the_prompt_and_the_repair() {
    // The officer's PIN, then a new-passcode prompt nobody answers.
    let desk = Desk::open(&[RA_OFFICER], InitialValidity::Expired, &[RA_PIN, "!hang"]);
    let before = desk.holder_record();
    let mut client = desk.stack.client();
    let (reader, serial) = (
        desk.stack.bed.reader_name(1),
        desk.holder.serial.to_string(),
    );
    let repair = desk
        .stack
        .runtime
        .spawn(async move { client.repair(Some(reader), Some(serial)).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while desk.stack.pin_prompts().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no new-passcode prompt"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let prompt = &desk.stack.pin_prompts()[1];
    assert!(
        prompt["description"]
            .as_str()
            .is_some_and(|d| d.contains("Harry Holder's smartcard")),
        "{prompt}"
    );
    let pid = prompt["pid"].as_u64().unwrap();

    let Desk {
        stack, _holder_in, ..
    } = desk;
    let started = std::time::Instant::now();
    stack.bed.remove(1, _holder_in).unwrap();
    let answer = stack.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), repair)
            .await
            .expect("the repair answered once the card was pulled")
            .unwrap()
    });
    let refused = agent_error(answer.unwrap_err());
    assert_eq!(refused.code, ErrorCode::PinCancelled, "{refused:?}");
    assert!(refused.message.contains("as it was"), "{refused:?}");
    eprintln!("the repair ended {:?} after the pull", started.elapsed());
    // The prompt is gone, nothing is journaled and the service's repair was given up.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "pinentry {pid} is still there"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let serial = before.serial.clone();
    assert!(stack
        .cms
        .database()
        .open_operation(&serial)
        .unwrap()
        .is_none());
    let after = stack.cms.database().card(&serial).unwrap().unwrap();
    assert_eq!(after.puk_generation, before.puk_generation);
    assert_eq!(after.certs_expire, before.certs_expire);
}
