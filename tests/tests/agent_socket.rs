//! The real agent's socket under load and abuse, and the daemon's start and stop: hostile
//! clients get errors while others keep being served, 200 clients at once, readiness in the
//! background with the caller's output let go, core dumps off, socket activation by systemd's
//! own tool, and SIGTERM ending the session for subscribers and removing the socket.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use agent_ipc::{Client, ErrorCode, Event, SessionEndReason};
use cardsim::AtrProfile;
use cms::issuance::InitialValidity;
use piv::CardSerial;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
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
    let (mut stack, card) =
        Stack::with_nurse_card(serial(1), InitialValidity::Days(90), AtrProfile::Piv).unwrap();
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

/// A stack and the agent's default configuration written to its directory, for tests that
/// start the agent themselves.
fn stack_with_config() -> (Stack, std::path::PathBuf) {
    let stack = Stack::start().unwrap();
    let config = stack.bed.dir().join("agent.toml");
    std::fs::write(
        &config,
        stack.agent_config(&AgentOptions::default()).unwrap(),
    )
    .unwrap();
    (stack, config)
}

#[test]
fn in_the_background_the_agent_is_ready_when_its_starter_returns() {
    let (stack, config) = stack_with_config();
    let dir = stack.bed.dir();
    let socket = dir.join("bg").join("agent.sock");
    let mut starter = Command::new(workspace_binary("identity-agent").unwrap());
    starter
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("RUST_LOG", "info")
        // A terminal would get colours; the log file must not.
        .env("TERM", "xterm-256color")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // `output` returns only when both pipes close: an agent that kept the caller's standard
    // output or error would hold it here until it stopped.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(starter.output()));
    let output = finished
        .recv_timeout(Duration::from_secs(20))
        .expect("the background agent kept the caller's standard output or error open")
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "{output:?}"
    );
    let log = std::fs::read_to_string(dir.join("state/identity-agent/agent.log")).unwrap();
    assert!(log.contains("identity agent ready"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "colour codes in the log file: {log:?}"
    );
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

#[test]
fn sigterm_ends_the_session_tells_subscribers_and_removes_the_socket() {
    let (mut stack, card) =
        Stack::with_nurse_card(serial(2), InitialValidity::Days(90), AtrProfile::Piv).unwrap();
    stack.pin_answers(&[&card.pin]).unwrap();
    stack.start_agent(&AgentOptions::default()).unwrap();
    let socket = stack.socket().unwrap();
    let mut events = stack.subscribe();
    let _inserted = stack.insert(0, &card).unwrap();
    stack.wait_for(&mut events, |e| matches!(e, Event::SessionStarted { .. }));

    let status = stack.stop_agent().unwrap();
    assert!(status.success(), "the agent did not stop cleanly: {status}");
    let ended = stack.wait_for(&mut events, |e| matches!(e, Event::SessionEnded { .. }));
    let Event::SessionEnded { reason, .. } = ended else {
        unreachable!()
    };
    assert_eq!(reason, SessionEndReason::AgentShutdown);
    assert!(!socket.exists(), "the socket outlived the agent");
    let logs = stack.agent_logs();
    assert!(logs.contains("SIGTERM: shutting down"), "{logs}");
    assert!(!logs.contains('\x1b'), "colour codes in the log: {logs:?}");
}

#[test]
fn a_socket_activated_agent_serves_the_socket_it_was_given_and_leaves_it() {
    let Ok(activate) = which("systemd-socket-activate") else {
        panic!("systemd-socket-activate is missing: install the systemd package");
    };
    let (stack, config) = stack_with_config();
    let dir = stack.bed.dir();
    // The configured socket is elsewhere: the one passed in wins.
    let configured = dir.join("configured").join("agent.sock");
    let socket = dir.join("activated.sock");
    let mut manager = Command::new(activate)
        .arg("--listen")
        .arg(&socket)
        .arg(workspace_binary("identity-agent").unwrap())
        .arg("--foreground")
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&configured)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("activated.log")).unwrap())
        .spawn()
        .unwrap();
    // The socket exists before the agent runs: a client connecting now is queued, not refused.
    for _ in 0..200 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let (mut w, mut r) = raw(&socket);
    writeln!(
        w,
        r#"{{"id":1,"method":"hello","params":{{"protocol":1}}}}"#
    )
    .unwrap();
    assert!(reply(&mut r)["result"]["capabilities"].is_array());
    writeln!(w, r#"{{"id":2,"method":"status"}}"#).unwrap();
    assert!(reply(&mut r)["result"]["readers"].is_array());
    drop((w, r));
    assert!(!configured.exists(), "the agent bound its own socket too");

    // systemd-socket-activate execs the agent: its pid is the agent's.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(manager.id() as i32, libc::SIGTERM) };
    let status = manager.wait().unwrap();
    assert!(status.success(), "{status}");
    // The socket is the manager's: the agent leaves it for the next activation.
    assert!(
        socket.exists(),
        "the agent removed a socket it does not own"
    );
    let log = std::fs::read_to_string(dir.join("activated.log")).unwrap();
    assert!(log.contains("serving the socket systemd passed"), "{log}");
}

/// `program` on `PATH`.
fn which(program: &str) -> Result<std::path::PathBuf, String> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{program} is not on PATH"))
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
