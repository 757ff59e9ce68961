//! RA repair over the API: only a session whose selected role holds B0267, only for an expired
//! or full card, never the officer's own card; the PUK released for the holder's new PIN and
//! rotated when the repair is confirmed.

mod common;

use cms::Policy;
use cms_api::protocol::b64;
use cms_api::{ErrorCode, OperationKind, OperationState};
use common::{
    confirmation, csr, expect_error, issue_and_confirm, relay_as_card, start, Fixture, SoftCard,
    SoftKey, AGENT, NURSE, RA,
};
use piv::CardSerial;
use std::time::Duration;

const HOLDER: &str = "4082A001132F2817";
const OFFICER: &str = "4082C10C1A222820";

fn serial(s: &str) -> CardSerial {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_officer_with_b0267_repairs_an_expired_card_and_the_puk_rotates() {
    let fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let (olu, olu_roles) = fx.user("Olu Officer", &[NURSE, RA]);
    let expired = fx.card(&jane, HOLDER, -30);
    let officer_card = fx.card(&olu, OFFICER, 365);
    let (_, ra) = fx.login(&officer_card).await;

    // Not with the wrong role profile selected: the message says which one to select.
    let message = expect_error(
        ra.start_operation(OperationKind::Repair, HOLDER, AGENT)
            .await,
        403,
        ErrorCode::ActivityRequired,
    );
    assert!(
        message.contains("B0267") && message.contains("RAA ID Checker"),
        "{message}"
    );
    ra.select_role(olu_roles[1]).await.unwrap();
    // Not the officer's own card, however expired.
    expect_error(
        ra.start_operation(OperationKind::Repair, OFFICER, AGENT)
            .await,
        403,
        ErrorCode::OwnCard,
    );

    let op = start(&ra, OperationKind::Repair, HOLDER).await;
    assert_eq!((op.kind.as_str(), op.state.as_str()), ("repair", "started"));
    let again = start(&ra, OperationKind::Repair, HOLDER).await;
    assert_eq!((again.id.as_str(), again.resumed), (op.id.as_str(), true));
    relay_as_card(&ra, &op.id, &fx.cms.card_management_key(HOLDER).unwrap()).await;

    // The PUK, with the one to change it to; released again on a retry, the same.
    let puk = ra.release_puk(&op.id).await.unwrap();
    assert_eq!(puk.puk, fx.cms.custody().puk(serial(HOLDER), 0));
    assert_eq!(puk.next_puk, fx.cms.custody().puk(serial(HOLDER), 1));
    let retry = ra.release_puk(&op.id).await.unwrap();
    assert_eq!(
        (retry.puk.as_str(), retry.next_puk.as_str()),
        (puk.puk.as_str(), puk.next_puk.as_str())
    );
    assert!(ra.operation(&op.id).await.unwrap().puk_released);

    let new_key = SoftKey::p256();
    let issued = ra.submit_csr(&op.id, &csr(&new_key)).await.unwrap();
    let der = b64::decode(issued.certificate.as_deref().unwrap()).unwrap();
    let cert = fx.cms.ca().verify_issued(&der).unwrap();
    // The certificate names the holder, not the officer.
    assert_eq!(
        cert.subject(),
        format!("CN=Jane Doe,UID={jane},O=Identity Agent CMS")
    );
    let done = ra
        .confirm(&op.id, &confirmation(&new_key, &issued))
        .await
        .unwrap();
    assert_eq!(done.state, OperationState::Completed);

    let details = ra.card(HOLDER).await.unwrap();
    assert!(!details.expired);
    assert_eq!(details.renewals_used, 0);
    // The holder signs in with the repaired card; the expired certificate is retired.
    fx.login(&SoftCard {
        serial: HOLDER.into(),
        key: new_key,
        certificate: der,
    })
    .await;
    fx.login_refused(&expired, ErrorCode::CertificateNotOfCard)
        .await;

    // The released PUK is no longer the card's: the next repair releases the next one.
    let card = fx.cms.database().card(HOLDER).unwrap().unwrap();
    assert_eq!(card.puk_generation, 1);
    let log = fx.cms.database().audit_log(Some(HOLDER), 20).unwrap();
    let puk_lines: Vec<_> = log
        .iter()
        .filter(|e| e.action == "repair.puk_release")
        .collect();
    assert_eq!(puk_lines.len(), 2);
    assert!(puk_lines.iter().all(|e| e.actor == olu));
    assert!(
        log.iter().all(|e| !e.detail.contains(puk.puk.as_str())),
        "the PUK is never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn repair_is_only_for_expired_or_full_cards_and_only_for_registration_authorities() {
    let fx = Fixture::with_policy(Policy {
        card_capacity: 1,
        ..Policy::default()
    })
    .await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let (olu, _) = fx.user("Olu Officer", &[RA]);
    let (nia, _) = fx.user("Nia Nurse", &[NURSE]);
    let valid = fx.card(&jane, HOLDER, 200);
    let officer_card = fx.card(&olu, OFFICER, 365);
    let nurse_card = fx.card(&nia, "5124000004254900", 365);
    let (_, ra) = fx.login(&officer_card).await;
    let (_, nurse) = fx.login(&nurse_card).await;
    let (_, holder) = fx.login(&valid).await;
    let before = fx.audit_len();

    let message = expect_error(
        ra.start_operation(OperationKind::Repair, HOLDER, AGENT)
            .await,
        409,
        ErrorCode::CardNotRepairable,
    );
    assert!(message.contains("self-renew"), "{message}");
    expect_error(
        nurse
            .start_operation(OperationKind::Repair, HOLDER, AGENT)
            .await,
        403,
        ErrorCode::ActivityRequired,
    );
    expect_error(
        holder
            .start_operation(OperationKind::Repair, HOLDER, AGENT)
            .await,
        403,
        ErrorCode::ActivityRequired,
    );
    expect_error(
        ra.start_operation(OperationKind::Repair, "0000000000000001", AGENT)
            .await,
        404,
        ErrorCode::UnknownCard,
    );
    assert_eq!(fx.audit_len(), before);

    // Full after one self-renewal: now an RA can repair it, and nobody else can see the repair.
    let op = start(&holder, OperationKind::Renew, HOLDER).await;
    let key = SoftKey::p256();
    issue_and_confirm(&holder, &op.id, &key).await;
    let repair = start(&ra, OperationKind::Repair, HOLDER).await;
    expect_error(
        holder.operation(&repair.id).await,
        403,
        ErrorCode::ActivityRequired,
    );
    expect_error(
        holder.release_puk(&repair.id).await,
        403,
        ErrorCode::ActivityRequired,
    );
    expect_error(
        nurse.release_puk(&repair.id).await,
        403,
        ErrorCode::ActivityRequired,
    );
    // The holder cannot start a renewal while the repair is open.
    expect_error(
        holder
            .start_operation(OperationKind::Renew, HOLDER, AGENT)
            .await,
        409,
        ErrorCode::CardFull,
    );
    let key = SoftKey::rsa();
    issue_and_confirm(&ra, &repair.id, &key).await;
    // A repair gives the card its capacity back, without a PUK released: same generation.
    let card = fx.cms.database().card(HOLDER).unwrap().unwrap();
    assert_eq!((card.renewals_used, card.puk_generation), (0, 0));
    expect_error(
        ra.release_puk(&repair.id).await,
        409,
        ErrorCode::WrongOperationState,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repair_takes_over_a_renewal_left_open_when_the_card_expired() {
    let fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let (olu, _) = fx.user("Olu Officer", &[RA]);
    // A card whose certificate ends in two seconds.
    let event = cms::db::AuditEvent {
        actor: "admin",
        action: "card.issue",
        card_serial: Some(HOLDER),
        detail: String::new(),
    };
    let now = cms::dates::now();
    fx.cms
        .register_card(
            HOLDER,
            "PIV",
            &jane,
            now,
            piv::ManagementAlgorithm::Tdes,
            &event,
        )
        .unwrap();
    let key = SoftKey::p256();
    let record = fx
        .cms
        .certify_card(HOLDER, &key.spki_der(), now - 60, now + 2)
        .unwrap();
    let card = SoftCard {
        serial: HOLDER.into(),
        key,
        certificate: record.der,
    };
    let (_, holder) = fx.login(&card).await;
    let renew = start(&holder, OperationKind::Renew, HOLDER).await;
    let pending_key = SoftKey::p256();
    holder
        .submit_csr(&renew.id, &csr(&pending_key))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let officer_card = fx.card(&olu, OFFICER, 365);
    let (_, ra) = fx.login(&officer_card).await;
    let repair = start(&ra, OperationKind::Repair, HOLDER).await;
    assert_ne!(repair.id, renew.id);
    assert_eq!(
        holder.operation(&renew.id).await.unwrap().state,
        OperationState::Aborted
    );
    expect_error(
        holder.confirm(&renew.id, &[0; 8]).await,
        409,
        ErrorCode::WrongOperationState,
    );
    // The renewal's pending certificate no longer signs in.
    let renew_view = holder.operation(&renew.id).await.unwrap();
    let pending = SoftCard {
        serial: HOLDER.into(),
        key: pending_key,
        certificate: b64::decode(renew_view.certificate.as_deref().unwrap()).unwrap(),
    };
    fx.login_refused(&pending, ErrorCode::CertificateNotOfCard)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_just_started_does_not_make_a_healthy_card_repairable() {
    let fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let (olu, _) = fx.user("Olu Officer", &[RA]);
    let card = fx.card(&jane, HOLDER, 200);
    let (_, holder) = fx.login(&card).await;
    let renew = start(&holder, OperationKind::Renew, HOLDER).await;
    let officer_card = fx.card(&olu, OFFICER, 365);
    let (_, ra) = fx.login(&officer_card).await;
    // Refused as a healthy card is, and the renewal goes on untouched.
    expect_error(
        ra.start_operation(OperationKind::Repair, HOLDER, AGENT)
            .await,
        409,
        ErrorCode::CardNotRepairable,
    );
    assert_eq!(
        holder.operation(&renew.id).await.unwrap().state,
        OperationState::Started
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_whose_renewal_stalled_can_be_repaired_though_not_expired() {
    // Every renewal counts as left open at once, as one untouched for the default ten minutes.
    let fx = Fixture::with_policy(Policy {
        stalled_renewal_age: Duration::ZERO,
        ..Policy::default()
    })
    .await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let (olu, _) = fx.user("Olu Officer", &[RA]);
    let card = fx.card(&jane, HOLDER, 200);
    let (_, holder) = fx.login(&card).await;
    // The renewal started, and the card lost its old key before it got a certificate.
    let renew = start(&holder, OperationKind::Renew, HOLDER).await;
    let officer_card = fx.card(&olu, OFFICER, 365);
    let (_, ra) = fx.login(&officer_card).await;
    let repair = start(&ra, OperationKind::Repair, HOLDER).await;
    assert_eq!(
        holder.operation(&renew.id).await.unwrap().state,
        OperationState::Aborted
    );
    let key = SoftKey::p256();
    issue_and_confirm(&ra, &repair.id, &key).await;
    // Once repaired, a valid card with nothing open is not repairable.
    expect_error(
        ra.start_operation(OperationKind::Repair, HOLDER, AGENT)
            .await,
        409,
        ErrorCode::CardNotRepairable,
    );
}
