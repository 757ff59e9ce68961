//! Restoring a card's lost certificate object over the API: the public copy of the card's
//! current certificate, the holder's restore operation (relay, confirmation by the key the
//! card still holds, no CSR), and how it gives way to a renewal.

mod common;

use cms_api::protocol::b64;
use cms_api::{ErrorCode, OperationKind, OperationState};
use common::{
    card_key, confirmation, csr, expect_error, relay_as_card, start, Fixture, SoftKey, AGENT,
    NURSE, RA, SERIAL_A, SERIAL_B,
};

fn actions(fx: &Fixture, serial: &str) -> Vec<String> {
    fx.cms
        .database()
        .audit_log(Some(serial), 20)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_holder_restores_the_current_certificate_and_nothing_else_changes() {
    let fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&jane, SERIAL_A, 200);

    // Anyone may read the card's certificate: it is public.
    let copy = fx.client.card_certificate(SERIAL_A).await.unwrap();
    assert_eq!(copy.serial, SERIAL_A);
    assert_eq!(b64::decode(&copy.certificate).unwrap(), card.certificate);
    let (_, s) = fx.login(&card).await;
    let details_before = s.card(SERIAL_A).await.unwrap();

    let op = start(&s, OperationKind::Restore, SERIAL_A).await;
    assert_eq!(
        (op.kind.as_str(), op.state.as_str(), op.resumed),
        ("restore", "certificate_issued", false)
    );
    assert_eq!(
        b64::decode(op.certificate.as_deref().unwrap()).unwrap(),
        card.certificate
    );
    // Asking again resumes it.
    let again = start(&s, OperationKind::Restore, SERIAL_A).await;
    assert_eq!((again.id.as_str(), again.resumed), (op.id.as_str(), true));

    relay_as_card(&s, &op.id, &card_key(&fx, SERIAL_A)).await;
    // A restore issues no certificate.
    expect_error(
        s.submit_csr(&op.id, &csr(&SoftKey::p256())).await,
        403,
        ErrorCode::Forbidden,
    );
    // Only the key the card holds confirms it.
    expect_error(
        s.confirm(&op.id, &confirmation(&SoftKey::p256(), &op))
            .await,
        401,
        ErrorCode::BadSignature,
    );
    let done = s
        .confirm(&op.id, &confirmation(&card.key, &op))
        .await
        .unwrap();
    assert_eq!(done.state, OperationState::Completed);

    let details = s.card(SERIAL_A).await.unwrap();
    assert_eq!(details, details_before, "the card's record is unchanged");
    fx.login(&card).await;
    assert!(
        actions(&fx, SERIAL_A).ends_with(&[
            "restore.start".into(),
            "restore.confirm".into(),
            "authenticate".into()
        ]),
        "{:?}",
        actions(&fx, SERIAL_A)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_holder_restores_an_active_unexpired_card() {
    let fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let (olu, _) = fx.user("Olu Officer", &[RA]);
    let card = fx.card(&jane, SERIAL_A, 200);
    let officer_card = fx.card(&olu, SERIAL_B, 200);
    let (_, officer) = fx.login(&officer_card).await;

    let message = expect_error(
        officer
            .start_operation(OperationKind::Restore, SERIAL_A, AGENT)
            .await,
        403,
        ErrorCode::Forbidden,
    );
    assert!(message.contains("only the card holder"), "{message}");
    expect_error(
        fx.client.card_certificate("0000000000000000").await,
        404,
        ErrorCode::UnknownCard,
    );
    expect_error(
        fx.client.card_certificate("not a serial").await,
        400,
        ErrorCode::InvalidField,
    );

    // A cancelled card has no certificate to give.
    let (_, s) = fx.login(&card).await;
    officer
        .cancel_card(SERIAL_A, "lost on the ward")
        .await
        .unwrap();
    expect_error(
        fx.client.card_certificate(SERIAL_A).await,
        403,
        ErrorCode::CardCancelled,
    );
    expect_error(
        s.start_operation(OperationKind::Restore, SERIAL_A, AGENT)
            .await,
        401,
        ErrorCode::InvalidSession,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_card_is_the_registration_authoritys() {
    let fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let valid = fx.card(&jane, SERIAL_A, 200);
    fx.card(&jane, SERIAL_B, -1);
    // Signed in with her valid card, the holder asks to restore her expired one.
    let (_, s) = fx.login(&valid).await;
    expect_error(
        s.start_operation(OperationKind::Restore, SERIAL_B, AGENT)
            .await,
        403,
        ErrorCode::CardExpired,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_left_open_gives_way_to_a_renewal_but_not_the_other_way() {
    let fx = Fixture::start().await;
    let (_, card, s) = fx.jane_logged_in(SERIAL_A, 20).await;

    let restore = start(&s, OperationKind::Restore, SERIAL_A).await;
    let renew = start(&s, OperationKind::Renew, SERIAL_A).await;
    assert_eq!((renew.kind.as_str(), renew.resumed), ("renew", false));
    assert_eq!(
        s.operation(&restore.id).await.unwrap().state,
        OperationState::Aborted
    );
    // The aborted restore took nothing with it: the card still signs in.
    fx.login(&card).await;

    let message = expect_error(
        s.start_operation(OperationKind::Restore, SERIAL_A, AGENT)
            .await,
        409,
        ErrorCode::OperationInProgress,
    );
    assert!(message.contains("renew"), "{message}");
}
