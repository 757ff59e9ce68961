//! The knobs of the renewal fault matrix over the real stack: a card pulled at run time after a
//! given APDU, the service made unreachable after a given request, and the checks that a card
//! and the service still agree and that the card still signs in.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use cardsim::{AtrProfile, Faults};
use cms::issuance::InitialValidity;
use cms_api::client::{ClientError, CmsClient};
use piv::{CardSerial, PivCard};
use std::ffi::CString;
use testbed::stack::Stack;

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x2A, n])
}

#[test]
fn a_card_pulled_at_run_time_and_a_service_made_unreachable() {
    let (stack, card) =
        Stack::with_nurse_card(serial(1), InitialValidity::Days(400), AtrProfile::NhsCis).unwrap();
    let inserted = stack.insert_with(0, &card, Faults::default()).unwrap();
    stack.card_agrees_with_cms(0, &card).unwrap();
    let created = stack.sign_in_directly(0, &card.pin).unwrap();
    assert_eq!(created.session.user.id, card.user_id);
    assert_eq!(created.session.card_serial, card.serial.to_string());

    // The card leaves after exactly two more APDUs: SELECT at the transaction's start and one
    // PIN status; the next command finds no card.
    let ctx = stack.bed.context().unwrap();
    let reader = CString::new(stack.bed.reader_name(0)).unwrap();
    let mut piv = PivCard::connect(&ctx, &reader).unwrap();
    let before = inserted.apdus_answered();
    inserted.pull_after(before + 2);
    {
        let tx = piv.transaction().unwrap();
        tx.pin_status().unwrap();
        assert!(tx.pin_status().is_err());
        assert!(tx.card_serial().is_err());
    }
    drop(piv);
    assert_eq!(inserted.apdus_answered(), before + 2);
    stack.bed.wait_card(0, false).unwrap();
    assert!(!inserted.is_connected());
    inserted.wait().unwrap();

    // Inserted again, the card still agrees with the service.
    let inserted = stack.insert(0, &card).unwrap();
    stack.card_agrees_with_cms(0, &card).unwrap();

    // The service made unreachable: a transport error, not an answer; then reachable again.
    let client = CmsClient::new(stack.cms_url(), stack.cms.ca().certificate_pem()).unwrap();
    stack.runtime.block_on(client.health()).unwrap();
    let served = stack.cms_requests();
    assert!(served >= 3, "{served} requests served");
    stack.cms_refuse_after(Some(served));
    assert!(matches!(
        stack.runtime.block_on(client.health()),
        Err(ClientError::Transport(_))
    ));
    assert!(stack.sign_in_directly(0, &card.pin).is_err());
    assert_eq!(stack.cms_requests(), served);
    stack.cms_refuse_after(None);
    stack.runtime.block_on(client.health()).unwrap();
    assert_eq!(stack.cms_requests(), served + 1);

    // An operation left open is a disagreement, and the check says so.
    let session = client.with_session(&created.session_token);
    let op = stack
        .runtime
        .block_on(session.start_operation(
            cms_api::OperationKind::Renew,
            &card.serial.to_string(),
            "0.1.0",
        ))
        .unwrap();
    let err = stack
        .card_agrees_with_cms(0, &card)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("operation") && err.contains(&op.operation.id),
        "{err}"
    );
    stack.bed.remove(0, inserted).unwrap();
}
