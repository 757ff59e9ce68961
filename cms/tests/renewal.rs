//! Self-renewal over the API: the holder's session, the version policy, the relayed 9B
//! exchange, CSR → certificate, confirmation by the new key, and resuming at every step.
//! Card keys are software keys; the card's half of the 9B exchange is played with the key
//! custody derives for it.

mod common;

use cms::policy::AgentVersion;
use cms::Policy;
use cms_api::protocol::b64;
use cms_api::{ErrorCode, OperationKind, OperationState};
use common::{
    card_key, confirmation, csr, expect_error, issue_and_confirm, relay_as_card, start, Fixture,
    SoftCard, SoftKey, AGENT, NURSE, SERIAL_A, SERIAL_B,
};

#[tokio::test(flavor = "multi_thread")]
async fn the_holder_renews_with_a_new_key_and_the_old_certificate_retires() {
    let fx = Fixture::start().await;
    let (jane, old, s) = fx.jane_logged_in(SERIAL_A, 20).await;

    let op = start(&s, OperationKind::Renew, SERIAL_A).await;
    assert_eq!(
        (op.kind.as_str(), op.state.as_str(), op.resumed),
        ("renew", "started", false)
    );
    relay_as_card(&s, &op.id, &card_key(&fx, SERIAL_A)).await;

    let new_key = SoftKey::p256();
    let issued = s.submit_csr(&op.id, &csr(&new_key)).await.unwrap();
    assert_eq!(issued.state, OperationState::CertificateIssued);
    let der = b64::decode(issued.certificate.as_deref().unwrap()).unwrap();
    let cert = fx.cms.ca().verify_issued(&der).unwrap();
    assert_eq!(
        cert.subject(),
        format!("CN=Jane Doe,UID={jane},O=Identity Agent CMS")
    );
    assert_eq!(cert.public_key().unwrap(), new_key.public_key());
    let days = (cert
        .not_after()
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs()
        + 3600)
        / 86_400;
    assert_eq!(days, 730, "two years");
    assert_ne!(
        cert.serial_hex(),
        fx.cms
            .ca()
            .verify_issued(&old.certificate)
            .unwrap()
            .serial_hex()
    );

    let done = s
        .confirm(&op.id, &confirmation(&new_key, &issued))
        .await
        .unwrap();
    assert_eq!((done.state.as_str(), done.resumed), ("completed", false));
    let details = s.card(SERIAL_A).await.unwrap();
    assert_eq!(
        details.certs_expire.as_deref(),
        Some(cms::dates::iso_date(cms::dates::unix(cert.not_after())).as_str())
    );
    assert_eq!(details.renewals_used, 1);

    // The renewed card signs in with its new certificate; the old one is retired.
    let renewed = SoftCard {
        serial: SERIAL_A.into(),
        key: new_key,
        certificate: der,
    };
    fx.login(&renewed).await;
    fx.login_refused(&old, ErrorCode::CertificateNotOfCard)
        .await;
    let actions: Vec<String> = fx
        .cms
        .database()
        .audit_log(Some(SERIAL_A), 20)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.ends_with(&[
            "renew.start".into(),
            "renew.token".into(),
            "renew.certificate".into(),
            "renew.confirm".into(),
            "authenticate".into(),
            // The old certificate's refused sign-in.
            "authenticate.failed".into()
        ]),
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_step_can_be_repeated_after_an_interruption() {
    let fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let old = fx.card_with_key(&jane, SERIAL_A, 20, SoftKey::rsa());
    let (_, s) = fx.login(&old).await;

    let op = start(&s, OperationKind::Renew, SERIAL_A).await;
    // Start again (the agent restarted): the same operation, resumed.
    let again = start(&s, OperationKind::Renew, SERIAL_A).await;
    assert_eq!((again.id.as_str(), again.resumed), (op.id.as_str(), true));
    // Confirming before there is a certificate is out of order.
    expect_error(
        s.confirm(&op.id, &[1, 2, 3]).await,
        409,
        ErrorCode::WrongOperationState,
    );

    // The relay can be run again, in every new card transaction.
    relay_as_card(&s, &op.id, &card_key(&fx, SERIAL_A)).await;
    relay_as_card(&s, &op.id, &card_key(&fx, SERIAL_A)).await;

    // The same key again: the same certificate.
    let first_key = SoftKey::rsa();
    let first = s.submit_csr(&op.id, &csr(&first_key)).await.unwrap();
    let repeat = s.submit_csr(&op.id, &csr(&first_key)).await.unwrap();
    assert_eq!(repeat.certificate, first.certificate);
    assert_eq!(repeat.confirm_challenge, first.confirm_challenge);
    // The answer was lost and the agent generated again: a new key gets a new certificate.
    let second_key = SoftKey::p256();
    let second = s.submit_csr(&op.id, &csr(&second_key)).await.unwrap();
    assert_ne!(second.certificate, first.certificate);
    let first_card = SoftCard {
        serial: SERIAL_A.into(),
        key: first_key.clone(),
        certificate: b64::decode(first.certificate.as_deref().unwrap()).unwrap(),
    };
    fx.login_refused(&first_card, ErrorCode::CertificateNotOfCard)
        .await;
    // The first key cannot confirm the second certificate.
    expect_error(
        s.confirm(&op.id, &confirmation(&first_key, &second)).await,
        401,
        ErrorCode::BadSignature,
    );

    // Interrupted before confirming: the card already holds the new key and certificate, and
    // signs in with them to finish.
    let second_card = SoftCard {
        serial: SERIAL_A.into(),
        key: second_key.clone(),
        certificate: b64::decode(second.certificate.as_deref().unwrap()).unwrap(),
    };
    let (_, s2) = fx.login(&second_card).await;
    let resumed = s2.operation(&op.id).await.unwrap();
    assert_eq!(
        (resumed.state.as_str(), resumed.certificate.as_ref()),
        ("certificate_issued", second.certificate.as_ref())
    );
    let done = s2
        .confirm(&op.id, &confirmation(&second_key, &resumed))
        .await
        .unwrap();
    assert_eq!(done.state, OperationState::Completed);
    // Confirming again answers with the completed operation; nothing counts twice.
    let twice = s2
        .confirm(&op.id, &confirmation(&second_key, &resumed))
        .await
        .unwrap();
    assert_eq!((twice.state.as_str(), twice.resumed), ("completed", true));
    assert_eq!(s2.card(SERIAL_A).await.unwrap().renewals_used, 1);
    expect_error(
        s2.submit_csr(&op.id, &csr(&SoftKey::p256())).await,
        409,
        ErrorCode::WrongOperationState,
    );
    expect_error(
        s2.relay_witness(&op.id, 8, &[0; 16]).await,
        409,
        ErrorCode::WrongOperationState,
    );
    // A new renewal is a new operation.
    let next = start(&s2, OperationKind::Renew, SERIAL_A).await;
    assert_ne!(next.id, op.id);
    fx.login_refused(&old, ErrorCode::CertificateNotOfCard)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_holder_renews_a_valid_card_with_an_allowed_agent() {
    let fx = Fixture::with_policy(Policy {
        minimum_agent_version: "1.2".parse::<AgentVersion>().unwrap(),
        blocked_agent_versions: vec!["1.3.1".parse().unwrap()],
        ..Policy::default()
    })
    .await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let (raj, _) = fx.user("Raj Patel", &[NURSE]);
    let jane_card = fx.card(&jane, SERIAL_A, 20);
    let jane_expired = fx.card(&jane, "4082A001132F2818", -5);
    let raj_card = fx.card(&raj, SERIAL_B, 20);
    let (_, jane_s) = fx.login(&jane_card).await;
    let (_, raj_s) = fx.login(&raj_card).await;
    let before = fx.audit_len();

    let message = expect_error(
        jane_s
            .start_operation(OperationKind::Renew, SERIAL_A, "1.1.9")
            .await,
        403,
        ErrorCode::AgentVersionBlocked,
    );
    assert!(
        message.contains("1.2") && message.contains("1.1.9"),
        "{message}"
    );
    expect_error(
        jane_s
            .start_operation(OperationKind::Renew, SERIAL_A, "1.3.1")
            .await,
        403,
        ErrorCode::AgentVersionBlocked,
    );
    expect_error(
        jane_s
            .start_operation(OperationKind::Renew, SERIAL_A, "latest")
            .await,
        400,
        ErrorCode::InvalidField,
    );
    // A kind the API does not name is an unusable field, not a body of the wrong shape.
    let (status, body) = jane_s
        .raw(
            reqwest::Method::POST,
            "/v1/operations",
            Some("application/json"),
            format!(r#"{{"kind":"reissue","serial":"{SERIAL_A}","agent_version":"1.2"}}"#)
                .into_bytes(),
        )
        .await
        .unwrap();
    let body: cms_api::protocol::ErrorBody = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body.error.code), (400, ErrorCode::InvalidField));
    assert!(
        body.error.message.contains("reissue"),
        "{}",
        body.error.message
    );
    expect_error(
        raj_s
            .start_operation(OperationKind::Renew, SERIAL_A, "1.2")
            .await,
        403,
        ErrorCode::Forbidden,
    );
    expect_error(
        jane_s
            .start_operation(OperationKind::Renew, "0000000000000001", "1.2")
            .await,
        404,
        ErrorCode::UnknownCard,
    );
    let message = expect_error(
        jane_s
            .start_operation(OperationKind::Renew, &jane_expired.serial, "1.2")
            .await,
        403,
        ErrorCode::CardExpired,
    );
    assert!(message.contains("Registration Authority"));
    expect_error(
        jane_s.operation("no-such-operation").await,
        404,
        ErrorCode::UnknownOperation,
    );
    assert_eq!(fx.audit_len(), before, "refusals change nothing");

    let op = jane_s
        .start_operation(OperationKind::Renew, SERIAL_A, "1.2.0")
        .await
        .unwrap();
    // Another user can neither see nor drive it.
    expect_error(
        raj_s.operation(&op.operation.id).await,
        403,
        ErrorCode::Forbidden,
    );
    expect_error(
        raj_s.relay_witness(&op.operation.id, 8, &[0; 16]).await,
        403,
        ErrorCode::Forbidden,
    );
    expect_error(
        raj_s
            .submit_csr(&op.operation.id, &csr(&SoftKey::p256()))
            .await,
        403,
        ErrorCode::Forbidden,
    );
    // A renewal never releases the PUK, even to the holder.
    expect_error(
        jane_s.release_puk(&op.operation.id).await,
        403,
        ErrorCode::Forbidden,
    );

    // Cancelling the card aborts the renewal and ends the session.
    fx.cms.admin_cancel_card(SERIAL_A, "lost").unwrap();
    expect_error(
        jane_s.operation(&op.operation.id).await,
        401,
        ErrorCode::InvalidSession,
    );
    let spare = fx.card(&jane, "4082A001132F2819", 20);
    let (_, spare_s) = fx.login(&spare).await;
    assert_eq!(
        spare_s.operation(&op.operation.id).await.unwrap().state,
        OperationState::Aborted
    );
    expect_error(
        spare_s
            .start_operation(OperationKind::Renew, SERIAL_A, "1.2")
            .await,
        403,
        ErrorCode::CardCancelled,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_is_walked_with_its_own_token_which_works_on_it_alone() {
    let fx = Fixture::start().await;
    let (_, _, s) = fx.jane_logged_in(SERIAL_A, 20).await;
    let started = s
        .start_operation(OperationKind::Renew, SERIAL_A, AGENT)
        .await
        .unwrap();
    let id = started.operation.id.clone();
    let token = started
        .operation_token
        .expect("a renewal comes with its token");
    let own = s.with_session(&token);

    // The token is no sign-in.
    expect_error(own.session().await, 403, ErrorCode::Forbidden);
    expect_error(own.card(SERIAL_A).await, 403, ErrorCode::Forbidden);
    expect_error(
        own.start_operation(OperationKind::Renew, SERIAL_A, AGENT)
            .await,
        403,
        ErrorCode::Forbidden,
    );

    // It outlives the holder's session and walks the renewal to the end.
    s.logout().await.unwrap();
    expect_error(s.operation(&id).await, 401, ErrorCode::InvalidSession);
    assert_eq!(
        own.operation(&id).await.unwrap().state,
        OperationState::Started
    );
    relay_as_card(&own, &id, &card_key(&fx, SERIAL_A)).await;
    let new_key = SoftKey::p256();
    let issued = own.submit_csr(&id, &csr(&new_key)).await.unwrap();
    let done = own
        .confirm(&id, &confirmation(&new_key, &issued))
        .await
        .unwrap();
    assert_eq!(done.state, OperationState::Completed);

    // The next renewal has a token of its own; the first one works on neither it nor anything
    // once logged out.
    let renewed = SoftCard {
        serial: SERIAL_A.into(),
        certificate: b64::decode(issued.certificate.as_deref().unwrap()).unwrap(),
        key: new_key,
    };
    let (_, again) = fx.login(&renewed).await;
    let next = again
        .start_operation(OperationKind::Renew, SERIAL_A, AGENT)
        .await
        .unwrap();
    assert!(next.operation_token.is_some_and(|t| *t != *token));
    expect_error(
        own.operation(&next.operation.id).await,
        403,
        ErrorCode::Forbidden,
    );
    expect_error(
        own.abort_operation(&next.operation.id).await,
        403,
        ErrorCode::Forbidden,
    );
    own.logout().await.unwrap();
    expect_error(own.operation(&id).await, 401, ErrorCode::InvalidSession);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_relays_requests_and_confirmations_are_refused() {
    let fx = Fixture::with_policy(Policy {
        max_relays_per_operation: 3,
        ..Policy::default()
    })
    .await;
    let (_, card, s) = fx.jane_logged_in(SERIAL_A, 20).await;
    let op = start(&s, OperationKind::Renew, SERIAL_A).await;
    let key = card_key(&fx, SERIAL_A);

    // An answer with no witness relayed first.
    expect_error(
        s.relay_response(&op.id, &[0; 16]).await,
        409,
        ErrorCode::NoRelayInProgress,
    );
    // A witness that is not one AES block, or for another algorithm.
    expect_error(
        s.relay_witness(&op.id, 8, &[1, 2, 3]).await,
        400,
        ErrorCode::InvalidField,
    );
    expect_error(
        s.relay_witness(&op.id, 3, &[0; 8]).await,
        400,
        ErrorCode::InvalidField,
    );
    // A witness in another algorithm than the card's key is refused, naming the card's.
    let refused = s.relay_witness(&op.id, 8, &[0; 16]).await.unwrap_err();
    assert!(refused.to_string().contains("AES-192"), "{refused}");
    // A card holding another key answers wrongly.
    let wrong = piv::ManagementKey::with_algorithm(
        key.management_algorithm(),
        &vec![9; key.secret().len()],
    )
    .unwrap();
    let block = vec![1; wrong.block_len()];
    let answer = s
        .relay_witness(
            &op.id,
            wrong.algorithm(),
            &wrong.encrypt_block(&block).unwrap(),
        )
        .await
        .unwrap();
    let challenge = b64::decode(&answer.challenge).unwrap();
    expect_error(
        s.relay_response(&op.id, &wrong.encrypt_block(&challenge).unwrap())
            .await,
        403,
        ErrorCode::ManagementKeyRejected,
    );
    // The exchange is over after a wrong answer.
    expect_error(
        s.relay_response(&op.id, &key.encrypt_block(&challenge).unwrap())
            .await,
        409,
        ErrorCode::NoRelayInProgress,
    );
    relay_as_card(&s, &op.id, &key).await;
    relay_as_card(&s, &op.id, &key).await;
    // Three exchanges used: no more for this operation.
    expect_error(
        s.relay_witness(&op.id, 8, &[0; 16]).await,
        429,
        ErrorCode::RelayLimit,
    );

    let before = fx.audit_len();
    expect_error(
        s.submit_csr(&op.id, b"not a request").await,
        400,
        ErrorCode::BadCsr,
    );
    let mut tampered = csr(&SoftKey::p256());
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    expect_error(
        s.submit_csr(&op.id, &tampered).await,
        400,
        ErrorCode::BadCsr,
    );
    let signed_by_another =
        piv::csr::build_request(&SoftKey::p256().public_key(), "CN=x", |info| {
            Ok(SoftKey::p256().sign(info))
        });
    assert!(
        signed_by_another.is_err(),
        "the builder checks its own signature"
    );
    let message = expect_error(
        s.submit_csr(&op.id, &csr(&card.key)).await,
        400,
        ErrorCode::BadCsr,
    );
    assert!(message.contains("new key"), "{message}");
    let raw = s
        .raw(
            reqwest::Method::POST,
            &format!("/v1/operations/{}/csr", op.id),
            Some("application/json"),
            b"{\"csr\":\"%%%\"}".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(raw.0, 400);
    assert_eq!(fx.audit_len(), before, "refused requests change nothing");

    let new_key = SoftKey::p256();
    let issued = s.submit_csr(&op.id, &csr(&new_key)).await.unwrap();
    let before = fx.audit_len();
    expect_error(
        s.confirm(&op.id, &new_key.sign(b"something else")).await,
        401,
        ErrorCode::BadSignature,
    );
    expect_error(
        s.confirm(&op.id, &confirmation(&card.key, &issued)).await,
        401,
        ErrorCode::BadSignature,
    );
    assert_eq!(
        s.operation(&op.id).await.unwrap().state,
        OperationState::CertificateIssued
    );
    assert_eq!(fx.audit_len(), before);
    s.confirm(&op.id, &confirmation(&new_key, &issued))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_at_full_capacity_cannot_self_renew() {
    let fx = Fixture::with_policy(Policy {
        card_capacity: 1,
        ..Policy::default()
    })
    .await;
    let (_, _, s) = fx.jane_logged_in(SERIAL_A, 20).await;
    let op = start(&s, OperationKind::Renew, SERIAL_A).await;
    let new_key = SoftKey::p256();
    issue_and_confirm(&s, &op.id, &new_key).await;
    let details = s.card(SERIAL_A).await.unwrap();
    assert_eq!((details.renewals_used, details.capacity), (1, 1));
    let message = expect_error(
        s.start_operation(OperationKind::Renew, SERIAL_A, AGENT)
            .await,
        409,
        ErrorCode::CardFull,
    );
    assert!(message.contains("Registration Authority"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_goes_on_after_the_service_restarts() {
    let mut fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&jane, SERIAL_A, 20);
    let (created, s) = fx.login(&card).await;
    let op = start(&s, OperationKind::Renew, SERIAL_A).await;
    let new_key = SoftKey::p256();
    let issued = s.submit_csr(&op.id, &csr(&new_key)).await.unwrap();

    fx.restart().await;
    // The agent kept its session token through the interruption.
    let s = fx.client.with_session(&created.session_token);
    let resumed = start(&s, OperationKind::Renew, SERIAL_A).await;
    assert_eq!(
        (resumed.id.as_str(), resumed.state.as_str(), resumed.resumed),
        (op.id.as_str(), "certificate_issued", true)
    );
    assert_eq!(resumed.certificate, issued.certificate);
    // The 9B relay works again after the restart (the key is derived, not stored).
    relay_as_card(&s, &op.id, &card_key(&fx, SERIAL_A)).await;
    let done = s
        .confirm(&op.id, &confirmation(&new_key, &resumed))
        .await
        .unwrap();
    assert_eq!(done.state, OperationState::Completed);
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_starts_open_one_operation() {
    let fx = Fixture::start().await;
    let (_, _, s) = fx.jane_logged_in(SERIAL_A, 20).await;
    let starts: Vec<_> = (0..10)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.start_operation(OperationKind::Renew, SERIAL_A, AGENT)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for start in starts {
        ids.push(start.await.unwrap().operation.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_given_up_before_the_card_changed_is_aborted_by_its_holder_only() {
    let fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let (raj, _) = fx.user("Raj Patel", &[NURSE]);
    let card = fx.card(&jane, SERIAL_A, 20);
    let raj_card = fx.card(&raj, SERIAL_B, 20);
    let (_, s) = fx.login(&card).await;
    let (_, raj_s) = fx.login(&raj_card).await;

    let op = start(&s, OperationKind::Renew, SERIAL_A).await;
    // The operation names the card's management-key algorithm, for the agent's relay.
    assert_eq!(op.management_algorithm, piv::consts::alg::AES_192);
    expect_error(
        raj_s.abort_operation(&op.id).await,
        403,
        ErrorCode::Forbidden,
    );
    let aborted = s.abort_operation(&op.id).await.unwrap();
    assert_eq!(
        (aborted.state.as_str(), aborted.resumed),
        ("aborted", false)
    );
    let again = s.abort_operation(&op.id).await.unwrap();
    assert_eq!((again.state.as_str(), again.resumed), ("aborted", true));
    let log = fx.cms.database().audit_log(Some(SERIAL_A), 100).unwrap();
    assert!(log.iter().any(|e| e.action == "renew.abort"), "{log:?}");
    // Nothing is left open: the next renewal is a new one.
    let next = start(&s, OperationKind::Renew, SERIAL_A).await;
    assert_ne!(next.id, op.id);

    // Once the service has issued the new key's certificate the card may be between two keys:
    // the operation can no longer be given up.
    relay_as_card(&s, &next.id, &card_key(&fx, SERIAL_A)).await;
    s.submit_csr(&next.id, &csr(&SoftKey::p256()))
        .await
        .unwrap();
    expect_error(
        s.abort_operation(&next.id).await,
        409,
        ErrorCode::WrongOperationState,
    );
    assert_eq!(
        s.operation(&next.id).await.unwrap().state,
        OperationState::CertificateIssued
    );
}
