//! The renewal's session token at rest, over the real stack: with the Secret Service on the
//! session bus (gnome-keyring, unlocked) it is in the keyring and the journal file only names
//! it; without one the journal file keeps it and the agent says so once. Either way a renewal
//! interrupted by the agent's death finishes from it at the next sign-in.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use agent_ipc::{Event, SessionState, Subscription};
use cardsim::{AtrProfile, InsertedCard};
use cms::issuance::InitialValidity;
use piv::CardSerial;
use std::path::PathBuf;
use std::time::Duration;
use testbed::keyring::SessionKeyring;
use testbed::stack::{AgentOptions, Stack, StackCard};

/// How long a sign-in that finishes a renewal may take (an RSA key is generated).
const PATIENCE: Duration = Duration::from_secs(60);

/// What the agent says when the keyring cannot keep the token.
const FALLBACK_WARNING: &str = "the keyring cannot keep renewal session tokens";

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x4C, n])
}

/// A holder signed in with a card valid for 30 days, through an agent started with `env`.
struct Holder {
    stack: Stack,
    card: StackCard,
    options: AgentOptions,
    events: Subscription,
    _inserted: InsertedCard,
}

impl Holder {
    fn start(n: u8, env: Vec<(String, String)>) -> Self {
        let (mut stack, card) =
            Stack::with_nurse_card(serial(n), InitialValidity::Days(30), AtrProfile::NhsCis)
                .unwrap();
        stack.pin_answers(&["246810"; 8]).unwrap();
        let options = AgentOptions {
            certificate_check_secs: 3600,
            log_filter: "debug".into(),
            env,
            ..AgentOptions::default()
        };
        stack.start_agent(&options).unwrap();
        let mut events = stack.subscribe();
        let inserted = stack.insert(0, &card).unwrap();
        stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));
        Self {
            stack,
            card,
            options,
            events,
            _inserted: inserted,
        }
    }

    fn journal_file(&self) -> PathBuf {
        self.stack
            .bed
            .dir()
            .join("state/identity-agent/operations")
            .join(format!("{}.json", self.card.serial))
    }

    /// Starts a renewal and kills the agent once the card has its new key (so the renewal
    /// must be finished, not given up); returns the journal entry it left.
    fn interrupt_renewal(&mut self) -> serde_json::Value {
        let mut client = self.stack.client();
        let renewal = self
            .stack
            .runtime
            .spawn(async move { client.renew().await });
        self.stack.wait_for_within(&mut self.events, PATIENCE, |e| {
            matches!(e, Event::OperationProgress { operation } if operation.step == agent_ipc::OperationStep::KeyGenerated)
        });
        self.stack.kill_agent().unwrap();
        let _ = self.stack.block_on(renewal).unwrap();
        let text = std::fs::read_to_string(self.journal_file())
            .expect("the interrupted renewal is journaled");
        serde_json::from_str(&text).unwrap()
    }

    /// Starts the agent again and waits until it has signed in, finishing the renewal.
    fn restart_and_finish(&mut self) {
        self.stack.start_agent(&self.options).unwrap();
        self.events = self.stack.subscribe();
        if self.stack.status().session.state != SessionState::SignedIn {
            self.stack.wait_for_within(&mut self.events, PATIENCE, |e| {
                matches!(e, Event::SessionStarted { .. })
            });
        }
        assert!(
            !self.journal_file().exists(),
            "the renewal is still journaled\n{}",
            self.stack.agent_logs()
        );
        self.stack.card_agrees_with_cms(0, &self.card).unwrap();
        let record = self.stack.cms.database();
        let record = record.card(&self.card.serial.to_string()).unwrap().unwrap();
        let details = self
            .stack
            .cms
            .card_view(&record, cms::dates::now())
            .unwrap();
        assert_eq!(details.renewals_used, 1, "the renewal finished once");
    }
}

#[test]
fn an_interrupted_renewal_keeps_its_token_in_the_keyring_and_finishes_from_it() {
    let keyring = SessionKeyring::start().unwrap();
    let bus = (
        "DBUS_SESSION_BUS_ADDRESS".to_owned(),
        keyring.address().to_owned(),
    );
    let mut holder = Holder::start(1, vec![bus]);
    let entry = holder.interrupt_renewal();

    // The file names the token; the keyring holds it.
    assert!(
        entry.get("session_token").is_none(),
        "{entry}\n{}",
        holder.stack.agent_logs()
    );
    let operation = entry["operation"].as_str().unwrap();
    let reference = format!("identity-agent/operation/{operation}");
    assert_eq!(entry["session_token_ref"], reference.as_str());
    let user = format!("operation/{operation}");
    let token = keyring
        .lookup(&[("service", "identity-agent"), ("username", &user)])
        .unwrap()
        .expect("the token is in the keyring");
    assert!(token.len() >= 16, "a session token, not a placeholder");
    let journal = std::fs::read_to_string(holder.journal_file()).unwrap();
    assert!(
        !journal.contains(&token),
        "the journal file holds the token"
    );
    assert!(
        !holder.stack.agent_logs().contains(&token),
        "the log holds the token"
    );

    holder.restart_and_finish();
    // Finished: the token is gone from the keyring, and the agent never fell back.
    assert_eq!(
        keyring
            .lookup(&[("service", "identity-agent"), ("username", &user)])
            .unwrap(),
        None
    );
    let logs = holder.stack.agent_logs();
    assert!(!logs.contains(&token), "the log holds the token");
    assert!(!logs.contains(FALLBACK_WARNING), "{logs}");
}

#[test]
fn without_a_secret_service_the_journal_file_keeps_the_token_and_the_agent_says_so_once() {
    // The stack's agent has no session bus unless one is given.
    let holder = Holder::start(2, Vec::new());
    falls_back_to_the_file(holder, "no Secret Service on the session bus");
}

#[test]
fn with_the_keyring_locked_the_journal_file_keeps_the_token_and_nothing_prompts() {
    let keyring = SessionKeyring::start().unwrap();
    keyring.lock().unwrap();
    let bus = (
        "DBUS_SESSION_BUS_ADDRESS".to_owned(),
        keyring.address().to_owned(),
    );
    let holder = Holder::start(3, vec![bus]);
    falls_back_to_the_file(holder, "default collection is locked");
}

/// Interrupts a renewal of `holder`'s card, checks the journal file kept its token and the
/// agent said so once (`why` among its words), and finishes the renewal from the file.
fn falls_back_to_the_file(mut holder: Holder, why: &str) {
    let entry = holder.interrupt_renewal();
    let token = entry["session_token"]
        .as_str()
        .expect("the token is inline");
    assert!(token.len() >= 16, "a session token, not a placeholder");
    assert!(entry.get("session_token_ref").is_none(), "{entry}");
    let logs = holder.stack.agent_logs();
    assert!(!logs.contains(token), "the log holds the token");
    // The entry was written several times (started, card changed), the warning once.
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(FALLBACK_WARNING))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(warnings[0].contains(why), "{}", warnings[0]);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(holder.journal_file())
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    holder.restart_and_finish();
    let logs = holder.stack.agent_logs();
    assert!(!logs.contains(token), "the log holds the token");
}
