//! Hostile clients over the real HTTPS server: one client flooding challenges for one card, and
//! one client trying wrong signatures for a card. The attacker connects from 127.0.0.2 (all of
//! 127.0.0.0/8 is loopback on Linux), the holders from 127.0.0.1, so the service tells them
//! apart by address as it would on a network.

mod common;

use cms::policy::{Rate, Throttling};
use cms::Policy;
use cms_api::client::{ClientError, CmsClient};
use cms_api::protocol::{b64, SessionRequest};
use cms_api::ErrorCode;
use common::*;
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// The attacker's address.
const ATTACKER: &str = "127.0.0.2";

fn attacker(fx: &Fixture) -> CmsClient {
    let url = fx.server.as_ref().unwrap().url();
    let local: IpAddr = ATTACKER.parse().unwrap();
    CmsClient::from_address(&url, fx.cms.ca().certificate_pem(), Some(local)).unwrap()
}

/// Asks a challenge for `card` and answers it with a signature of another key: a forged answer.
async fn forged_sign_in(client: &CmsClient, card: &SoftCard) -> Result<(), ClientError> {
    let challenge = client.challenge(&card.serial).await?;
    let raw = b64::decode_url(&challenge.challenge).unwrap();
    let forged = SoftKey::p256().sign(&cms_api::protocol::auth_message(&card.serial, &raw));
    client
        .create_session(&SessionRequest {
            serial: card.serial.clone(),
            challenge: challenge.challenge,
            signature: b64::encode(&forged),
            certificate: b64::encode(&card.certificate),
        })
        .await
        .map(drop)
}

/// Signs in as the holder of `card` through `client`.
async fn sign_in(client: &CmsClient, card: &SoftCard) -> Result<(), ClientError> {
    client
        .authenticate(&card.serial, &card.certificate, |m| {
            Ok::<_, std::convert::Infallible>(card.key.sign(m))
        })
        .await
        .map(drop)
}

fn expect_rate_limited<T: std::fmt::Debug>(result: Result<T, ClientError>) -> u64 {
    let e = result.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RateLimited), "{e:?}");
    let wait = e
        .retry_after()
        .expect("a rate_limited answer says how long to wait");
    assert!(wait >= 1, "{e:?}");
    wait
}

#[tokio::test(flavor = "multi_thread")]
async fn a_challenge_flood_is_refused_cheaply_and_blocks_no_other_card() {
    let fx = Fixture::start().await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let (john, _) = fx.user("John Smith", &[NURSE]);
    let flooded = fx.card(&jane, SERIAL_A, 365);
    let other = fx.card(&john, SERIAL_B, 365);
    let rate = Policy::default().throttling.challenge_rate.unwrap();

    // Eight connections from one address ask challenges for one card as fast as they can.
    let started = Instant::now();
    let flood_for = Duration::from_secs(2);
    let mut flood = Vec::new();
    for _ in 0..8 {
        let client = attacker(&fx);
        let serial = flooded.serial.clone();
        flood.push(tokio::spawn(async move {
            let (mut answered, mut refused) = (0u32, 0u32);
            while started.elapsed() < flood_for {
                match client.challenge(&serial).await {
                    Ok(_) => answered += 1,
                    Err(e) => {
                        assert_eq!(e.code(), Some(ErrorCode::RateLimited), "{e:?}");
                        assert!(e.retry_after().is_some_and(|s| s >= 1), "{e:?}");
                        refused += 1;
                    }
                }
            }
            (answered, refused)
        }));
    }

    // Meanwhile both holders sign in from their own address, the flooded card's holder too,
    // a few times a second (faster would run into their own address's rate).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut signed_in = 0;
    while started.elapsed() < flood_for {
        sign_in(&fx.client, &other).await.unwrap();
        sign_in(&fx.client, &flooded).await.unwrap();
        signed_in += 2;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(signed_in >= 2);

    let (mut answered, mut refused) = (0, 0);
    for task in flood {
        let (a, r) = task.await.unwrap();
        answered += a;
        refused += r;
    }
    let seconds = started.elapsed().as_secs_f64();
    let allowed = f64::from(rate.burst) + rate.per_second * seconds;
    assert!(
        f64::from(answered) <= allowed + 1.0,
        "{answered} challenges answered in {seconds:.1} s, at most {allowed:.0} allowed"
    );
    assert!(refused > answered, "{refused} refused, {answered} answered");

    // The refusal comes before the card is looked up: the flooder asking for a card that does
    // not exist is refused the same way, not told `unknown_card`.
    let probe = attacker(&fx);
    let mut probe_refused = 0;
    for _ in 0..20 {
        let e = probe.challenge("0000000000000000").await.unwrap_err();
        match e.code() {
            Some(ErrorCode::RateLimited) => probe_refused += 1,
            code => assert_eq!(code, Some(ErrorCode::UnknownCard), "{e:?}"),
        }
    }
    assert!(probe_refused > 0);
    // Another address is not held back.
    fx.client.challenge(&flooded.serial).await.unwrap();
}

fn failing_policy() -> Policy {
    Policy {
        throttling: Throttling {
            pair_failures: 5,
            client_failures: 50,
            card_failures: 50,
            backoff: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(2),
            challenge_rate: Some(Rate {
                burst: 100,
                per_second: 100.0,
            }),
            ..Throttling::default()
        },
        ..Policy::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_signatures_back_off_are_audited_and_leave_the_holder_alone() {
    let fx = Fixture::with_policy(failing_policy()).await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&jane, SERIAL_A, 365);
    let hostile = attacker(&fx);

    for _ in 0..5 {
        let refused = forged_sign_in(&hostile, &card).await;
        expect_error(refused, 401, ErrorCode::BadSignature);
    }
    // The attacker's address now backs off: refused before anything is checked.
    let mut limited = 0;
    for _ in 0..50 {
        if let Err(e) = forged_sign_in(&hostile, &card).await {
            if e.code() == Some(ErrorCode::RateLimited) {
                assert!(
                    e.retry_after().is_some_and(|s| (1..=2).contains(&s)),
                    "{e:?}"
                );
                limited += 1;
            }
        }
    }
    assert!(limited >= 45, "only {limited} of 50 attempts backed off");

    // The holder, from their own address, signs in at once.
    sign_in(&fx.client, &card).await.unwrap();

    // The failures are in the audit log with the card, the address and the reason, and the
    // refused attempts wrote nothing.
    let failed: Vec<_> = fx
        .cms
        .database()
        .audit_log(Some(SERIAL_A), 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "authenticate.failed")
        .collect();
    assert!((5..=10).contains(&failed.len()), "{failed:#?}");
    for entry in &failed {
        assert_eq!(entry.client.as_deref(), Some(ATTACKER));
        assert_eq!(entry.actor, "anonymous");
        assert!(
            entry.detail.starts_with("bad_signature from 127.0.0.2"),
            "{entry:?}"
        );
    }
    assert!(
        failed[4].detail.contains("backing off 1 s"),
        "{:?}",
        failed[4]
    );

    // An RA sees them with `cms audit`.
    let out = Command::new(env!("CARGO_BIN_EXE_cms"))
        .arg("--data-dir")
        .arg(fx.dir.path())
        .args(["audit", "--card", SERIAL_A])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("authenticate.failed"))
        .collect();
    assert_eq!(lines.len(), failed.len(), "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("anonymous@127.0.0.2") && l.contains("bad_signature")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backoff_runs_out_and_the_same_address_signs_in_again() {
    let fx = Fixture::with_policy(failing_policy()).await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&jane, SERIAL_A, 365);
    // The holder shares the attacker's address (one NAT): the worst case.
    let shared = attacker(&fx);

    for _ in 0..5 {
        expect_error(
            forged_sign_in(&shared, &card).await,
            401,
            ErrorCode::BadSignature,
        );
    }
    let wait = expect_rate_limited(sign_in(&shared, &card).await);
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    // Past the backoff the address is heard again; a wrong answer counts and doubles the wait,
    // up to the cap (2 s here).
    expect_error(
        forged_sign_in(&shared, &card).await,
        401,
        ErrorCode::BadSignature,
    );
    let wait = expect_rate_limited(sign_in(&shared, &card).await);
    assert!(wait <= 2, "the backoff is capped: {wait} s");
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    sign_in(&shared, &card).await.unwrap();
    // The success ends the run: the next wrong answer is heard, not refused.
    expect_error(
        forged_sign_in(&shared, &card).await,
        401,
        ErrorCode::BadSignature,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn many_addresses_against_one_card_back_off_together_but_not_the_holder() {
    let fx = Fixture::with_policy(Policy {
        throttling: Throttling {
            card_failures: 6,
            ..failing_policy().throttling
        },
        ..Policy::default()
    })
    .await;
    let (jane, _) = fx.user("Jane Doe", &[NURSE]);
    let card = fx.card(&jane, SERIAL_A, 365);
    let url = fx.server.as_ref().unwrap().url();
    let from = |last: u8| {
        let local = IpAddr::from([127, 0, 0, last]);
        CmsClient::from_address(&url, fx.cms.ca().certificate_pem(), Some(local)).unwrap()
    };

    // Six addresses fail once each: the card's count is reached.
    for last in 10..16 {
        expect_error(
            forged_sign_in(&from(last), &card).await,
            401,
            ErrorCode::BadSignature,
        );
    }
    // Those addresses now wait, though none has reached its own limit of 5…
    expect_rate_limited(forged_sign_in(&from(10), &card).await);
    // …a new address gets its one try before it waits too…
    let newcomer = from(16);
    expect_error(
        forged_sign_in(&newcomer, &card).await,
        401,
        ErrorCode::BadSignature,
    );
    expect_rate_limited(forged_sign_in(&newcomer, &card).await);
    // …and the holder, whose address has not failed, signs in.
    sign_in(&fx.client, &card).await.unwrap();
}
