//! The API against the running service over HTTPS: authentication, sessions, roles, tickets,
//! Smartcard Details, cancellation, new card records, every permission rule and bad input, and
//! persistence across a restart. Card keys are software keys here; `tests/tests/cms_e2e.rs`
//! signs with a virtual card through pcscd.

mod common;

use cms::Policy;
use cms_api::client::ClientError;
use cms_api::protocol::{self, b64, NewCardRequest, SessionRequest};
use cms_api::ErrorCode;
use common::{expect_error, Fixture, SoftKey, NURSE, SERIAL_A, SERIAL_B};
use reqwest::Method;
use std::time::Duration;

/// An RA profile that grants a second activity besides B0267, so that a profile's activities
/// are a list.
const RA_WITH_B0300: (&str, &str, &[&str]) = (
    "Leeds Teaching Hospitals",
    "RAA ID Checker",
    &["B0267", "B0300"],
);
const SERIAL_C: &str = "4082C10C1A222820";

#[tokio::test(flavor = "multi_thread")]
async fn a_card_signature_opens_a_session_with_the_users_roles_and_a_ticket() {
    let fx = Fixture::start().await;
    let health = fx.client.health().await.unwrap();
    assert_eq!((health.status.as_str(), health.api_version), ("ok", 1));

    let (user, roles) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&user, SERIAL_A, 365);
    let (created, session) = fx.login(&card).await;
    assert_eq!(created.session.user.id, user);
    assert_eq!(created.session.user.name, "Jane Doe");
    assert_eq!(created.session.card_serial, SERIAL_A);
    assert_eq!(created.session.roles.len(), 1);
    assert_eq!(created.session.roles[0].job_role, "Staff Nurse");
    // One role profile: selected at once.
    assert_eq!(created.session.selected_role, Some(roles[0]));
    assert_eq!(session.session().await.unwrap(), created.session);

    // The ticket is for relying applications: it validates without the session token.
    let valid = fx.client.validate_ticket(&created.ticket).await.unwrap();
    assert!(valid.valid);
    assert_eq!(valid.user.id, user);
    assert_eq!(valid.card_serial, SERIAL_A);
    assert_eq!(valid.role.unwrap().activities, ["B0360"]);
    // The ticket is not a session token, nor the token a ticket.
    expect_error(
        fx.client.with_session(&created.ticket).session().await,
        401,
        ErrorCode::InvalidSession,
    );
    expect_error(
        fx.client.validate_ticket(&created.session_token).await,
        401,
        ErrorCode::InvalidTicket,
    );

    session.logout().await.unwrap();
    expect_error(session.session().await, 401, ErrorCode::InvalidSession);
    expect_error(
        fx.client.validate_ticket(&created.ticket).await,
        401,
        ErrorCode::InvalidTicket,
    );
    let log = fx.cms.database().audit_log(Some(SERIAL_A), 10).unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.ends_with(&["authenticate", "session.logout"]),
        "{actions:?}"
    );
}

/// Records a certificate for `key` as the CA issued them before certificates named the
/// holder (subject `CN=<user id>,O=Identity Agent CMS`) as the active one of the new card
/// `serial` of `user_id`, and returns it (DER).
fn certificate_naming_the_user_id(
    fx: &Fixture,
    user_id: &str,
    serial: &str,
    key: &SoftKey,
) -> Vec<u8> {
    use der::{Decode, DecodePem, Encode};
    use p256::pkcs8::DecodePrivateKey;
    use std::str::FromStr;
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::time::{Time, Validity};

    let now = cms::dates::now();
    let event = cms::db::AuditEvent {
        actor: "admin",
        action: "card.issue",
        card_serial: Some(serial),
        detail: String::new(),
    };
    fx.cms
        .register_card(
            serial,
            "Gemalto",
            user_id,
            now - 2 * 86_400,
            piv::ManagementAlgorithm::Aes128,
            &event,
        )
        .unwrap();
    let files = cms::ca::CaFiles::in_dir(fx.dir.path());
    let ca_key = std::fs::read_to_string(files.ca_key).unwrap();
    let ca_key = p256::ecdsa::SigningKey::from_pkcs8_pem(&ca_key).unwrap();
    let ca = x509_cert::Certificate::from_pem(fx.cms.ca().certificate_pem()).unwrap();
    let (not_before, not_after) = (now - 86_400, now + 365 * 86_400);
    let time = |unix: i64| {
        Time::UtcTime(
            der::asn1::UtcTime::from_unix_duration(Duration::from_secs(unix as u64)).unwrap(),
        )
    };
    let builder = CertificateBuilder::new(
        Profile::Leaf {
            issuer: ca.tbs_certificate.subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        x509_cert::serial_number::SerialNumber::from(0x5eed_0001u32),
        Validity {
            not_before: time(not_before),
            not_after: time(not_after),
        },
        x509_cert::name::Name::from_str(&format!("CN={user_id},O=Identity Agent CMS")).unwrap(),
        spki::SubjectPublicKeyInfoOwned::from_der(&key.spki_der()).unwrap(),
        &ca_key,
    )
    .unwrap();
    let der = builder
        .build::<p256::ecdsa::DerSignature>()
        .unwrap()
        .to_der()
        .unwrap();
    let record = cms::db::CertificateRecord {
        serial: piv::Certificate::from_der(&der).unwrap().serial_hex(),
        card_serial: serial.to_owned(),
        operation_id: None,
        spki: key.spki_der(),
        der: der.clone(),
        not_before,
        not_after,
        status: cms::db::CertificateStatus::Active,
    };
    fx.cms
        .database()
        .add_issued_certificate(&record, now, &event)
        .unwrap();
    der
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_name_the_holder_and_older_ones_naming_the_user_id_still_sign_in() {
    let fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let (raj, _) = fx.user("Raj Patel", &[NURSE]);

    // New certificates: the name for people, the user id for machines.
    let card = fx.card(&jane, SERIAL_A, 365);
    let cert = piv::Certificate::from_der(&card.certificate).unwrap();
    assert_eq!(
        cert.subject(),
        format!("CN=Jane Doe,UID={jane},O=Identity Agent CMS")
    );
    let (created, _) = fx.login(&card).await;
    assert_eq!(created.session.user.id, jane);
    assert_eq!(created.session.user.name, "Jane Doe");

    // A card still holding a certificate from before: it signs in as its holder.
    let key = SoftKey::p256();
    let der = certificate_naming_the_user_id(&fx, &raj, SERIAL_B, &key);
    assert_eq!(
        piv::Certificate::from_der(&der).unwrap().subject(),
        format!("CN={raj},O=Identity Agent CMS")
    );
    let old = common::SoftCard {
        serial: SERIAL_B.to_owned(),
        key,
        certificate: der,
    };
    let (created, session) = fx.login(&old).await;
    assert_eq!(created.session.user.id, raj);
    assert_eq!(created.session.user.name, "Raj Patel");
    assert_eq!(session.session().await.unwrap().user.name, "Raj Patel");
    let details = session.card(SERIAL_B).await.unwrap();
    assert_eq!(details.holder_id, raj);
    assert_eq!(details.holder_name.as_deref(), Some("Raj Patel"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_rsa_card_authenticates_too() {
    let fx = Fixture::start().await;
    let (user, _) = fx.user("Raj Patel", &[NURSE]);
    let card = fx.card_with_key(&user, SERIAL_B, 30, SoftKey::rsa());
    let (created, _) = fx.login(&card).await;
    assert_eq!(created.session.card_serial, SERIAL_B);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_with_several_roles_selects_one_of_their_own() {
    let fx = Fixture::start().await;
    let (user, roles) = fx.user("Sam Lee", &[NURSE, RA_WITH_B0300]);
    let (_, other_roles) = fx.user("Other", &[NURSE]);
    let card = fx.card(&user, SERIAL_A, 365);
    let (created, session) = fx.login(&card).await;
    assert_eq!(created.session.selected_role, None);
    assert_eq!(created.session.roles.len(), 2);
    let valid = fx.client.validate_ticket(&created.ticket).await.unwrap();
    assert_eq!(valid.role, None);

    let before = fx.audit_len();
    expect_error(
        session.select_role(other_roles[0]).await,
        403,
        ErrorCode::ForeignRole,
    );
    assert_eq!(fx.audit_len(), before);
    let view = session.select_role(roles[1]).await.unwrap();
    assert_eq!(view.selected_role, Some(roles[1]));
    let valid = fx.client.validate_ticket(&created.ticket).await.unwrap();
    assert_eq!(valid.role.unwrap().job_role, "RAA ID Checker");
}

#[tokio::test(flavor = "multi_thread")]
async fn challenges_are_refused_for_unknown_malformed_and_cancelled_cards() {
    let fx = Fixture::start().await;
    let (user, _) = fx.user("Jane Doe", &[NURSE]);
    fx.card(&user, SERIAL_A, 365);
    expect_error(
        fx.client.challenge("0000000000000001").await,
        404,
        ErrorCode::UnknownCard,
    );
    expect_error(
        fx.client.challenge("4082A0").await,
        400,
        ErrorCode::InvalidField,
    );
    expect_error(
        fx.client.challenge("zz82A001132F2817").await,
        400,
        ErrorCode::InvalidField,
    );
    fx.cms.admin_cancel_card(SERIAL_A, "lost").unwrap();
    let message = expect_error(
        fx.client.challenge(SERIAL_A).await,
        403,
        ErrorCode::CardCancelled,
    );
    assert!(message.contains(SERIAL_A));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_answers_to_a_challenge_change_nothing() {
    // Each bad answer is answered with its own code here; the backoff that follows a run of
    // them is `hostile_sign_in.rs`'s.
    let fx = Fixture::with_policy(Policy {
        throttling: cms::policy::Throttling {
            pair_failures: 100,
            ..Default::default()
        },
        ..Policy::default()
    })
    .await;
    let (user, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&user, SERIAL_A, 365);
    let other = fx.card(&user, SERIAL_B, 365);
    let expired = fx.card(&user, SERIAL_C, -1);

    // An answer for a card: a fresh challenge signed by `key`, with `cert`.
    let answer = |serial: &'static str, key: SoftKey, cert: Vec<u8>| {
        let client = fx.client.clone();
        async move {
            let c = client.challenge(serial).await.unwrap();
            let raw = b64::decode_url(&c.challenge).unwrap();
            SessionRequest {
                serial: serial.into(),
                signature: b64::encode(&key.sign(&protocol::auth_message(serial, &raw))),
                challenge: c.challenge,
                certificate: b64::encode(&cert),
            }
        }
    };
    let before = fx.audit_len();

    // A signature by another key.
    let req = answer(SERIAL_A, SoftKey::p256(), card.certificate.clone()).await;
    expect_error(
        fx.client.create_session(&req).await,
        401,
        ErrorCode::BadSignature,
    );
    // The same challenge again: single use, even after a failure.
    expect_error(
        fx.client.create_session(&req).await,
        401,
        ErrorCode::UnknownChallenge,
    );
    // A challenge never issued.
    let mut forged = answer(SERIAL_A, card.key.clone(), card.certificate.clone()).await;
    forged.challenge = b64::encode_url(&[7; 32]);
    expect_error(
        fx.client.create_session(&forged).await,
        401,
        ErrorCode::UnknownChallenge,
    );
    // A challenge issued for another card.
    let mut swapped = answer(SERIAL_B, card.key.clone(), card.certificate.clone()).await;
    swapped.serial = SERIAL_A.into();
    expect_error(
        fx.client.create_session(&swapped).await,
        400,
        ErrorCode::ChallengeMismatch,
    );
    // Another card's certificate, from this CA.
    let req = answer(SERIAL_A, other.key.clone(), other.certificate.clone()).await;
    expect_error(
        fx.client.create_session(&req).await,
        401,
        ErrorCode::CertificateNotOfCard,
    );
    // A certificate from another CA (same name, same key).
    let foreign_dir = tempfile::tempdir().unwrap();
    let foreign = cms::Cms::init(
        &cms::DataDir::new(foreign_dir.path()),
        &[],
        Policy::default(),
    )
    .unwrap();
    let foreign_cert = foreign
        .ca()
        .issue_card_certificate(
            cms::ca::CertificateHolder {
                user_id: &user,
                name: "Jane Doe",
            },
            &card.key.spki_der(),
            0,
            cms::dates::now() + 86_400,
            |_| false,
        )
        .unwrap();
    let req = answer(SERIAL_A, card.key.clone(), foreign_cert.der).await;
    expect_error(
        fx.client.create_session(&req).await,
        401,
        ErrorCode::UntrustedCertificate,
    );
    // Not a certificate at all, not base64.
    let mut req = answer(SERIAL_A, card.key.clone(), vec![0x30, 0x03, 1, 2, 3]).await;
    expect_error(
        fx.client.create_session(&req).await,
        400,
        ErrorCode::InvalidField,
    );
    req.signature = "***".into();
    expect_error(
        fx.client.create_session(&req).await,
        400,
        ErrorCode::InvalidField,
    );
    // An expired card.
    let req = answer(SERIAL_C, expired.key.clone(), expired.certificate.clone()).await;
    let message = expect_error(
        fx.client.create_session(&req).await,
        403,
        ErrorCode::CardExpired,
    );
    assert!(message.contains("Registration Authority"), "{message}");

    // Nothing changed but the audit log, which has a line for each wrong answer (not for the
    // malformed request, nor for the expired card).
    let failed = fx.cms.database().audit_log(None, 100).unwrap();
    let failed: Vec<&str> = failed[before..]
        .iter()
        .map(|e| {
            assert_eq!(e.action, "authenticate.failed", "{e:?}");
            assert_eq!(e.card_serial.as_deref(), Some(SERIAL_A), "{e:?}");
            e.detail.split(' ').next().unwrap()
        })
        .collect();
    assert_eq!(
        failed,
        [
            "bad_signature",
            "unknown_challenge",
            "unknown_challenge",
            "challenge_mismatch",
            "certificate_not_of_card",
            "untrusted_certificate",
            "invalid_field"
        ]
    );
    // The card still authenticates.
    fx.login(&card).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn challenges_expire() {
    let fx = Fixture::with_policy(Policy {
        challenge_ttl: Duration::from_millis(300),
        ..Policy::default()
    })
    .await;
    let (user, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&user, SERIAL_A, 365);
    let c = fx.client.challenge(SERIAL_A).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let raw = b64::decode_url(&c.challenge).unwrap();
    let req = SessionRequest {
        serial: SERIAL_A.into(),
        signature: b64::encode(&card.key.sign(&protocol::auth_message(SERIAL_A, &raw))),
        challenge: c.challenge,
        certificate: b64::encode(&card.certificate),
    };
    expect_error(
        fx.client.create_session(&req).await,
        401,
        ErrorCode::ChallengeExpired,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_expire() {
    let fx = Fixture::with_policy(Policy {
        // Sessions end on whole seconds: two of them leave at least one after the login.
        session_ttl: Duration::from_secs(2),
        ..Policy::default()
    })
    .await;
    let (user, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&user, SERIAL_A, 365);
    let (created, session) = fx.login(&card).await;
    session.session().await.unwrap();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    expect_error(session.session().await, 401, ErrorCode::SessionExpired);
    expect_error(
        fx.client.validate_ticket(&created.ticket).await,
        401,
        ErrorCode::InvalidTicket,
    );
}

async fn raw_error(
    client: &cms_api::client::CmsClient,
    method: Method,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    let (status, bytes) = client
        .raw(method, path, Some("application/json"), body.to_vec())
        .await
        .unwrap();
    let parsed: protocol::ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{path}: not a JSON error ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert!(!parsed.error.message.is_empty());
    (status, parsed.error.code.as_str().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_json_errors_with_stable_codes() {
    let fx = Fixture::start().await;
    let (_, _, session) = fx.jane_logged_in(SERIAL_A, 365).await;
    let before = fx.audit_len();
    let c = &fx.client;
    let cases: Vec<(Method, &str, Vec<u8>, u16, &str)> = vec![
        (
            Method::POST,
            "/v1/auth/challenge",
            b"{\"serial\":".to_vec(),
            400,
            "malformed_json",
        ),
        (
            Method::POST,
            "/v1/auth/challenge",
            b"not json".to_vec(),
            400,
            "malformed_json",
        ),
        (
            Method::POST,
            "/v1/auth/challenge",
            b"".to_vec(),
            400,
            "malformed_json",
        ),
        (
            Method::POST,
            "/v1/auth/challenge",
            b"{\"serial\":42}".to_vec(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/auth/challenge",
            b"{}".to_vec(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/auth/challenge",
            b"[\"4082A001132F2817\"]".to_vec(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/auth/challenge",
            format!("{{\"serial\":\"{SERIAL_A}\",\"extra\":1}}").into_bytes(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/auth/session",
            b"{\"serial\":\"x\"}".to_vec(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/tickets/validate",
            b"{\"ticket\":null}".to_vec(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/v1/auth/challenge",
            format!("{{\"serial\":\"{}\"}}", "A".repeat(200_000)).into_bytes(),
            413,
            "payload_too_large",
        ),
        (
            Method::GET,
            "/v1/no/such/thing",
            vec![],
            404,
            "unknown_endpoint",
        ),
        (
            Method::GET,
            "/v1/auth/challenge",
            vec![],
            405,
            "method_not_allowed",
        ),
        (Method::GET, "/v1/session", vec![], 401, "unauthenticated"),
        (
            Method::POST,
            "/v1/session/logout",
            vec![],
            401,
            "unauthenticated",
        ),
        (
            Method::GET,
            "/v1/cards/4082A001132F2817",
            vec![],
            401,
            "unauthenticated",
        ),
        (
            Method::POST,
            "/v1/operations",
            b"{}".to_vec(),
            401,
            "unauthenticated",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let got = raw_error(c, method.clone(), path, &body).await;
        assert_eq!(got, (status, code.to_owned()), "{method} {path}");
    }
    // A session's wrong types and bad fields.
    let got = raw_error(
        &session,
        Method::POST,
        "/v1/session/role",
        b"{\"role_id\":\"one\"}",
    )
    .await;
    assert_eq!(got, (400, "invalid_request".to_owned()));
    expect_error(
        c.with_session("not-a-token").session().await,
        401,
        ErrorCode::InvalidSession,
    );
    expect_error(session.card("4082A0").await, 400, ErrorCode::InvalidField);
    // A body far over the limit is cut off: a 413 if the client reads it in time, else a
    // closed connection; either way the server goes on.
    match c
        .raw(
            Method::POST,
            "/v1/auth/challenge",
            Some("application/json"),
            vec![b' '; 8 << 20],
        )
        .await
    {
        Ok((status, _)) => assert_eq!(status, 413),
        Err(ClientError::Transport(_)) => {}
        Err(other) => panic!("{other:?}"),
    }
    assert_eq!(fx.audit_len(), before, "bad requests change nothing");
    // The server still serves.
    session.session().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn smartcard_details_are_for_the_holder_and_registration_authorities() {
    let fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let (raj, _) = fx.user("Raj Patel", &[NURSE]);
    let (officer, officer_roles) = fx.user("Olu Officer", &[NURSE, RA_WITH_B0300]);
    let jane_card = fx.card(&jane, SERIAL_A, 365);
    let raj_card = fx.card(&raj, SERIAL_B, 365);
    let officer_card = fx.card(&officer, SERIAL_C, 365);

    let (_, jane_s) = fx.login(&jane_card).await;
    let mine = jane_s.user_cards(&jane).await.unwrap();
    assert_eq!(mine.user.name, "Jane Doe");
    assert_eq!(mine.cards.len(), 1);
    let row = &mine.cards[0];
    assert_eq!(row.serial, SERIAL_A);
    assert_eq!(row.holder_id, jane);
    assert_eq!(row.holder_name.as_deref(), Some("Jane Doe"));
    assert_eq!(
        (
            row.format.as_str(),
            row.card_type.as_str(),
            row.status.as_str()
        ),
        ("Smartcard", "Gemalto", "Active")
    );
    assert_eq!(row.row[5], "Active");
    assert_eq!(
        row.certs_expire.as_deref(),
        Some(cms::dates::iso_date(cms::dates::now() + 365 * 86_400).as_str())
    );
    assert_eq!(jane_s.card(SERIAL_A).await.unwrap(), *row);

    // Not another user's cards.
    expect_error(jane_s.user_cards(&raj).await, 403, ErrorCode::Forbidden);
    expect_error(jane_s.card(SERIAL_B).await, 403, ErrorCode::Forbidden);
    // A card that does not exist is as forbidden as another's to a non-RA.
    expect_error(
        jane_s.card("0000000000000001").await,
        403,
        ErrorCode::Forbidden,
    );
    drop(raj_card);

    // An RA sees them once the B0267 role is selected.
    let (_, ra_s) = fx.login(&officer_card).await;
    let message = expect_error(ra_s.user_cards(&raj).await, 403, ErrorCode::Forbidden);
    assert!(message.contains("B0267"));
    ra_s.select_role(officer_roles[1]).await.unwrap();
    assert_eq!(
        ra_s.user_cards(&raj).await.unwrap().cards[0].serial,
        SERIAL_B
    );
    let raj_details = ra_s.card(SERIAL_B).await.unwrap();
    assert_eq!(raj_details.holder_id, raj);
    assert_eq!(raj_details.holder_name.as_deref(), Some("Raj Patel"));
    expect_error(
        ra_s.card("0000000000000001").await,
        404,
        ErrorCode::UnknownCard,
    );
    expect_error(
        ra_s.user_cards("00000000-0000-4000-8000-000000000000")
            .await,
        404,
        ErrorCode::UnknownUser,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_registration_authority_cancels_cards_and_a_cancelled_card_is_done() {
    let fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let (officer, officer_roles) = fx.user("Olu Officer", &[NURSE, RA_WITH_B0300]);
    let jane_card = fx.card(&jane, SERIAL_A, 365);
    let officer_card = fx.card(&officer, SERIAL_C, 365);
    let (jane_created, jane_s) = fx.login(&jane_card).await;
    let (_, ra_s) = fx.login(&officer_card).await;

    let before = fx.audit_len();
    expect_error(
        jane_s.cancel_card(SERIAL_A, "lost").await,
        403,
        ErrorCode::ActivityRequired,
    );
    let message = expect_error(
        ra_s.cancel_card(SERIAL_A, "lost").await,
        403,
        ErrorCode::ActivityRequired,
    );
    assert!(message.contains("select role profile"), "{message}");
    ra_s.select_role(officer_roles[1]).await.unwrap();
    let before_select = fx.audit_len();
    expect_error(
        ra_s.cancel_card(SERIAL_A, "  ").await,
        400,
        ErrorCode::InvalidField,
    );
    expect_error(
        ra_s.cancel_card("0000000000000001", "lost").await,
        404,
        ErrorCode::UnknownCard,
    );
    assert_eq!(fx.audit_len(), before_select);
    assert_eq!(
        before_select,
        before + 1,
        "only the role selection was recorded"
    );

    let cancelled = ra_s
        .cancel_card(SERIAL_A, "lost on the ward")
        .await
        .unwrap();
    assert_eq!(cancelled.status, "Cancelled");
    assert_eq!(
        cancelled.cancelled_on.as_deref(),
        Some(cms::dates::iso_date(cms::dates::now()).as_str())
    );
    assert_eq!(
        cancelled.row[5],
        cms::dates::display_date(cms::dates::now())
    );
    // The holder's session and ticket end with the card.
    expect_error(jane_s.session().await, 401, ErrorCode::InvalidSession);
    expect_error(
        fx.client.validate_ticket(&jane_created.ticket).await,
        401,
        ErrorCode::InvalidTicket,
    );
    expect_error(
        fx.client.challenge(SERIAL_A).await,
        403,
        ErrorCode::CardCancelled,
    );
    expect_error(
        ra_s.cancel_card(SERIAL_A, "again").await,
        403,
        ErrorCode::CardCancelled,
    );
    let log = fx.cms.database().audit_log(Some(SERIAL_A), 1).unwrap();
    assert_eq!(
        (log[0].action.as_str(), log[0].actor.as_str()),
        ("card.cancel", officer.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_authority_registers_new_cards() {
    let fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let (officer, _) = fx.user("Olu Officer", &[RA_WITH_B0300]);
    let jane_card = fx.card(&jane, SERIAL_A, 365);
    let officer_card = fx.card(&officer, SERIAL_C, 365);
    let (_, jane_s) = fx.login(&jane_card).await;
    let (_, ra_s) = fx.login(&officer_card).await;
    let request = |serial: &str, user: &str| NewCardRequest {
        serial: serial.into(),
        card_type: "Oberthur".into(),
        user_id: user.into(),
        management_algorithm: None,
    };
    expect_error(
        jane_s.new_card(&request(SERIAL_B, &jane)).await,
        403,
        ErrorCode::ActivityRequired,
    );
    let created = ra_s
        .new_card(&request(&SERIAL_B.to_lowercase(), &jane))
        .await
        .unwrap();
    assert_eq!(
        (created.serial.as_str(), created.card_type.as_str()),
        (SERIAL_B, "Oberthur")
    );
    assert_eq!(created.certs_expire, None);
    expect_error(
        ra_s.new_card(&request(SERIAL_B, &jane)).await,
        409,
        ErrorCode::CardExists,
    );
    expect_error(
        ra_s.new_card(&request(
            "1111111111111111",
            "00000000-0000-4000-8000-000000000000",
        ))
        .await,
        404,
        ErrorCode::UnknownUser,
    );
    expect_error(
        ra_s.new_card(&request("11", &jane)).await,
        400,
        ErrorCode::InvalidField,
    );
    assert_eq!(jane_s.user_cards(&jane).await.unwrap().cards.len(), 2);
    // A card without a certificate cannot authenticate.
    let c = fx.client.challenge(SERIAL_B).await.unwrap();
    let req = SessionRequest {
        serial: SERIAL_B.into(),
        challenge: c.challenge,
        signature: b64::encode(&[1; 64]),
        certificate: b64::encode(&jane_card.certificate),
    };
    expect_error(
        fx.client.create_session(&req).await,
        401,
        ErrorCode::CertificateNotOfCard,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_survives_a_restart() {
    let mut fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&jane, SERIAL_A, 365);
    let (created, _) = fx.login(&card).await;
    let ca_before = fx.cms.ca().certificate_pem().to_owned();
    let audit_before = fx.audit_len();

    fx.restart().await;
    assert_eq!(fx.cms.ca().certificate_pem(), ca_before);
    let session = fx.client.with_session(&created.session_token);
    assert_eq!(session.session().await.unwrap(), created.session);
    assert!(fx.client.validate_ticket(&created.ticket).await.is_ok());
    assert_eq!(
        session.user_cards(&jane).await.unwrap().cards[0].serial,
        SERIAL_A
    );
    assert_eq!(fx.audit_len(), audit_before);
    // The card authenticates against the restarted service.
    fx.login(&card).await;
    // A client of the old server is refused at the TLS or transport level, not by the API.
    assert!(!matches!(
        cms_api::client::CmsClient::new("https://127.0.0.1:1", &ca_before)
            .unwrap()
            .health()
            .await,
        Err(ClientError::Api { .. }) | Ok(_)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_does_not_trust_the_ca_is_refused() {
    let fx = Fixture::start().await;
    let other_dir = tempfile::tempdir().unwrap();
    let other =
        cms::Cms::init(&cms::DataDir::new(other_dir.path()), &[], Policy::default()).unwrap();
    let url = fx.server.as_ref().unwrap().url();
    let client = cms_api::client::CmsClient::new(&url, other.ca().certificate_pem()).unwrap();
    assert!(matches!(
        client.health().await,
        Err(ClientError::Transport(_))
    ));
    // Plain HTTP is refused by the client.
    let plain = cms_api::client::CmsClient::new(
        &url.replace("https", "http"),
        fx.cms.ca().certificate_pem(),
    )
    .unwrap();
    assert!(plain.health().await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_can_present_an_organisations_own_tls_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cms = std::sync::Arc::new(
        cms::Cms::init(&cms::DataDir::new(dir.path()), &[], Policy::default()).unwrap(),
    );
    // Another CA's TLS certificate for localhost stands in for the organisation's.
    let org_dir = tempfile::tempdir().unwrap();
    let org = cms::Cms::init(&cms::DataDir::new(org_dir.path()), &[], Policy::default()).unwrap();
    let org_files = org.data_dir().ca_files();
    let tls = cms::server::TlsFiles {
        certificate_chain: org_files.tls_certificate.clone(),
        key: org_files.tls_key.clone(),
        issuer: None,
    };
    let running = cms::server::start_with_tls(
        cms.clone(),
        "127.0.0.1:0".parse().unwrap(),
        &tls,
        &cms::server::ServerLimits::default(),
    )
    .await
    .unwrap();
    let trusting_org =
        cms_api::client::CmsClient::new(&running.url(), org.ca().certificate_pem()).unwrap();
    assert_eq!(trusting_org.health().await.unwrap().status, "ok");
    let trusting_cms =
        cms_api::client::CmsClient::new(&running.url(), cms.ca().certificate_pem()).unwrap();
    assert!(matches!(
        trusting_cms.health().await,
        Err(ClientError::Transport(_))
    ));
    running.stop().await;

    let missing = cms::server::TlsFiles {
        certificate_chain: dir.path().join("nope.pem"),
        key: dir.path().join("nope.key"),
        issuer: None,
    };
    let refused = cms::server::start_with_tls(
        cms,
        "127.0.0.1:0".parse().unwrap(),
        &missing,
        &cms::server::ServerLimits::default(),
    )
    .await;
    assert!(refused.unwrap_err().to_string().contains("nope.pem"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_told_to_refuse_requests_looks_unreachable_until_told_to_serve_again() {
    let fx = Fixture::start().await;
    let server = fx.server.as_ref().unwrap();
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&jane, SERIAL_A, 365);
    assert_eq!(server.requests(), 0);
    fx.client.health().await.unwrap();
    // A challenge and a session.
    let (_, session) = fx.login(&card).await;
    assert_eq!(server.requests(), 3);

    // Nothing more: the next request on a kept-alive connection is dropped unanswered, and a
    // new connection (another client) is closed at once. Both look like an unreachable service.
    server.refuse_after(Some(server.requests()));
    let unreachable = |result: Result<_, ClientError>| match result {
        Err(ClientError::Transport(_)) => {}
        other => panic!("expected a transport error, got {other:?}"),
    };
    unreachable(session.session().await.map(drop));
    unreachable(fx.client.health().await.map(drop));
    let other =
        cms_api::client::CmsClient::new(&server.url(), fx.cms.ca().certificate_pem()).unwrap();
    unreachable(other.health().await.map(drop));
    assert_eq!(server.requests(), 3);

    // A budget of one more request: that one is served, the one after is not.
    server.refuse_after(Some(server.requests() + 1));
    assert_eq!(session.session().await.unwrap().user.id, jane);
    unreachable(session.session().await.map(drop));
    assert_eq!(server.requests(), 4);

    // Serving normally again, the session is still there.
    server.refuse_after(None);
    assert_eq!(session.session().await.unwrap().user.id, jane);
    fx.client.health().await.unwrap();
    assert_eq!(server.requests(), 6);
}
