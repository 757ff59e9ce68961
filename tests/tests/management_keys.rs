//! Cards as they come from the field, over the real stack: a card of each 9B management-key
//! algorithm (3DES, AES-128, AES-192, AES-256), with and without GET METADATA, is issued, signs
//! in, renews, is healed by the card doctor and repaired by an RA through the agent; a card that
//! takes none of the service's algorithms is left untouched and unregistered; a card whose
//! transport key `yubico-piv-tool` set is issued with that key and read by OpenSC; a renewal
//! refused at its first card step leaves nothing behind.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use agent_ipc::{ErrorCode, Event, SessionState};
use cardsim::{CardFile, CardSpec, Faults};
use cms::issuance::{CardIssuance, InitialValidity, IssuanceError};
use piv::consts::key;
use piv::{CardSerial, KeyAlgorithm, LocalResponder, ManagementAlgorithm, ManagementKey};
use std::process::Output;
use testbed::stack::{AgentOptions, PinentrySetup, Stack, NURSE, RA_OFFICER};

/// Every PIN in these tests: the holders', the officer's and the one a repair sets.
const PIN: &str = "246810";

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x2E, n])
}

/// A factory-fresh card whose 9B key uses `algorithm` (and which takes keys of it only),
/// answering GET METADATA or not.
fn field_card(n: u8, algorithm: ManagementAlgorithm, metadata: bool) -> CardSpec {
    let mut spec = CardSpec::new(serial(n)).with_management_algorithm(algorithm);
    spec.metadata = metadata;
    spec
}

/// The agent with a pinentry that answers every prompt with [`PIN`].
fn agent_options() -> AgentOptions {
    AgentOptions {
        pinentry: Some(PinentrySetup {
            program: testbed::stack::workspace_binary("ia-pinentry").unwrap(),
            args: vec!["--pin".into(), PIN.into()],
            tty: None,
        }),
        ..AgentOptions::default()
    }
}

/// Issue, sign in, renew, heal and repair with cards whose 9B key uses `algorithm`.
fn field_card_lifecycle(algorithm: ManagementAlgorithm, metadata: bool) {
    let what = format!("{algorithm} card, metadata {metadata}");
    let mut stack = Stack::start().unwrap();
    let (jane, _) = stack.user("Jane Doe", &[NURSE]).unwrap();
    let officer = stack.officer_card(&[RA_OFFICER], serial(1), PIN).unwrap();
    let issue = |n, validity| {
        stack
            .issue_spec(
                &jane,
                field_card(n, algorithm, metadata),
                PIN,
                validity,
                KeyAlgorithm::P256,
            )
            .unwrap()
    };
    let holder = issue(2, InitialValidity::Days(30));
    let expired = issue(3, InitialValidity::Expired);
    for card in [&holder, &expired] {
        assert_eq!(
            stack.card_record(card).unwrap().management_algorithm,
            algorithm,
            "{what}: the service gave the card a key of the one algorithm it takes"
        );
    }

    stack.start_agent(&agent_options()).unwrap();
    let mut events = stack.subscribe();

    // Sign in and renew: the relay runs in the card's algorithm.
    let inserted = stack.insert(0, &holder).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));
    let renewed = stack.block_on(stack.client().renew());
    let renewed = renewed.unwrap_or_else(|e| panic!("{what}: {e:?}\n{}", stack.agent_logs()));
    assert_eq!(renewed.step, agent_ipc::OperationStep::Confirmed, "{what}");
    assert_eq!(stack.status().session.state, SessionState::SignedIn);
    stack.card_agrees_with_cms(0, &holder).unwrap();
    assert_eq!(
        stack.card_record(&holder).unwrap().renewals_used,
        1,
        "{what}"
    );

    // The doctor writes a lost certificate back, through the relay too.
    stack.lose_certificate(0, &holder, false).unwrap();
    let healed = stack
        .block_on(stack.client().doctor(None, true))
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let certificate = healed.checks.iter().find(|c| c.name == "certificate");
    assert_eq!(
        certificate.map(|c| c.outcome.as_str()),
        Some("healed"),
        "{what}: {healed:#?}"
    );
    stack.card_agrees_with_cms(0, &holder).unwrap();
    stack.bed.remove(0, inserted).unwrap();

    // An RA repairs the expired card in the second reader.
    let _officer_in = stack.insert(0, &officer).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));
    let _expired_in = stack.insert(1, &expired).unwrap();
    let second = stack.bed.reader_name(1);
    stack.wait_for(
        &mut events,
        |e| matches!(e, Event::CardInserted { reader, .. } if *reader == second),
    );
    let repaired = stack.block_on(stack.client().repair(
        Some(stack.bed.reader_name(1)),
        Some(expired.serial.to_string()),
    ));
    let repaired = repaired.unwrap_or_else(|e| panic!("{what}: {e:?}\n{}", stack.agent_logs()));
    assert_eq!(repaired.step, agent_ipc::OperationStep::Confirmed, "{what}");
    stack.card_agrees_with_cms(1, &expired).unwrap();
    assert!(
        !stack
            .card_record(&expired)
            .unwrap()
            .is_expired(cms::dates::now()),
        "{what}"
    );
    // Third-party middleware reads the repaired card.
    let out = run(
        &stack,
        "pkcs15-tool",
        &["--reader", "1", "--list-certificates"],
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listing.contains("Certificate for PIV Authentication"),
        "{what}: {listing}"
    );
}

/// One test per kind of field card: `name: algorithm, metadata;` runs [`field_card_lifecycle`]
/// with that card's 9B algorithm, answering GET METADATA or not.
macro_rules! field_card_tests {
    ($($name:ident: $algorithm:ident, $metadata:literal;)*) => {
        $(
            #[test]
            fn $name() {
                field_card_lifecycle(ManagementAlgorithm::$algorithm, $metadata);
            }
        )*
    };
}

field_card_tests! {
    a_3des_card_with_metadata: Tdes, true;
    a_3des_card_without_metadata: Tdes, false;
    an_aes128_card_with_metadata: Aes128, true;
    an_aes128_card_without_metadata: Aes128, false;
    an_aes192_card_with_metadata: Aes192, true;
    an_aes192_card_without_metadata: Aes192, false;
    an_aes256_card_with_metadata: Aes256, true;
    an_aes256_card_without_metadata: Aes256, false;
}

/// A blank card made as `spec` in reader 0, and a PC/SC connection to it.
fn blank_card(stack: &Stack, spec: &CardSpec) -> (std::path::PathBuf, cardsim::InsertedCard) {
    let file = stack.bed.dir().join(format!("blank-{}.json", spec.serial));
    CardFile::create(&file, spec).unwrap();
    let inserted = stack.bed.insert(0, &file, Faults::default()).unwrap();
    (file, inserted)
}

#[test]
fn a_card_that_takes_none_of_the_services_algorithms_is_left_untouched_and_unregistered() {
    let stack = Stack::start().unwrap();
    let (jane, _) = stack.user("Jane Doe", &[NURSE]).unwrap();
    // A card of the kind that takes 3DES keys only, and a service that gives AES only.
    let spec = field_card(7, ManagementAlgorithm::Tdes, false);
    let (file, _inserted) = blank_card(&stack, &spec);
    let before = std::fs::read(&file).unwrap();
    let mut card = stack.bed.connect(0).unwrap();
    let issuance = CardIssuance {
        management_algorithms: vec![ManagementAlgorithm::Aes256, ManagementAlgorithm::Aes128],
        ..CardIssuance::for_blank_card(&jane, PIN, KeyAlgorithm::P256, InitialValidity::Days(30))
    };
    let error = stack.cms.issue_card(&mut card, &issuance).unwrap_err();
    assert!(
        matches!(
            &error,
            IssuanceError::NoCommonAlgorithm { card: ManagementAlgorithm::Tdes, offered }
                if offered.len() == 2
        ),
        "{error:?}"
    );
    let message = error.to_string();
    for word in ["3DES", "AES-256", "AES-128", "nothing was written"] {
        assert!(message.contains(word), "{message}");
    }
    card.disconnect().unwrap();
    // Nothing on the card changed (its file is byte for byte the same), nothing registered,
    // nothing certified.
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let state = CardFile::open(&file).unwrap();
    assert_eq!(
        state.state().management_key().unwrap(),
        ManagementKey::factory()
    );
    assert!(state.state().certificate(key::AUTHENTICATION).is_none());
    assert!(stack
        .cms
        .database()
        .card(&spec.serial.to_string())
        .unwrap()
        .is_none());
    assert!(!stack.audit_log().contains(&spec.serial.to_string()));
}

fn run(stack: &Stack, program: &str, args: &[&str]) -> Output {
    stack.bed.run_tool(program, args)
}

#[test]
fn a_transport_key_set_by_yubico_piv_tool_issues_and_opensc_reads_the_card() {
    let mut stack = Stack::start().unwrap();
    let (jane, _) = stack.user("Jane Doe", &[NURSE]).unwrap();
    // A supplier's blank card: a YubiKey-like card that takes every algorithm, whose factory
    // key a tool replaced with a transport key (Debian's yubico-piv-tool writes 3DES keys).
    let mut spec = CardSpec::new(serial(8));
    spec.profile = cardsim::AtrProfile::YubiKey;
    spec.metadata = false;
    let (file, inserted) = blank_card(&stack, &spec);
    let transport = "0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A6978";
    let reader = stack.bed.reader_name(0);
    let out = run(
        &stack,
        "yubico-piv-tool",
        &["-r", &reader, "-a", "set-mgm-key", "-n", transport],
    );
    assert!(out.status.success());
    let state = CardFile::open(&file).unwrap();
    assert_eq!(
        state.state().management_key().unwrap(),
        ManagementKey::from_hex_with(ManagementAlgorithm::Tdes, transport).unwrap()
    );

    // Without the transport key the card is refused, and nothing is written to it.
    let mut card = stack.bed.connect(0).unwrap();
    let plain =
        CardIssuance::for_blank_card(&jane, PIN, KeyAlgorithm::P256, InitialValidity::Days(30));
    let refused = stack.cms.issue_card(&mut card, &plain).unwrap_err();
    assert!(
        matches!(
            refused,
            IssuanceError::WrongCurrentKey(ManagementAlgorithm::Tdes)
        ),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("--management-key"),
        "{refused}"
    );
    let issuance = CardIssuance {
        current_management_key: Some(zeroize::Zeroizing::new(hex::decode(transport).unwrap())),
        ..plain
    };
    let issued = stack.cms.issue_card(&mut card, &issuance).unwrap();
    card.disconnect().unwrap();
    assert_eq!(issued.card_type, "YubiKey");
    // The card takes every algorithm: the service gives it its strongest.
    assert_eq!(issued.management_algorithm, ManagementAlgorithm::Aes256);
    stack.bed.remove(0, inserted).unwrap();

    // OpenSC reads the issued card: its 9A certificate names the holder.
    let _inserted = stack.bed.insert(0, &file, Faults::default()).unwrap();
    let out = run(
        &stack,
        "pkcs15-tool",
        &["--reader", "0", "--list-certificates"],
    );
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{listing}");
    assert!(
        listing.contains("Certificate for PIV Authentication"),
        "{listing}"
    );
    assert!(
        listing
            .replace(' ', "")
            .contains(&issued.certificate.serial.to_ascii_uppercase()),
        "the issued certificate, {}: {listing}",
        issued.certificate.serial
    );

    // And the agent, started with the card in, signs in with it.
    stack.start_agent(&agent_options()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while stack.status().session.state != SessionState::SignedIn {
        assert!(
            std::time::Instant::now() < deadline,
            "no sign-in\n{}",
            stack.agent_logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_renewal_refused_at_its_first_card_step_leaves_nothing_behind() {
    let mut stack = Stack::start().unwrap();
    let (jane, _) = stack.user("Jane Doe", &[NURSE]).unwrap();
    let card = stack
        .issue_spec(
            &jane,
            field_card(9, ManagementAlgorithm::Aes192, true),
            PIN,
            InitialValidity::Days(30),
            KeyAlgorithm::P256,
        )
        .unwrap();
    // Another tool changed the card's management key behind the service's back: the card now
    // refuses the service's key in the relay, the renewal's first card step.
    let aside = stack.bed.insert(1, &card.file, Faults::default()).unwrap();
    {
        let mut piv = stack.bed.connect(1).unwrap();
        let tx = piv.transaction().unwrap();
        let service = stack
            .cms
            .card_management_key(&card.serial.to_string())
            .unwrap();
        tx.authenticate_management_key(&mut LocalResponder::new(service))
            .unwrap();
        tx.set_management_key(&ManagementKey::factory_for(ManagementAlgorithm::Aes192))
            .unwrap();
        drop(tx);
        piv.disconnect().unwrap();
    }
    stack.bed.remove(1, aside).unwrap();
    stack.start_agent(&agent_options()).unwrap();
    let mut events = stack.subscribe();
    let inserted = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));

    let refused = stack.block_on(stack.client().renew()).unwrap_err();
    let agent_ipc::ClientError::Agent(refused) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(refused.code, ErrorCode::CardError, "{refused:?}");
    assert!(
        refused.message.contains("as it was") && !refused.message.contains("status"),
        "{refused:?}"
    );
    // Nothing journaled, nothing open at the service, the PIN not left verified.
    let journal = stack.bed.dir().join("state/identity-agent/operations");
    let entries = std::fs::read_dir(&journal)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(entries, 0, "the renewal is journaled");
    assert!(stack
        .cms
        .database()
        .open_operation(&card.serial.to_string())
        .unwrap()
        .is_none());
    {
        let mut piv = stack.bed.connect(0).unwrap();
        let tx = piv.transaction().unwrap();
        assert_ne!(
            tx.pin_status().unwrap(),
            piv::PinStatus::Verified,
            "the PIN is left verified"
        );
    }
    // Out and in again: the card signs in at once, with no error.
    let _again = stack.reinsert_and_sign_in(&mut events, inserted, &card);
}

#[test]
fn a_piv_card_whose_atr_names_nothing_is_piv_at_the_service_and_the_agent() {
    let mut stack = Stack::start().unwrap();
    let (jane, _) = stack.user("Jane Doe", &[NURSE]).unwrap();
    let mut spec = CardSpec::new(serial(10));
    spec.profile = cardsim::AtrProfile::JavaCard;
    let card = stack
        .issue_spec(
            &jane,
            spec,
            PIN,
            InitialValidity::Days(30),
            KeyAlgorithm::P256,
        )
        .unwrap();
    assert_eq!(stack.card_record(&card).unwrap().card_type, "PIV");
    stack.start_agent(&agent_options()).unwrap();
    let mut events = stack.subscribe();
    let _inserted = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));
    let status = stack.status();
    let shown = status.readers[0].card.as_ref().unwrap();
    assert_eq!(shown.card_type, "PIV", "{status:?}");
}

#[test]
fn an_issuing_stopped_after_the_key_step_is_run_again() {
    let stack = Stack::start().unwrap();
    let (jane, _) = stack.user("Jane Doe", &[NURSE]).unwrap();
    let spec = field_card(11, ManagementAlgorithm::Aes128, false);
    let (file, _inserted) = blank_card(&stack, &spec);
    // What an issuing stopped right after its first step leaves: the service's key on a card
    // the service does not know.
    let service = stack
        .cms
        .custody()
        .management_key(spec.serial, ManagementAlgorithm::Aes128);
    {
        let mut card = stack.bed.connect(0).unwrap();
        let tx = card.transaction().unwrap();
        let factory = ManagementKey::factory_for(ManagementAlgorithm::Aes128);
        tx.authenticate_management_key(&mut LocalResponder::new(factory))
            .unwrap();
        tx.set_management_key(&service).unwrap();
    }
    let mut card = stack.bed.connect(0).unwrap();
    let issuance =
        CardIssuance::for_blank_card(&jane, PIN, KeyAlgorithm::P256, InitialValidity::Days(30));
    let issued = stack.cms.issue_card(&mut card, &issuance).unwrap();
    card.disconnect().unwrap();
    assert_eq!(issued.management_algorithm, ManagementAlgorithm::Aes128);
    let state = CardFile::open(&file).unwrap();
    assert_eq!(state.state().management_key().unwrap(), service);
    assert!(state.state().certificate(key::AUTHENTICATION).is_some());
}
