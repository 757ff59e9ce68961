//! pcscd restarted in the middle of a renewal, over the real stack: the holder signed in
//! renews, and pcscd is stopped after every APDU of the renewal in turn (the card holds its
//! next answer at exactly that point, so the stop lands where it is meant to: after the
//! management-key relay, after the new key is generated, after the certificate is written, and
//! everywhere in between). The renew call answers — success, or an error saying pcscd went —
//! instead of hanging. Once pcscd is back and the card is in again, a renewal left journaled
//! is finished by the agent signing the holder in again with one PIN prompt; whatever the
//! point, the card ends signing in and agreeing with the service, with nothing journaled and
//! nothing left open at the service.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use agent_ipc::{ClientError, ErrorCode, ErrorObject, Event, OperationStatus, SessionState};
use piv::CardSerial;
use std::time::{Duration, Instant};
use testbed::fault::{log_tail, outcome_name, wait_signed_in, Holder, HOLDER_PIN, PATIENCE};

/// How long the event stream stays quiet before it counts as drained.
const QUIET: Duration = Duration::from_millis(50);

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x4C, n])
}

/// A renewal cut by pcscd stopping.
struct Stopped {
    /// The renew call's answer.
    outcome: Result<OperationStatus, ErrorObject>,
    /// The last step the renewal reported (none before its operation started).
    last_step: Option<String>,
    /// Whether the renewal was left journaled.
    journaled: bool,
}

/// Renews with pcscd stopped once the card has answered `k` APDUs of the renewal; returns the
/// renew call's answer, the last step the renewal reported before it ended, and whether it was
/// left journaled.
fn renew_and_stop_pcscd_after(holder: &mut Holder, k: u32, what: &str) -> Stopped {
    // Events of the sign-in before (an expiry warning, say) are not this renewal's.
    while holder
        .stack
        .next_matching(&mut holder.events, QUIET, |_| true)
        .is_some()
    {}
    holder.stack.pin_answers(&[HOLDER_PIN; 32]).unwrap();
    let base = holder.inserted().apdus_answered();
    holder.inserted().hold_after(base + k);
    let renewal = holder.spawn_renewal();
    let deadline = Instant::now() + PATIENCE;
    while !holder.inserted().is_held() {
        assert!(
            Instant::now() < deadline,
            "{what}: the card never answered {k} APDUs\n{}",
            log_tail(&holder.stack)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(holder.inserted().apdus_answered(), base + k, "{what}");
    holder.stack.bed.stop_pcscd();
    let answer = holder
        .stack
        .block_on(async { tokio::time::timeout(PATIENCE, renewal).await })
        .unwrap_or_else(|_| {
            panic!(
                "{what}: the renew call hangs with pcscd stopped\n{}",
                log_tail(&holder.stack)
            )
        })
        .expect("the renew call's task");
    let outcome = answer.map_err(|e| match e {
        ClientError::Agent(error) => error,
        other => panic!("{what}: the agent did not answer: {other}"),
    });
    // The steps come before the result; pcscd going away before or after them.
    let mut last_step = None;
    let mut saw_unavailable = false;
    let mut saw_result = false;
    while !(saw_unavailable && saw_result) {
        let event = holder
            .stack
            .next_matching(&mut holder.events, PATIENCE, |_| true)
            .unwrap_or_else(|| {
                panic!(
                    "{what}: no operation result and pcscd loss (result {saw_result}, \
                     loss {saw_unavailable})"
                )
            });
        match event {
            Event::OperationProgress { operation } if !saw_result => {
                last_step = Some(operation.step.to_string());
            }
            Event::OperationResult { .. } => saw_result = true,
            Event::PcscUnavailable { .. } => saw_unavailable = true,
            _ => {}
        }
    }
    Stopped {
        outcome,
        last_step,
        journaled: holder.journaled(),
    }
}

/// Starts pcscd again and puts the card back: its link to the reader went with the old pcscd.
fn restart_pcscd(holder: &mut Holder) {
    holder.stack.bed.restart_pcscd().unwrap();
    drop(holder.inserted.take());
    holder.inserted = Some(holder.stack.insert(0, &holder.card).unwrap());
}

/// The card in reader 0 signs in and agrees with the service, nothing is journaled, and the
/// new key is of the card's algorithm.
fn check_recovered(holder: &Holder, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = holder.stack.status();
        if status.pcsc.available && status.session.state == SessionState::SignedIn {
            assert_eq!(
                status.session.serial,
                Some(holder.card.serial.to_string()),
                "{what}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the agent is not signed in: {status:?}\n{}",
            log_tail(&holder.stack)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !holder.journaled(),
        "{what}: the renewal is still journaled\n{}",
        log_tail(&holder.stack)
    );
    holder.check_agreement(what);
    if let Err(e) = holder.stack.sign_in_directly(0, HOLDER_PIN) {
        panic!("{what}: the card does not sign in: {e:#}");
    }
}

/// Steps a stop must land right after, the renewal then unfinished, for the matrix to count:
/// the card unlocked by the management-key relay (no new key yet), the new key generated (its
/// certificate not written yet), and the certificate written (not confirmed yet).
const MUST_INTERRUPT_AFTER: [&str; 3] = ["management_key", "key_generated", "certificate_written"];

// Every APDU index is covered rather than a few chosen points: the card holds its next answer
// at the index, so each stop is exact, and a pcscd restart costs about half a second here (the
// whole matrix takes 30 to 45 s, most of it the RSA keys the renewals generate).
#[test]
fn renewal_survives_pcscd_restarted_after_every_apdu() {
    let clock = Instant::now();
    let mut holder = Holder::start(serial(1));
    let n = holder.clean_renewal();
    eprintln!("a renewal takes {n} APDUs");
    let mut interrupted_after = Vec::new();
    for k in 1..=n {
        let lap = Instant::now();
        let what = format!("pcscd stopped after renewal APDU {k}/{n}");
        let prompts = holder.stack.pin_prompts().len();
        let Stopped {
            outcome,
            last_step,
            journaled,
        } = renew_and_stop_pcscd_after(&mut holder, k, &what);
        match &outcome {
            Ok(status) => {
                assert!(status.done, "{what}: {status:?}");
                assert!(!journaled, "{what}: a finished renewal is still journaled");
            }
            Err(error) => {
                assert_eq!(
                    error.code,
                    ErrorCode::PcscUnavailable,
                    "{what}: the renewal answered {error:?}"
                );
                if journaled {
                    assert!(
                        error.message.contains("finishes"),
                        "{what}: the error does not say the renewal finishes later: {error:?}"
                    );
                    interrupted_after.extend(last_step.clone());
                }
            }
        }
        // Before the journal is written the service has nothing open either.
        let open = holder
            .stack
            .cms
            .database()
            .open_operation(&holder.card.serial.to_string())
            .unwrap();
        assert!(
            journaled || open.is_none(),
            "{what}: the service has an operation open that the agent did not journal"
        );
        let asked_for_renewal = holder.stack.pin_prompts().len() - prompts;
        assert_eq!(asked_for_renewal, 1, "{what}: the renewal's PIN prompt");
        restart_pcscd(&mut holder);
        if journaled {
            wait_signed_in(&holder.stack, &mut holder.events, 0, &what);
            let asked = holder.stack.pin_prompts().len() - prompts - asked_for_renewal;
            assert_eq!(asked, 1, "{what}: PIN prompts to sign in again");
        }
        check_recovered(&holder, &what);
        eprintln!(
            "{what} (last step {}): renew {}, {}signed in and agrees ({} ms)",
            last_step.as_deref().unwrap_or("none"),
            outcome_name(&outcome),
            if journaled {
                "finished at sign-in, "
            } else {
                ""
            },
            lap.elapsed().as_millis()
        );
    }
    for step in MUST_INTERRUPT_AFTER {
        assert!(
            interrupted_after.iter().any(|s| s == step),
            "no stop interrupted the renewal right after {step}: {interrupted_after:?}"
        );
    }
    eprintln!("pcscd restart matrix: {:?}", clock.elapsed());
}
