//! Self-renewal through the agent over the real stack: the signed-in holder renews, the
//! session stays signed in, and the card and the service agree afterwards.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use agent_ipc::{ErrorCode, Event, OperationKind, SessionState};
use cardsim::AtrProfile;
use cms::issuance::InitialValidity;
use piv::CardSerial;
use testbed::agent_client::RENEWAL_STEPS;
use testbed::stack::{AgentOptions, Stack};

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x2A, n])
}

#[test]
fn a_holder_renews_and_stays_signed_in() {
    let (mut stack, card) =
        Stack::with_nurse_card(serial(1), InitialValidity::Days(30), AtrProfile::NhsCis).unwrap();
    stack
        .pin_answers(&[&card.pin, &card.pin, &card.pin])
        .unwrap();
    stack.start_agent(&AgentOptions::default()).unwrap();
    let mut events = stack.subscribe();
    let inserted = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));
    let before = stack.status();
    let days = before.readers[0].card.as_ref().unwrap().days_left.unwrap();
    assert!((29..=30).contains(&days), "{days}");

    let done = stack.block_on(stack.client().renew()).unwrap();
    assert!(done.done, "{done:?}");
    assert_eq!(done.step, agent_ipc::OperationStep::Confirmed);
    assert_eq!(done.kind, OperationKind::Renew);
    assert!(
        done.message.starts_with("Renewed until "),
        "{}",
        done.message
    );

    // Every step was reported, in order, then the result.
    let report = stack.follow_operation(&mut events);
    report.assert_succeeded(&done.id, &RENEWAL_STEPS);

    // Still signed in, and the status shows the new expiry.
    let after = stack.status();
    assert_eq!(after.session.state, SessionState::SignedIn);
    let days = after.readers[0].card.as_ref().unwrap().days_left.unwrap();
    assert!(days > 700, "{days}");
    assert_eq!(stack.card_record(&card).unwrap().renewals_used, 1);
    assert!(stack.audit_log().contains("\"renew\""));

    // A second renewal, and the card still signs in afterwards from scratch.
    let _again = stack.reinsert_and_sign_in(&mut events, inserted, &card);
}

#[test]
fn renewing_needs_a_session_and_an_expired_card_cannot_get_one() {
    let (mut stack, card) =
        Stack::with_nurse_card(serial(2), InitialValidity::Expired, AtrProfile::NhsCis).unwrap();
    stack.pin_answers(&[&card.pin]).unwrap();
    stack.start_agent(&AgentOptions::default()).unwrap();
    let mut events = stack.subscribe();
    let _inserted = stack.insert(0, &card).unwrap();
    let Event::LoginFailed { error, .. } =
        stack.wait_for(&mut events, |e| matches!(e, Event::LoginFailed { .. }))
    else {
        unreachable!()
    };
    assert_eq!(error.code, ErrorCode::CertificateExpired);
    let refused = stack.block_on(stack.client().renew()).unwrap_err();
    let agent_ipc::ClientError::Agent(refused) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(refused.code, ErrorCode::NoSession);
    assert!(stack.pin_prompts().is_empty(), "no PIN is asked for");
}
