//! The real agent's bounds, set in its configuration: a client that never says `hello` and one
//! that says it and then sits idle are closed, while a subscriber is kept; the audit log is
//! rotated by size with the previous file kept.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use agent_ipc::{ErrorCode, Event};
use cardsim::AtrProfile;
use cms::issuance::InitialValidity;
use piv::CardSerial;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use testbed::stack::{AgentOptions, Stack};

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x3C, 0x2A, n])
}

/// Reads lines until the agent closes the connection; returns them and when the close came.
fn lines_until_closed(stream: &UnixStream) -> (Vec<serde_json::Value>, Instant) {
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return (lines, Instant::now()),
            Ok(_) => lines.push(serde_json::from_str(&line).unwrap()),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!("the agent kept the connection open for 15 s: {lines:?}")
            }
            Err(e) => panic!("reading: {e}"),
        }
    }
}

#[test]
fn silent_and_idle_clients_are_closed_while_subscribers_stay() {
    let (mut stack, card) =
        Stack::with_nurse_card(serial(1), InitialValidity::Days(90), AtrProfile::Piv).unwrap();
    let options = AgentOptions {
        login_on_insert: false,
        extra_config: "[ipc]\nhello_timeout_secs = 1\nidle_timeout_secs = 2\n".into(),
        ..AgentOptions::default()
    };
    stack.start_agent(&options).unwrap();
    let socket = stack.socket().unwrap();
    let mut events = stack.subscribe();

    let opened = Instant::now();
    let silent = UnixStream::connect(&socket).unwrap();
    let mut idle = UnixStream::connect(&socket).unwrap();
    writeln!(
        idle,
        r#"{{"id":1,"method":"hello","params":{{"protocol":1}}}}"#
    )
    .unwrap();

    // The silent client is told why, then closed, about a second after connecting.
    let (lines, closed) = lines_until_closed(&silent);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let code: ErrorCode = serde_json::from_value(lines[0]["error"]["code"].clone()).unwrap();
    assert_eq!(code, ErrorCode::HelloRequired, "{lines:?}");
    let waited = closed - opened;
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );

    // The idle one gets its hello answered and is closed without a line two seconds later.
    let (lines, closed) = lines_until_closed(&idle);
    assert_eq!(lines.len(), 1, "only the hello reply: {lines:?}");
    assert!(lines[0].get("result").is_some(), "{lines:?}");
    let waited = closed - opened;
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(12),
        "closed after {waited:?}"
    );

    // The subscriber, idle just as long, still hears the next event.
    let _inserted = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::CardInserted { .. }));
    assert_eq!(stack.status().agent_version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_audit_log_is_rotated_by_size_and_the_old_file_kept() {
    let (mut stack, card) =
        Stack::with_nurse_card(serial(2), InitialValidity::Days(90), AtrProfile::Piv).unwrap();
    stack.pin_answers(&[card.pin.as_str(); 3]).unwrap();
    let options = AgentOptions {
        extra_config: "[audit]\nmax_bytes = 256\n".into(),
        ..AgentOptions::default()
    };
    stack.start_agent(&options).unwrap();
    let mut events = stack.subscribe();
    let mut inserted = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));
    for _ in 0..2 {
        inserted = stack.reinsert_and_sign_in(&mut events, inserted, &card);
    }

    let dir = stack.bed.dir().join("state/identity-agent");
    let current = std::fs::read_to_string(dir.join("audit.log")).unwrap();
    let previous = std::fs::read_to_string(dir.join("audit.log.1")).unwrap();
    let all = format!("{previous}{current}");
    let count = |event: &str| all.matches(&format!("\"event\":\"{event}\"")).count();
    // Three sign-ins and two sign-outs were written; rotation may drop only files older than
    // the previous one, so the newest lines are all here.
    assert!(count("sign_in") >= 1 && count("sign_out") >= 1, "{all}");
    assert!(
        current.lines().all(|l| l.starts_with('{')) && previous.lines().all(|l| l.starts_with('{')),
        "whole lines only: {all}"
    );
    // A file is rotated once it reaches the limit, so neither holds more than one line past it.
    let longest = all.lines().map(str::len).max().unwrap() as u64 + 1;
    for file in [&current, &previous] {
        assert!(file.len() as u64 <= 256 + longest, "{} bytes", file.len());
    }
    for name in ["audit.log", "audit.log.1"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join(name)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}
