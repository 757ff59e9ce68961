//! The client against a scripted agent on a temporary endpoint: a socket in a temporary
//! directory on Unix, a named pipe of a random name on Windows (where these tests run as a
//! Windows program under Wine: `docs/WINDOWS.md`).

use agent_ipc::{Client, ClientError, ErrorCode, Event, LineReader};
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use serde_json::{json, Value};
use std::path::PathBuf;
use tokio::io::{AsyncWriteExt, BufReader};

/// A fresh endpoint address nothing listens on; the directory (Unix) lives as long as it.
fn fresh_endpoint() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    let path = dir.path().join("agent.sock");
    #[cfg(windows)]
    let path = PathBuf::from(format!(
        r"\\.\pipe\identity-agent-test-{}",
        dir.path().file_name().unwrap().to_string_lossy()
    ));
    (dir, path)
}

/// Accepts one connection and, for each request read, writes the lines `script` returns.
async fn scripted(
    script: impl Fn(Value) -> Vec<Value> + Send + 'static,
) -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = fresh_endpoint();
    let listener = ListenerOptions::new()
        .name(path.as_path().to_fs_name::<GenericFilePath>().unwrap())
        .create_tokio()
        .unwrap();
    tokio::spawn(async move {
        let stream = listener.accept().await.unwrap();
        let (read, mut write) = tokio::io::split(stream);
        let mut reader = LineReader::new(BufReader::new(read));
        while let Ok(Some(line)) = reader.next_line().await {
            let request: Value = serde_json::from_str(&line).unwrap();
            for out in script(request) {
                write
                    .write_all(format!("{out}\n").as_bytes())
                    .await
                    .unwrap();
            }
        }
    });
    (dir, path)
}

/// Like [`scripted`], with `hello` answered for protocol 1; `script` gets every other request's
/// method and id.
async fn scripted_after_hello(
    script: impl Fn(&str, Value) -> Vec<Value> + Send + 'static,
) -> (tempfile::TempDir, PathBuf) {
    scripted(move |req| {
        let id = req["id"].clone();
        match req["method"].as_str() {
            Some("hello") => vec![hello_reply(&id, 1)],
            method => script(method.unwrap_or_default(), id),
        }
    })
    .await
}

fn hello_reply(id: &Value, protocol: u32) -> Value {
    json!({"id": id, "result": {"protocol": protocol, "agent_version": "9.9.9", "capabilities": ["status"]}})
}

#[tokio::test]
async fn no_endpoint_means_not_running_with_advice() {
    let (_dir, path) = fresh_endpoint();
    let err = Client::connect(&path).await.unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "identity-agent is not running (no socket at {}): start it with `identity-agent`",
            path.display()
        )
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_socket_file_nothing_answers_on_means_not_running() {
    let (_dir, path) = fresh_endpoint();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(matches!(
        Client::connect(&path).await,
        Err(ClientError::NotRunning { .. })
    ));
}

#[tokio::test]
async fn another_protocol_version_is_a_clear_error() {
    let (_dir, path) = scripted(|req| vec![hello_reply(&req["id"], 2)]).await;
    let err = Client::connect(&path).await.unwrap_err();
    let ClientError::Protocol(message) = err else {
        panic!("expected a protocol error, got {err:?}");
    };
    assert!(message.contains("protocol version 2"), "{message}");
}

#[tokio::test]
async fn events_that_arrive_before_a_reply_are_kept_in_order() {
    let (_dir, path) = scripted_after_hello(|method, id| match method {
        "subscribe" => vec![json!({"id": id, "result": {"subscribed": true}})],
        // Two events arrive before the reply, one after.
        _ => vec![
            json!({"event":"reader_added","data":{"reader":"A"}}),
            json!({"event":"reader_added","data":{"reader":"B"}}),
            json!({"id": id, "result": []}),
            json!({"event":"reader_added","data":{"reader":"C"}}),
        ],
    })
    .await;
    let client = Client::connect(&path).await.unwrap();
    assert_eq!(client.hello().agent_version, "9.9.9");
    let mut sub = client.subscribe().await.unwrap();
    let readers = sub.call_raw(agent_ipc::Call::Readers).await.unwrap();
    assert_eq!(readers, json!([]));
    for name in ["A", "B", "C"] {
        assert_eq!(
            sub.next_event().await.unwrap(),
            Event::ReaderAdded {
                reader: name.into()
            }
        );
    }
}

#[tokio::test]
async fn agent_errors_keep_code_and_data_and_ids_are_matched() {
    let (_dir, path) = scripted_after_hello(|method, id| match method {
        "login" => vec![json!({"id": id, "error": {"code":"wrong_pin","message":"Wrong PIN: 2 tries left","data":{"tries_left":2}}})],
        // A reply to some other id is a protocol error.
        _ => vec![json!({"id": 999, "result": null})],
    })
    .await;
    let mut client = Client::connect(&path).await.unwrap();
    let err = client.login(None).await.unwrap_err();
    let agent = err.agent_error().expect("an agent error");
    assert_eq!(agent.code, ErrorCode::WrongPin);
    assert_eq!(agent.data, Some(json!({"tries_left": 2})));
    assert_eq!(err.to_string(), "Wrong PIN: 2 tries left");
    assert!(matches!(
        client.logout().await,
        Err(ClientError::Protocol(_))
    ));
}
