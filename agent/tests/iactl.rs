//! The built `iactl` against a socket served by the real server and a small session owner.

use agent::ipc::{self, AgentCall, AgentLink, ServerLimits};
use agent_ipc::{
    fixtures, ErrorCode, ErrorObject, ReaderStatus, SessionState, SessionStatus, Status,
};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

fn status() -> Status {
    fixtures::status(
        vec![
            ReaderStatus {
                name: fixtures::READER.into(),
                card: Some(fixtures::card()),
            },
            ReaderStatus {
                name: "Virtual PCD 00 01".into(),
                card: None,
            },
        ],
        SessionStatus::idle(SessionState::CardPresent),
    )
}

/// Serves a socket whose owner answers every call with `no_session`.
struct Served {
    _dir: tempfile::TempDir,
    path: PathBuf,
    _status: watch::Sender<Status>,
    shutdown: CancellationToken,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Where the test agent listens: a socket in `dir` on Unix, a pipe of a name of its own on
/// Windows (pipes live in one namespace, not in directories).
fn endpoint(dir: &Path) -> PathBuf {
    if cfg!(windows) {
        let name = dir.file_name().unwrap().to_string_lossy();
        PathBuf::from(format!(
            r"\\.\pipe\identity-agent-test-{}-{name}",
            std::process::id()
        ))
    } else {
        dir.join("run").join("agent.sock")
    }
}

fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path = endpoint(dir.path());
    let listener = ipc::bind(&path).unwrap();
    let (calls, mut calls_rx) = mpsc::channel::<AgentCall>(8);
    tokio::spawn(async move {
        while let Some(call) = calls_rx.recv().await {
            let _ = call.reply.send(Err(ErrorObject::new(
                ErrorCode::NoSession,
                "no one is signed in: insert your card and run `iactl login`",
            )));
        }
    });
    let (status_tx, status_rx) = watch::channel(status());
    let link = AgentLink {
        calls,
        status: status_rx,
        events: broadcast::channel(16).0,
        capabilities: agent_ipc::METHODS.iter().map(|m| m.to_string()).collect(),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(ipc::serve(
        listener,
        link,
        ServerLimits::default(),
        shutdown.clone(),
    ));
    Served {
        _dir: dir,
        path,
        _status: status_tx,
        shutdown,
    }
}

async fn iactl(socket: &Path, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_iactl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("IDENTITY_AGENT_SOCKET")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("iactl did not finish")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_3_with_advice_when_no_agent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = endpoint(dir.path());
    let out = iactl(&path, &["status"]).await;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "identity-agent is not running (no socket at {}): start it with `identity-agent`",
            path.display()
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_status_parses_and_text_status_reads_well() {
    let agent = serve();
    let out = iactl(&agent.path, &["--json", "status"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let parsed: Status = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed, status());

    let out = iactl(&agent.path, &["status"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let shown = text(&out.stdout);
    for expected in [
        "identity-agent 0.1.0",
        "pcscd: running",
        "reader Virtual PCD 00 00: NHS CIS card 0123456789ABCDEF, Alex Example, \
         expires 2027-01-01 (40 days)",
        "reader Virtual PCD 00 01: no card",
        "session: card present, not signed in",
    ] {
        assert!(
            shown.contains(expected),
            "{expected:?} missing from:\n{shown}"
        );
    }
    // The holder's user id is for programs (--json), not for people.
    assert!(!shown.contains("8c6f4f38"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_error_exits_1_with_its_message() {
    let agent = serve();
    let out = iactl(&agent.path, &["logout"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("no one is signed in: insert your card and run `iactl login`"),
        "{err}"
    );
    assert!(err.contains("no_session"), "{err}");

    let out = iactl(
        &agent.path,
        &["--json", "role", "select", "R1", "--no-remember"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed["error"]["code"], "no_session", "{parsed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2() {
    let agent = serve();
    for args in [&["frobnicate"][..], &["role", "select"], &["cancel"]] {
        let out = iactl(&agent.path, args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}
