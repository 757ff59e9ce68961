//! The socket server, served for real on a temporary socket, with a small session owner task
//! answering the calls it hands on. Most tests speak the raw protocol line by line.
//!
//! A Unix socket's tests (modes, peer UIDs, stale files, systemd's socket); the named pipe on
//! Windows is tested under Wine by the `tests` package's `windows` test.
#![cfg(unix)]

use agent::ipc::{self, AgentCall, AgentLink, ServerLimits};
use agent_ipc::{
    fixtures, Client, ClientError, ErrorCode, ErrorObject, Event, LineReader, ReaderStatus,
    SessionState, SessionStatus, Status, User,
};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(5);

fn status() -> Status {
    fixtures::status(
        vec![ReaderStatus {
            name: fixtures::READER.into(),
            card: Some(fixtures::card()),
        }],
        SessionStatus::idle(SessionState::CardPresent),
    )
}

fn signed_in() -> SessionStatus {
    SessionStatus {
        state: SessionState::SignedIn,
        reader: Some("Virtual PCD 00 00".into()),
        serial: Some("0123456789ABCDEF".into()),
        user: Some(User {
            id: "u-1".into(),
            name: "Alex Example".into(),
        }),
        role: None,
        signed_in_at: Some(1),
        expires_at: Some(2),
    }
}

/// The session owner of the tests: `login` takes 2 s, `logout` fails with `no_session`.
async fn owner(mut calls: mpsc::Receiver<AgentCall>) {
    while let Some(AgentCall { call, reply }) = calls.recv().await {
        tokio::spawn(async move {
            let answer = match call.method() {
                "login" => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok(serde_json::to_value(signed_in()).unwrap_or_default())
                }
                "logout" => Err(ErrorObject::new(
                    ErrorCode::NoSession,
                    "no one is signed in",
                )),
                other => Err(ErrorObject::new(
                    ErrorCode::NotSupported,
                    format!("{other} is not served by the test owner"),
                )),
            };
            let _ = reply.send(answer);
        });
    }
}

struct Agent {
    dir: tempfile::TempDir,
    path: PathBuf,
    events: broadcast::Sender<Event>,
    _status: watch::Sender<Status>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
}

impl Agent {
    async fn start(max_connections: usize, event_capacity: usize) -> Agent {
        let limits = ServerLimits {
            max_connections,
            ..ServerLimits::default()
        };
        Agent::start_with(limits, event_capacity).await
    }

    async fn start_with(limits: ServerLimits, event_capacity: usize) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("agent.sock");
        let listener = ipc::bind(&path).unwrap();
        let (calls, calls_rx) = mpsc::channel(64);
        tokio::spawn(owner(calls_rx));
        let (status_tx, status_rx) = watch::channel(status());
        let (events, _) = broadcast::channel(event_capacity);
        let link = AgentLink {
            calls,
            status: status_rx,
            events: events.clone(),
            capabilities: agent_ipc::METHODS.iter().map(|m| m.to_string()).collect(),
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(ipc::serve(listener, link, limits, shutdown.clone()));
        Agent {
            dir,
            path,
            events,
            _status: status_tx,
            shutdown,
            server,
        }
    }

    async fn raw(&self) -> Raw {
        Raw::connect(&self.path).await
    }

    /// A raw connection that has said `hello`.
    async fn greeted(&self) -> Raw {
        let mut c = self.raw().await;
        c.hello().await;
        c
    }
}

/// A connection that speaks the raw protocol.
struct Raw {
    reader: LineReader<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Raw {
    async fn connect(path: &Path) -> Raw {
        let (read, writer) = UnixStream::connect(path).await.unwrap().into_split();
        Raw {
            reader: LineReader::new(BufReader::new(read)),
            writer,
        }
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes()).await;
    }

    /// The next line as JSON; `None` at the end of the stream.
    async fn recv_or_end(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(PATIENCE, self.reader.next_line())
            .await
            .expect("the agent did not answer in time")
            .unwrap()?;
        Some(serde_json::from_str(&line).unwrap())
    }

    async fn recv(&mut self) -> Value {
        self.recv_or_end()
            .await
            .expect("the agent closed the connection")
    }

    async fn hello(&mut self) {
        self.send(r#"{"id":1,"method":"hello","params":{"protocol":1,"client":"test"}}"#)
            .await;
        let reply = self.recv().await;
        assert_eq!(reply["id"], 1, "{reply}");
        assert_eq!(reply["result"]["protocol"], 1, "{reply}");
    }

    async fn expect_error(&mut self, id: Value, code: &str) -> Value {
        let reply = self.recv().await;
        assert_eq!(reply["id"], id, "{reply}");
        assert_eq!(reply["error"]["code"], code, "{reply}");
        reply
    }

    async fn expect_status(&mut self, id: u64) {
        self.send(&format!(r#"{{"id":{id},"method":"status"}}"#))
            .await;
        let reply = self.recv().await;
        assert_eq!(reply["id"], id, "{reply}");
        assert_eq!(
            reply["result"]["readers"][0]["card"]["serial"], "0123456789ABCDEF",
            "{reply}"
        );
    }
}

#[tokio::test]
async fn hello_is_required_first_and_the_connection_stays_open() {
    let agent = Agent::start(8, 16).await;
    let mut c = agent.raw().await;
    c.send(r#"{"id":5,"method":"status"}"#).await;
    c.expect_error(json!(5), "hello_required").await;
    c.hello().await;
    c.expect_status(6).await;
}

#[tokio::test]
async fn a_client_that_never_says_hello_is_closed_after_the_deadline_while_another_is_served() {
    let agent = Agent::start_with(
        ServerLimits {
            hello_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        },
        16,
    )
    .await;
    let mut silent = agent.raw().await;
    let mut chatty = agent.raw().await;
    // Requests before hello do not extend the deadline.
    chatty.send(r#"{"id":5,"method":"status"}"#).await;
    chatty.expect_error(json!(5), "hello_required").await;
    let mut served = agent.greeted().await;
    let started = tokio::time::Instant::now();
    let last = silent.expect_error(Value::Null, "hello_required").await;
    assert!(started.elapsed() < Duration::from_secs(2), "{last}");
    assert_eq!(silent.recv_or_end().await, None);
    chatty.expect_error(Value::Null, "hello_required").await;
    assert_eq!(chatty.recv_or_end().await, None);
    // The greeted connection is past the deadline and still served.
    tokio::time::sleep(Duration::from_millis(100)).await;
    served.expect_status(2).await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_a_subscriber_is_kept() {
    let agent = Agent::start_with(
        ServerLimits {
            idle_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        },
        16,
    )
    .await;
    let mut idle = agent.greeted().await;
    let mut subscriber = agent.greeted().await;
    subscriber.send(r#"{"id":2,"method":"subscribe"}"#).await;
    assert_eq!(subscriber.recv().await["result"]["subscribed"], true);
    let mut busy = agent.greeted().await;
    // A login running (2 s) keeps its connection open past the idle time.
    busy.send(r#"{"id":2,"method":"login","params":{}}"#).await;
    assert_eq!(idle.recv_or_end().await, None);
    let login = busy.recv().await;
    assert_eq!(login["id"], 2, "{login}");
    assert!(login["result"].is_object(), "{login}");
    subscriber.expect_status(3).await;
}

#[tokio::test]
async fn a_pipelined_burst_gets_every_reply_and_exactly_16_calls_run() {
    let agent = Agent::start(8, 16).await;
    let mut c = agent.greeted().await;
    // 40 logins (2 s each) written before reading anything: 16 run, 24 are busy.
    let mut burst = String::new();
    for id in 100..140 {
        burst.push_str(&format!(
            "{{\"id\":{id},\"method\":\"login\",\"params\":{{}}}}\n"
        ));
    }
    c.send_bytes(burst.as_bytes()).await;
    let (mut results, mut busy) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        let reply = c.recv().await;
        let id = reply["id"].as_u64().unwrap();
        if reply["error"]["code"] == "busy" {
            busy.push(id);
        } else {
            assert!(reply["result"].is_object(), "{reply}");
            results.push(id);
        }
    }
    results.sort_unstable();
    busy.sort_unstable();
    assert_eq!(results, (100..116).collect::<Vec<_>>());
    assert_eq!(busy, (116..140).collect::<Vec<_>>());

    // Far more requests than the writer's queue holds (256), written before reading: none is
    // lost.
    let mut burst = String::new();
    for id in 1000..1600 {
        burst.push_str(&format!("{{\"id\":{id},\"method\":\"status\"}}\n"));
    }
    // The whole burst goes out before a single reply is read.
    c.send_bytes(burst.as_bytes()).await;
    let mut ids = Vec::new();
    for _ in 0..600 {
        let reply = c.recv().await;
        assert!(reply["result"]["readers"].is_array(), "{reply}");
        ids.push(reply["id"].as_u64().unwrap());
    }
    assert_eq!(ids, (1000..1600).collect::<Vec<_>>());
}

#[tokio::test]
async fn another_protocol_version_is_refused() {
    let agent = Agent::start(8, 16).await;
    let mut c = agent.raw().await;
    c.send(r#"{"id":1,"method":"hello","params":{"protocol":99}}"#)
        .await;
    let reply = c.expect_error(json!(1), "protocol_mismatch").await;
    assert_eq!(reply["error"]["data"], json!({"agent":1,"client":99}));
    c.send(r#"{"id":2,"method":"status"}"#).await;
    c.expect_error(json!(2), "hello_required").await;
    c.hello().await;
    c.expect_status(3).await;
}

#[tokio::test]
async fn an_unknown_method_is_answered_and_serving_goes_on() {
    let agent = Agent::start(8, 16).await;
    let mut c = agent.greeted().await;
    c.send(r#"{"id":2,"method":"fly_to_the_moon"}"#).await;
    let reply = c.expect_error(json!(2), "unknown_method").await;
    assert!(reply["error"]["data"]["methods"]
        .as_array()
        .is_some_and(|m| m.contains(&json!("status"))));
    c.expect_status(3).await;
}

#[tokio::test]
async fn malformed_requests_get_bad_request_with_the_id_when_readable() {
    let agent = Agent::start(8, 16).await;
    let mut c = agent.greeted().await;
    c.send(r#"{"id":2,"method":"#).await;
    c.expect_error(Value::Null, "bad_request").await;
    c.send(r#"[1,2,3]"#).await;
    c.expect_error(Value::Null, "bad_request").await;
    c.send(r#"{"method":"status"}"#).await;
    c.expect_error(Value::Null, "bad_request").await;
    c.send(r#"{"id":3,"method":"login","params":{"reader":5}}"#)
        .await;
    c.expect_error(json!(3), "bad_request").await;
    c.send(r#"{"id":4,"method":"select_role","params":{"remember":true}}"#)
        .await;
    c.expect_error(json!(4), "bad_request").await;
    c.send(r#"{"id":5,"method":"status","params":{}}"#).await;
    assert_eq!(c.recv().await["id"], 5);
    c.expect_status(6).await;
}

#[tokio::test]
async fn an_oversized_line_is_refused_and_the_next_request_served() {
    let agent = Agent::start(8, 16).await;
    let mut c = agent.greeted().await;
    let mut big = br#"{"id":2,"method":"status","params":{"pad":""#.to_vec();
    big.resize(100 * 1024, b'x');
    big.extend_from_slice(b"\"}}\n{\"id\":3,\"method\":\"status\"}\n");
    c.send_bytes(&big).await;
    let reply = c.expect_error(Value::Null, "message_too_large").await;
    assert!(reply["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("65536")));
    let reply = c.recv().await;
    assert_eq!(reply["id"], 3, "{reply}");
    assert!(reply.get("result").is_some(), "{reply}");
}

#[tokio::test]
async fn garbage_and_non_utf8_are_answered_and_serving_goes_on() {
    let agent = Agent::start(8, 16).await;
    let mut c = agent.greeted().await;
    c.send_bytes(b"\xff\xfe\x00\x01garbage\n").await;
    c.expect_error(Value::Null, "bad_request").await;
    c.send_bytes(b"\x1b[2J not json at all\r\n").await;
    c.expect_error(Value::Null, "bad_request").await;
    // Blank lines are ignored.
    c.send_bytes(b"\n\n").await;
    c.expect_status(2).await;
    // Another client was never disturbed.
    let mut other = agent.greeted().await;
    other.expect_status(2).await;
}

/// Sends `hello` as uid 65534 from a forked child and returns what the agent wrote back.
/// The child only makes raw system calls (nothing that may allocate or lock after fork).
fn connect_as_nobody(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < addr.sun_path.len());
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let hello = b"{\"id\":1,\"method\":\"hello\",\"params\":{\"protocol\":1}}\n";
    let mut pipe = [0; 2];
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    let timeout = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: the child makes only async-signal-safe calls on data prepared before the fork
    // and ends with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe {
            libc::close(pipe[0]);
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                libc::_exit(10);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if fd < 0 {
                libc::_exit(11);
            }
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            if libc::connect(
                fd,
                &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            ) != 0
            {
                libc::_exit(12);
            }
            libc::write(fd, hello.as_ptr() as *const libc::c_void, hello.len());
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len());
                if n <= 0 {
                    break;
                }
                libc::write(pipe[1], buf.as_ptr() as *const libc::c_void, n as usize);
            }
            libc::_exit(0);
        }
    }
    unsafe { libc::close(pipe[1]) };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = unsafe { libc::read(pipe[0], buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    let mut wstatus = 0;
    unsafe {
        libc::close(pipe[0]);
        libc::waitpid(pid, &mut wstatus, 0);
    }
    assert!(libc::WIFEXITED(wstatus), "child died: {wstatus}");
    assert_eq!(libc::WEXITSTATUS(wstatus), 0, "child failed at a step");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test must run as root, to connect as another user (uid 65534)");
    }
    let agent = Agent::start(8, 16).await;
    // Let the other user reach the socket, so that the agent's own check is what refuses.
    let run = agent.path.parent().unwrap();
    for (p, mode) in [
        (agent.dir.path(), 0o755),
        (run, 0o755),
        (&*agent.path, 0o666),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let path = agent.path.clone();
    let got = tokio::task::spawn_blocking(move || connect_as_nobody(&path))
        .await
        .unwrap();
    let text = String::from_utf8(got).unwrap();
    let reply: Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(reply["id"], Value::Null, "{text}");
    assert_eq!(reply["error"]["code"], "permission_denied", "{text}");
    // Only that one line: no hello was answered.
    assert_eq!(text.lines().count(), 1, "{text}");
    // Our own user is still served.
    agent.greeted().await;
}

#[tokio::test]
async fn the_connection_cap_refuses_with_an_error_and_frees_up() {
    let agent = Agent::start(2, 16).await;
    let first = Client::connect(&agent.path).await.unwrap();
    let _second = Client::connect(&agent.path).await.unwrap();
    match Client::connect(&agent.path).await {
        Err(ClientError::Agent(e)) => {
            assert_eq!(e.code, ErrorCode::TooManyConnections);
            assert_eq!(e.data, Some(json!({"max_connections": 2})));
        }
        other => panic!("expected too_many_connections, got {other:?}"),
    }
    drop(first);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match Client::connect(&agent.path).await {
            Ok(mut c) => {
                c.status().await.unwrap();
                break;
            }
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("a freed place was not given out: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_get_status() {
    let agent = Agent::start(256, 16).await;
    let mut clients = Vec::new();
    for _ in 0..200 {
        let path = agent.path.clone();
        clients.push(tokio::spawn(async move {
            let mut c = Client::connect(&path).await?;
            c.status().await
        }));
    }
    for client in clients {
        let status = tokio::time::timeout(PATIENCE * 2, client)
            .await
            .expect("a client was not served in time")
            .unwrap()
            .unwrap();
        assert_eq!(status.readers.len(), 1);
    }
}

#[tokio::test]
async fn events_reach_two_subscribers_in_order() {
    let agent = Agent::start(8, 256).await;
    let mut subs = Vec::new();
    for _ in 0..2 {
        subs.push(
            Client::connect(&agent.path)
                .await
                .unwrap()
                .subscribe()
                .await
                .unwrap(),
        );
    }
    for i in 0..100 {
        agent
            .events
            .send(Event::ReaderAdded {
                reader: format!("reader {i}"),
            })
            .unwrap();
    }
    for sub in &mut subs {
        for i in 0..100 {
            let event = tokio::time::timeout(PATIENCE, sub.next_event())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                event,
                Event::ReaderAdded {
                    reader: format!("reader {i}")
                }
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_is_dropped_while_another_keeps_receiving() {
    const CAPACITY: usize = 64;
    const BATCH: usize = 16;
    const EVENTS: usize = 800;
    let agent = Agent::start(8, CAPACITY).await;
    let pad = "p".repeat(4000);
    let event = |i: usize| Event::ReaderAdded {
        reader: format!("{i:06} {pad}"),
    };

    // The slow one subscribes, then reads nothing.
    let mut slow = agent.greeted().await;
    slow.send(r#"{"id":2,"method":"subscribe"}"#).await;
    assert_eq!(slow.recv().await["result"]["subscribed"], true);

    // The fast one counts what it has read, so the sender never outruns it.
    let mut fast = Client::connect(&agent.path)
        .await
        .unwrap()
        .subscribe()
        .await
        .unwrap();
    let (seen_tx, mut seen) = watch::channel(0usize);
    let reader = tokio::spawn(async move {
        for i in 0..=EVENTS {
            let got = fast.next_event().await.unwrap();
            let Event::ReaderAdded { reader } = got else {
                panic!("unexpected event {got:?}");
            };
            assert_eq!(reader[..6], format!("{i:06}"), "out of order");
            seen_tx.send_replace(i + 1);
        }
    });

    for start in (0..EVENTS).step_by(BATCH) {
        for i in start..start + BATCH {
            agent.events.send(event(i)).unwrap();
        }
        let target = start + BATCH;
        tokio::time::timeout(PATIENCE, seen.wait_for(|&n| n >= target))
            .await
            .expect("the fast subscriber was held up")
            .unwrap();
    }

    // The slow one gets what fitted, then subscriber_overflow, then the end.
    let mut last = None;
    let mut count = 0;
    while let Some(message) = slow.recv_or_end().await {
        count += 1;
        last = Some(message);
    }
    let last = last.unwrap();
    assert_eq!(last["id"], Value::Null, "{last}");
    assert_eq!(last["error"]["code"], "subscriber_overflow", "{last}");
    assert!(count < EVENTS, "the slow subscriber got all {count} events");

    // The fast one still receives.
    agent.events.send(event(EVENTS)).unwrap();
    tokio::time::timeout(PATIENCE, reader)
        .await
        .expect("the fast subscriber stopped receiving")
        .unwrap();
}

#[tokio::test]
async fn a_slow_login_does_not_hold_up_status_on_the_same_connection() {
    let agent = Agent::start(8, 16).await;
    let mut c = agent.greeted().await;
    c.send(r#"{"id":2,"method":"login","params":{"reader":"Virtual PCD 00 00"}}"#)
        .await;
    let started = tokio::time::Instant::now();
    c.send(r#"{"id":3,"method":"status"}"#).await;
    let first = c.recv().await;
    assert_eq!(first["id"], 3, "{first}");
    assert!(started.elapsed() < Duration::from_millis(500));
    let second = c.recv().await;
    assert_eq!(second["id"], 2, "{second}");
    assert_eq!(second["result"]["state"], "signed_in", "{second}");
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn the_client_keeps_agent_errors_with_their_code() {
    let agent = Agent::start(8, 16).await;
    let mut c = Client::connect(&agent.path).await.unwrap();
    assert_eq!(c.hello().protocol, 1);
    match c.logout().await {
        Err(ClientError::Agent(e)) => {
            assert_eq!(e.code, ErrorCode::NoSession);
            assert_eq!(e.message, "no one is signed in");
        }
        other => panic!("expected no_session, got {other:?}"),
    }
    // The connection goes on after an error.
    assert_eq!(c.readers().await.unwrap().len(), 1);
}

#[tokio::test]
async fn shutdown_closes_connections_and_removes_the_socket() {
    let agent = Agent::start(8, 16).await;
    let mut sub = Client::connect(&agent.path)
        .await
        .unwrap()
        .subscribe()
        .await
        .unwrap();
    let mut idle = agent.greeted().await;
    agent.shutdown.cancel();
    tokio::time::timeout(PATIENCE, agent.server)
        .await
        .expect("serve did not return")
        .unwrap();
    assert!(!agent.path.exists(), "the socket file is still there");
    match tokio::time::timeout(PATIENCE, sub.next_event())
        .await
        .unwrap()
    {
        Err(ClientError::Agent(e)) => assert_eq!(e.code, ErrorCode::ShuttingDown),
        other => panic!("expected shutting_down, got {other:?}"),
    }
    idle.expect_error(Value::Null, "shutting_down").await;
    assert!(idle.recv_or_end().await.is_none());
    assert!(matches!(
        Client::connect(&agent.path).await,
        Err(ClientError::NotRunning { .. })
    ));
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run").join("agent.sock");
    std::fs::create_dir(path.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        path.parent().unwrap(),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let listener = ipc::bind(&path).unwrap();
    assert_eq!(listener.path(), path);
    // It is ours now: a client reaches it.
    std::os::unix::net::UnixStream::connect(&path).unwrap();
}

#[tokio::test]
async fn a_live_socket_is_not_stolen() {
    let agent = Agent::start(8, 16).await;
    let err = ipc::bind(&agent.path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        err.to_string().contains(&format!(
            "another agent is already running on {}",
            agent.path.display()
        )),
        "{err}"
    );
    let _still_greeted = agent.greeted().await;
    // Not a socket at all: left alone too.
    let file = agent.path.with_file_name("file");
    std::fs::write(&file, b"keep me").unwrap();
    let err = ipc::bind(&file).unwrap_err();
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[tokio::test]
async fn the_directory_is_private_and_an_open_one_is_refused() {
    let agent = Agent::start(8, 16).await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(agent.path.parent().unwrap()), 0o700);
    assert_eq!(mode(&agent.path), 0o600);

    let open = agent.dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = ipc::bind(&open.join("agent.sock")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("0755"), "{err}");
}

#[tokio::test]
async fn calls_go_to_the_owner_and_its_absence_means_shutting_down() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run").join("agent.sock");
    let listener = ipc::bind(&path).unwrap();
    let (calls, calls_rx) = mpsc::channel(4);
    drop(calls_rx);
    let (_status, status_rx) = watch::channel(status());
    let link = AgentLink {
        calls,
        status: status_rx,
        events: broadcast::channel(4).0,
        capabilities: vec!["status".into(), "logout".into()],
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(ipc::serve(
        listener,
        link,
        ServerLimits::default(),
        shutdown.clone(),
    ));
    let mut c = Raw::connect(&path).await;
    c.hello().await;
    c.send(r#"{"id":2,"method":"logout"}"#).await;
    c.expect_error(json!(2), "shutting_down").await;
    // Not among the capabilities: answered without reaching the owner.
    c.send(r#"{"id":3,"method":"renew"}"#).await;
    c.expect_error(json!(3), "not_supported").await;
    shutdown.cancel();
    server.await.unwrap();
}
