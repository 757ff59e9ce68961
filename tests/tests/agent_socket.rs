//! The real agent's socket under load and abuse, and the daemon's start: hostile clients get
//! errors while others keep being served, 200 clients at once, readiness in the background,
//! core dumps off.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use agent_ipc::{Client, ErrorCode, Event};
use cardsim::AtrProfile;
use cms::issuance::InitialValidity;
use piv::CardSerial;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testbed::stack::{workspace_binary, AgentOptions, Stack};

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x2A, n])
}

/// A raw connection that says `hello`.
fn raw(socket: &Path) -> (UnixStream, BufReader<UnixStream>) {
    let stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

fn reply(reader: &mut BufReader<UnixStream>) -> serde_json::Value {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

fn error_code(value: &serde_json::Value) -> ErrorCode {
    serde_json::from_value(value["error"]["code"].clone()).unwrap_or_else(|_| panic!("{value}"))
}

#[test]
fn hostile_clients_get_errors_while_others_are_served() {
    let mut stack = Stack::start().unwrap();
    let card = stack
        .nurse_card(
            serial(1),
            "246810",
            InitialValidity::Days(90),
            AtrProfile::Piv,
        )
        .unwrap();
    let options = AgentOptions {
        login_on_insert: false,
        ..AgentOptions::default()
    };
    stack.start_agent(&options).unwrap();
    let socket = stack.socket().unwrap();
    let mut events = stack
        .runtime
        .block_on(async { Client::connect(&socket).await?.subscribe().await })
        .unwrap();

    // Before hello.
    let (mut w, mut r) = raw(&socket);
    writeln!(w, r#"{{"id":1,"method":"status"}}"#).unwrap();
    assert_eq!(error_code(&reply(&mut r)), ErrorCode::HelloRequired);
    // Wrong protocol version.
    writeln!(
        w,
        r#"{{"id":2,"method":"hello","params":{{"protocol":99}}}}"#
    )
    .unwrap();
    assert_eq!(error_code(&reply(&mut r)), ErrorCode::ProtocolMismatch);
    writeln!(
        w,
        r#"{{"id":3,"method":"hello","params":{{"protocol":1}}}}"#
    )
    .unwrap();
    assert!(reply(&mut r)["result"]["agent_version"].is_string());
    // Garbage, not JSON, unknown method, bad params, oversized — then a good request.
    w.write_all(b"\xff\xfe\x00garbage\n").unwrap();
    assert_eq!(error_code(&reply(&mut r)), ErrorCode::BadRequest);
    writeln!(w, "{{not json").unwrap();
    assert_eq!(error_code(&reply(&mut r)), ErrorCode::BadRequest);
    writeln!(w, r#"{{"id":4,"method":"format_card"}}"#).unwrap();
    assert_eq!(error_code(&reply(&mut r)), ErrorCode::UnknownMethod);
    writeln!(w, r#"{{"id":5,"method":"login","params":{{"reader":7}}}}"#).unwrap();
    assert_eq!(error_code(&reply(&mut r)), ErrorCode::BadRequest);
    let huge = format!(
        "{{\"id\":6,\"method\":\"status\",\"pad\":\"{}\"}}\n",
        "x".repeat(100 * 1024)
    );
    w.write_all(huge.as_bytes()).unwrap();
    assert_eq!(error_code(&reply(&mut r)), ErrorCode::MessageTooLarge);
    writeln!(w, r#"{{"id":7,"method":"status"}}"#).unwrap();
    let status = reply(&mut r);
    assert_eq!(status["id"], 7);
    assert_eq!(status["result"]["readers"].as_array().unwrap().len(), 2);
    // A client that connects and says nothing, one that half-writes a line.
    let _silent = UnixStream::connect(&socket).unwrap();
    let (mut half, _) = raw(&socket);
    half.write_all(b"{\"id\":1,\"meth").unwrap();

    // Everyone else is still served: the subscriber sees the card, a new client reads status.
    let _inserted = stack.insert(0, &card).unwrap();
    stack.runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Event::CardInserted { card: seen, .. } = events.next_event().await.unwrap() {
                    assert_eq!(seen.serial, Some(card.serial.to_string()));
                    return;
                }
            }
        })
        .await
        .expect("the subscriber was not served")
    });
    let status = stack
        .runtime
        .block_on(async { Client::connect(&socket).await?.status().await })
        .unwrap();
    assert!(status.readers.iter().any(|r| r.card.is_some()));
}

#[test]
fn two_hundred_clients_at_once_are_all_answered() {
    let mut stack = Stack::start().unwrap();
    stack.start_agent(&AgentOptions::default()).unwrap();
    let socket = stack.socket().unwrap();
    let answered = stack.runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let socket = socket.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = Client::connect(&socket).await?;
                for _ in 0..5 {
                    client.status().await?;
                }
                client.readers().await
            }));
        }
        let mut answered = 0;
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().len(), 2);
            answered += 1;
        }
        answered
    });
    assert_eq!(answered, 200);
}

#[test]
fn in_the_background_the_agent_is_ready_when_its_starter_returns() {
    let stack = Stack::start().unwrap();
    let dir = stack.bed.dir();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        stack.agent_config(&AgentOptions::default()).unwrap(),
    )
    .unwrap();
    let socket = dir.join("bg").join("agent.sock");
    let status = Command::new(workspace_binary("identity-agent").unwrap())
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("RUST_LOG", "info")
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    // Ready means ready: the first connection is answered, no retry.
    let (mut w, mut r) = raw(&socket);
    writeln!(
        w,
        r#"{{"id":1,"method":"hello","params":{{"protocol":1}}}}"#
    )
    .unwrap();
    assert!(reply(&mut r)["result"]["capabilities"].is_array());
    drop((w, r));

    let pid = agent_pid(&socket).expect("the agent runs in the background");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().nth(4),
        Some("0"),
        "core dumps are on: {core}"
    );
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..200 {
        if !socket.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("the agent did not stop on SIGTERM");
}

/// The pid of the agent serving `socket`, from the process table.
fn agent_pid(socket: &Path) -> Option<i32> {
    let wanted = socket.to_str()?;
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains("identity-agent") && cmdline.split('\0').any(|a| a == wanted))
            .then_some(pid)
    })
}
