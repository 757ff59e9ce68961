//! The Card Management Service with real cards: a virtual card issued over PC/SC through
//! pcscd (key generated on the card, certificate from the service's CA, diversified PIN, PUK
//! and management key), then signing in by signing the service's challenge on the card.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use cardsim::{CardFile, CardSpec, Faults, InsertedCard};
use cms::issuance::{CardIssuance, InitialValidity, IssuedCard};
use cms::server::{self, RunningServer};
use cms::{Cms, DataDir, Policy};
use cms_api::client::{CmsClient, RelayResponder};
use cms_api::protocol::{b64, SessionCreated};
use piv::consts::key;
use piv::{CardSerial, Error, KeyAlgorithm, LocalResponder, ManagementKey, Pin, PivCard, Puk};
use std::ffi::CString;
use std::sync::Arc;
use testbed::TestBed;
use zeroize::Zeroizing;

const RA_ROLE: (&str, &str, &[&str]) = ("Leeds Teaching Hospitals", "RAA ID Checker", &["B0267"]);
const NURSE_ROLE: (&str, &str, &[&str]) = ("Leeds Teaching Hospitals", "Staff Nurse", &["B0360"]);

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x28, n])
}

/// pcscd with two readers, the service over HTTPS, and a client of it.
struct Stack {
    server: Option<RunningServer>,
    cms: Arc<Cms>,
    client: CmsClient,
    _dir: tempfile::TempDir,
    bed: TestBed,
    rt: tokio::runtime::Runtime,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt.block_on(server.stop());
        }
    }
}

impl Stack {
    fn start() -> Self {
        let bed = TestBed::start().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cms = Arc::new(Cms::init(&DataDir::new(dir.path()), &[], Policy::default()).unwrap());
        let server = rt
            .block_on(server::start(cms.clone(), "127.0.0.1:0".parse().unwrap()))
            .unwrap();
        let client = CmsClient::new(&server.url(), cms.ca().certificate_pem()).unwrap();
        Self {
            server: Some(server),
            cms,
            client,
            _dir: dir,
            bed,
            rt,
        }
    }

    fn user(&self, name: &str, role: (&str, &str, &[&str])) -> (String, i64) {
        let user = self.cms.add_user(name, None).unwrap();
        let acts: Vec<String> = role.2.iter().map(|a| a.to_string()).collect();
        let role = self
            .cms
            .add_role_profile(&user.id, role.0, role.1, &acts)
            .unwrap();
        (user.id, role)
    }

    /// A blank virtual card (factory PIN, PUK and management key) in reader `slot`.
    fn blank_card(&self, slot: usize, n: u8) -> InsertedCard {
        let path = self.bed.dir().join(format!("card-{n}.json"));
        CardFile::create(&path, &CardSpec::new(serial(n))).unwrap();
        self.bed.insert(slot, &path, Faults::default()).unwrap()
    }

    fn connect(&self, slot: usize) -> PivCard {
        let ctx = self.bed.context().unwrap();
        PivCard::connect(&ctx, &CString::new(self.bed.reader_name(slot)).unwrap()).unwrap()
    }

    /// Issues the blank card in reader `slot` to `user` with `pin`.
    fn issue(
        &self,
        slot: usize,
        user: &str,
        pin: &str,
        validity: InitialValidity,
        algorithm: KeyAlgorithm,
    ) -> IssuedCard {
        let mut card = self.connect(slot);
        let issued = self
            .cms
            .issue_card(
                &mut card,
                &CardIssuance::for_blank_card(user, pin, algorithm, validity),
            )
            .unwrap();
        card.disconnect().unwrap();
        issued
    }

    /// Signs in with the card in reader `slot`: PIN on the card, the service's challenge
    /// signed by the card's 9A key.
    fn sign_in(
        &self,
        slot: usize,
        pin: &str,
    ) -> Result<(SessionCreated, CmsClient), cms_api::client::ClientError> {
        let mut card = self.connect(slot);
        let tx = card.transaction().unwrap();
        tx.verify_pin(&Pin::new(pin).unwrap()).unwrap();
        let serial = tx.card_serial().unwrap().to_string();
        let cert = tx.read_certificate(key::AUTHENTICATION).unwrap();
        let algorithm = cert.public_key().unwrap().algorithm().unwrap();
        self.rt
            .block_on(self.client.authenticate(&serial, cert.der(), |message| {
                tx.sign(key::AUTHENTICATION, algorithm, message)
            }))
    }
}

#[test]
fn an_issued_card_signs_in_through_pcscd() {
    let stack = Stack::start();
    let (jane, role) = stack.user("Jane Doe", NURSE_ROLE);
    let _card = stack.blank_card(0, 1);
    let issued = stack.issue(
        0,
        &jane,
        "918273",
        InitialValidity::Days(730),
        KeyAlgorithm::Rsa2048,
    );
    assert_eq!(issued.serial, serial(1).to_string());
    assert_eq!(issued.card_type, "NHS CIS");

    let (created, session) = stack.sign_in(0, "918273").unwrap();
    assert_eq!(created.session.user.id, jane);
    assert_eq!(created.session.user.name, "Jane Doe");
    assert_eq!(created.session.card_serial, issued.serial);
    assert_eq!(created.session.selected_role, Some(role));
    let details = stack.rt.block_on(session.card(&issued.serial)).unwrap();
    assert_eq!(
        (details.status.as_str(), details.card_type.as_str()),
        ("Active", "NHS CIS")
    );
    assert_eq!(details.holder_id, jane);
    assert_eq!(details.holder_name.as_deref(), Some("Jane Doe"));
    assert_eq!(
        details.certs_expire.as_deref(),
        Some(cms::dates::iso_date(issued.certificate.not_after).as_str())
    );

    // The card holds what custody derives for it, and nothing of the factory's.
    let mut card = stack.connect(0);
    let tx = card.transaction().unwrap();
    let certificate = tx.read_certificate(key::AUTHENTICATION).unwrap();
    assert_eq!(
        certificate.subject(),
        format!("CN=Jane Doe,UID={jane},O=Identity Agent CMS")
    );
    assert_eq!(certificate.serial_hex(), issued.certificate.serial);
    assert!(matches!(
        tx.verify_pin(&Pin::new("123456").unwrap()),
        Err(Error::WrongPin { .. })
    ));
    tx.verify_pin(&Pin::new("918273").unwrap()).unwrap();
    assert!(matches!(
        tx.authenticate_management_key(&mut LocalResponder::new(ManagementKey::factory())),
        Err(Error::ManagementAlgorithmRefused(
            piv::ManagementAlgorithm::Tdes
        ))
    ));
    let diversified = stack
        .cms
        .card_management_key(&serial(1).to_string())
        .unwrap();
    tx.authenticate_management_key(&mut LocalResponder::new(diversified))
        .unwrap();
    let puk = stack.cms.custody().puk(serial(1), 0);
    let puk = Puk::new(&puk).unwrap();
    tx.change_puk(&puk, &puk).unwrap();
}

#[test]
fn a_p256_card_signs_in_and_a_wrong_pin_never_reaches_the_service() {
    let stack = Stack::start();
    let (raj, _) = stack.user("Raj Patel", NURSE_ROLE);
    let _card = stack.blank_card(1, 2);
    stack.issue(
        1,
        &raj,
        "24681357",
        InitialValidity::Days(30),
        KeyAlgorithm::P256,
    );
    let (created, _) = stack.sign_in(1, "24681357").unwrap();
    assert_eq!(created.session.user.name, "Raj Patel");

    let mut card = stack.connect(1);
    let tx = card.transaction().unwrap();
    assert!(matches!(
        tx.verify_pin(&Pin::new("11112222").unwrap()),
        Err(Error::WrongPin { tries_left: 2 })
    ));
}

#[test]
fn an_expired_card_is_refused_and_a_cancelled_card_stops_signing_in() {
    let stack = Stack::start();
    let (jane, _) = stack.user("Jane Doe", NURSE_ROLE);
    let (olu, _) = stack.user("Olu Officer", RA_ROLE);
    let _expired = stack.blank_card(0, 3);
    let _valid = stack.blank_card(1, 4);
    stack.issue(
        0,
        &jane,
        "918273",
        InitialValidity::Expired,
        KeyAlgorithm::P256,
    );
    stack.issue(
        1,
        &olu,
        "192837",
        InitialValidity::Days(730),
        KeyAlgorithm::P256,
    );

    let refused = stack.sign_in(0, "918273").unwrap_err();
    assert_eq!(refused.code(), Some(cms_api::ErrorCode::CardExpired));
    let (_, officer) = stack.sign_in(1, "192837").unwrap();
    let details = stack
        .rt
        .block_on(officer.card(&serial(3).to_string()))
        .unwrap();
    assert!(details.expired);
    stack
        .rt
        .block_on(officer.cancel_card(&serial(3).to_string(), "replaced"))
        .unwrap();
    let refused = stack
        .rt
        .block_on(stack.client.challenge(&serial(3).to_string()))
        .unwrap_err();
    assert_eq!(refused.code(), Some(cms_api::ErrorCode::CardCancelled));
}

#[test]
fn issuing_refuses_a_weak_pin_and_a_card_already_registered() {
    let stack = Stack::start();
    let (jane, _) = stack.user("Jane Doe", NURSE_ROLE);
    let _card = stack.blank_card(0, 5);
    let mut card = stack.connect(0);
    let mut issuance = CardIssuance::for_blank_card(
        &jane,
        "1234",
        KeyAlgorithm::P256,
        InitialValidity::Days(730),
    );
    let weak = stack.cms.issue_card(&mut card, &issuance).unwrap_err();
    assert!(weak.to_string().contains("sequence"), "{weak}");
    issuance.pin = Zeroizing::new("918273".into());
    stack.cms.issue_card(&mut card, &issuance).unwrap();
    let again = stack.cms.issue_card(&mut card, &issuance).unwrap_err();
    assert!(matches!(
        again,
        cms::issuance::IssuanceError::Cms(cms::CmsError::CardExists(_))
    ));
}

/// The card's part of a renewal or repair after the management key is authenticated: a new
/// key in 9A, a request signed on the card, the certificate written; returns the operation in
/// `certificate_issued`.
fn certify_new_key(
    stack: &Stack,
    tx: &piv::Transaction<'_>,
    session: &CmsClient,
    op_id: &str,
    algorithm: KeyAlgorithm,
) -> cms_api::protocol::OperationView {
    let public = tx.generate_key(key::AUTHENTICATION, algorithm).unwrap();
    let csr = tx
        .certificate_request(key::AUTHENTICATION, &public, "CN=renewal")
        .unwrap();
    let issued = stack.rt.block_on(session.submit_csr(op_id, &csr)).unwrap();
    let der = b64::decode(issued.certificate.as_deref().unwrap()).unwrap();
    let certificate = piv::Certificate::from_der(&der).unwrap();
    assert_eq!(certificate.public_key().unwrap(), public);
    tx.write_certificate(key::AUTHENTICATION, &certificate)
        .unwrap();
    issued
}

/// The new key's signature over the operation's confirmation bytes, made on the card.
fn confirm_on_card(
    stack: &Stack,
    tx: &piv::Transaction<'_>,
    session: &CmsClient,
    op: &cms_api::protocol::OperationView,
    algorithm: KeyAlgorithm,
) -> cms_api::protocol::OperationView {
    let challenge = b64::decode_url(op.confirm_challenge.as_deref().unwrap()).unwrap();
    let signature = tx
        .sign(
            key::AUTHENTICATION,
            algorithm,
            &cms_api::protocol::confirm_message(&op.id, &challenge),
        )
        .unwrap();
    stack
        .rt
        .block_on(session.confirm(&op.id, &signature))
        .unwrap()
}

#[test]
fn a_card_renews_itself_through_the_service_which_keeps_its_management_key() {
    let stack = Stack::start();
    let (jane, _) = stack.user("Jane Doe", NURSE_ROLE);
    let _card = stack.blank_card(0, 6);
    let old = stack.issue(
        0,
        &jane,
        "918273",
        InitialValidity::Days(20),
        KeyAlgorithm::Rsa2048,
    );
    let (_, session) = stack.sign_in(0, "918273").unwrap();

    let started = std::time::Instant::now();
    let op = stack
        .rt
        .block_on(session.start_operation(cms_api::OperationKind::Renew, &old.serial, "0.1.0"))
        .unwrap()
        .operation;
    let mut card = stack.connect(0);
    let tx = card.transaction().unwrap();
    tx.verify_pin(&Pin::new("918273").unwrap()).unwrap();
    let mut relay = RelayResponder::new(session.clone(), &op, stack.rt.handle().clone());
    tx.authenticate_management_key(&mut relay).unwrap();
    let issued = certify_new_key(&stack, &tx, &session, &op.id, KeyAlgorithm::P256);
    let done = confirm_on_card(&stack, &tx, &session, &issued, KeyAlgorithm::P256);
    drop(tx);
    let took = started.elapsed();
    assert_eq!(done.state, cms_api::OperationState::Completed);
    eprintln!("self-renewal on the virtual card took {took:?}");

    // The card signs in with its new certificate, two years long.
    let (created, fresh) = stack.sign_in(0, "918273").unwrap();
    assert_eq!(created.session.user.id, jane);
    let details = stack.rt.block_on(fresh.card(&old.serial)).unwrap();
    let two_years = cms::dates::iso_date(cms::dates::now() + 730 * cms::dates::DAY);
    assert_eq!(details.certs_expire.as_deref(), Some(two_years.as_str()));
    assert_eq!(details.renewals_used, 1);

    // A relay for a finished operation is refused, and the card's key is still the
    // service's: a local responder with the factory key is rejected by the card.
    let mut card = stack.connect(0);
    let tx = card.transaction().unwrap();
    let mut relay = RelayResponder::new(session.clone(), &op, stack.rt.handle().clone());
    assert!(matches!(
        tx.authenticate_management_key(&mut relay),
        Err(Error::Responder(_))
    ));
    assert!(tx
        .authenticate_management_key(&mut LocalResponder::new(ManagementKey::factory()))
        .is_err());
}

#[test]
fn an_officer_repairs_an_expired_card_in_the_second_reader_and_the_holder_sets_a_new_pin() {
    let stack = Stack::start();
    let (jane, _) = stack.user("Jane Doe", NURSE_ROLE);
    let (olu, olu_role) = stack.user("Olu Officer", RA_ROLE);
    // The officer's card in the usual reader, the holder's expired card in the second one.
    let _officer_card = stack.blank_card(0, 7);
    let _holder_card = stack.blank_card(1, 8);
    stack.issue(
        0,
        &olu,
        "192837",
        InitialValidity::Days(730),
        KeyAlgorithm::P256,
    );
    let expired = stack.issue(
        1,
        &jane,
        "918273",
        InitialValidity::Expired,
        KeyAlgorithm::Rsa2048,
    );
    assert_eq!(
        stack.sign_in(1, "918273").unwrap_err().code(),
        Some(cms_api::ErrorCode::CardExpired)
    );

    let (created, officer) = stack.sign_in(0, "192837").unwrap();
    assert_eq!(created.session.selected_role, Some(olu_role));
    let op = stack
        .rt
        .block_on(officer.start_operation(cms_api::OperationKind::Repair, &expired.serial, "0.1.0"))
        .unwrap()
        .operation;

    let mut card = stack.connect(1);
    let tx = card.transaction().unwrap();
    // The holder chooses a new PIN in person; the PUK never reaches them.
    let puk = stack.rt.block_on(officer.release_puk(&op.id)).unwrap();
    let old_puk = Puk::new(&puk.puk).unwrap();
    let new_pin = Pin::new("24681357").unwrap();
    tx.unblock_pin(&old_puk, &new_pin).unwrap();
    tx.verify_pin(&new_pin).unwrap();
    let mut relay = RelayResponder::new(officer.clone(), &op, stack.rt.handle().clone());
    tx.authenticate_management_key(&mut relay).unwrap();
    let issued = certify_new_key(&stack, &tx, &officer, &op.id, KeyAlgorithm::Rsa2048);
    tx.change_puk(&old_puk, &Puk::new(&puk.next_puk).unwrap())
        .unwrap();
    let done = confirm_on_card(&stack, &tx, &officer, &issued, KeyAlgorithm::Rsa2048);
    assert_eq!(done.state, cms_api::OperationState::Completed);
    drop(tx);

    // The holder signs in with the new PIN and the new certificate.
    let (created, holder) = stack.sign_in(1, "24681357").unwrap();
    assert_eq!(created.session.user.id, jane);
    let details = stack.rt.block_on(holder.card(&expired.serial)).unwrap();
    assert!(!details.expired);
    // The released PUK is spent: the card and the service agree on the next one.
    let mut card = stack.connect(1);
    let tx = card.transaction().unwrap();
    assert!(matches!(
        tx.change_puk(&old_puk, &old_puk),
        Err(Error::WrongPuk { .. })
    ));
    let next = stack.cms.custody().puk(serial(8), 1);
    let next = Puk::new(&next).unwrap();
    tx.change_puk(&next, &next).unwrap();
}

fn issuance_for(user: &str, serial: Option<CardSerial>) -> CardIssuance {
    CardIssuance {
        serial,
        ..CardIssuance::for_blank_card(
            user,
            "918273",
            KeyAlgorithm::P256,
            InitialValidity::Days(730),
        )
    }
}

#[test]
fn a_card_without_a_chuid_gets_the_serial_it_is_issued_with() {
    let stack = Stack::start();
    let (jane, _) = stack.user("Jane Doe", NURSE_ROLE);
    let _blank = stack.blank_card(0, 9);
    {
        // A real blank card has no CHUID: take the virtual card's away.
        let mut card = stack.connect(0);
        let tx = card.transaction().unwrap();
        tx.authenticate_management_key(&mut LocalResponder::new(ManagementKey::factory()))
            .unwrap();
        tx.put_data(piv::consts::object::CHUID, &[]).unwrap();
        assert!(matches!(tx.card_serial(), Err(Error::NotFound)));
    }
    let mut card = stack.connect(0);
    let refused = stack
        .cms
        .issue_card(&mut card, &issuance_for(&jane, None))
        .unwrap_err();
    assert!(matches!(refused, cms::issuance::IssuanceError::NoSerial));
    let issued = stack
        .cms
        .issue_card(&mut card, &issuance_for(&jane, Some(serial(0x42))))
        .unwrap();
    assert_eq!(issued.serial, serial(0x42).to_string());
    drop(card);
    let (created, _) = stack.sign_in(0, "918273").unwrap();
    assert_eq!(created.session.card_serial, serial(0x42).to_string());

    // A card that has a CHUID keeps it: another serial given is a mistake.
    let _other = stack.blank_card(1, 10);
    let mut card = stack.connect(1);
    let mismatch = stack
        .cms
        .issue_card(&mut card, &issuance_for(&jane, Some(serial(11))))
        .unwrap_err();
    assert!(matches!(
        mismatch,
        cms::issuance::IssuanceError::SerialMismatch { .. }
    ));
}
