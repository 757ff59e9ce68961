//! The agent's web bridge over the real stack: the portal's origin signs in (the PIN through
//! the scripted pinentry) and gets a ticket over HTTP, and speaks the socket protocol over the
//! WebSocket with events; other pages, rebinding host names and missing origins are refused
//! before anything is said; the body cap, the rate, the connection cap and the timeouts hold;
//! the bridge is off unless configured, and listens only on 127.0.0.1.
//!
//! One pcscd per test process: run with `cargo nextest run -p tests`.

use cardsim::AtrProfile;
use cms::issuance::InitialValidity;
use cms_api::client::CmsClient;
use futures_util::SinkExt as _;
use piv::CardSerial;
use serde_json::{json, Value};
use std::time::Duration;
use testbed::bridge::{
    bridge_config, free_port, http_once, websocket, ws_call, ws_hello, ws_next, BridgeSocket,
    HttpAnswer, HttpConnection, HttpRequest, PORTAL,
};
use testbed::stack::{AgentOptions, Stack, StackCard};
use tokio_tungstenite::tungstenite::Message;

const ELSEWHERE: &str = "https://evil.example";

fn serial(n: u8) -> CardSerial {
    CardSerial([0x40, 0x82, 0xA0, 0x01, 0x13, 0x2F, 0x2B, n])
}

/// A stack with a nurse's card and the agent serving the bridge on a free port (`extra` lines
/// in `[bridge]`); returns the port.
fn bridge_stack(n: u8, login_on_insert: bool, extra: &str) -> (Stack, StackCard, u16) {
    let (mut stack, card) =
        Stack::with_nurse_card(serial(n), InitialValidity::Days(400), AtrProfile::Piv).unwrap();
    let port = free_port().unwrap();
    stack.pin_answers(&[&card.pin]).unwrap();
    stack
        .start_agent(&AgentOptions {
            login_on_insert,
            extra_config: bridge_config(port, extra),
            ..AgentOptions::default()
        })
        .unwrap();
    (stack, card, port)
}

/// The TCP addresses the process `pid` listens on (from `/proc`: its sockets' inodes matched
/// with the system's listening sockets).
fn listening(pid: u32) -> Vec<String> {
    let mut inodes = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let target = target.display().to_string();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
            {
                inodes.push(inode.to_owned());
            }
        }
    }
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local address, state (0A: listening), inode.
            if fields.len() > 9 && fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]) {
                found.push(decode_address(fields[1]));
            }
        }
    }
    found
}

/// `0100007F:1F90` → `127.0.0.1:8080` (IPv4 in host byte order; IPv6 shown raw).
fn decode_address(field: &str) -> String {
    let (ip, port) = field.split_once(':').unwrap();
    let port = u16::from_str_radix(port, 16).unwrap();
    if ip.len() == 8 {
        let ip = u32::from_str_radix(ip, 16).unwrap();
        format!("{}:{port}", std::net::Ipv4Addr::from(u32::from_be(ip)))
    } else {
        format!("[{ip}]:{port}")
    }
}

fn code(answer: &HttpAnswer) -> String {
    let body = answer.json().unwrap();
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

/// The answer of an allowed origin: its CORS headers and nothing more.
#[track_caller]
fn assert_cors_for_portal(answer: &HttpAnswer) {
    assert_eq!(answer.header("access-control-allow-origin"), Some(PORTAL));
    assert_eq!(answer.header("vary"), Some("Origin"));
    assert_eq!(answer.header("access-control-allow-credentials"), None);
}

/// A refusal: 403, the plain text, no CORS header, nothing of value.
#[track_caller]
fn assert_refused(answer: &HttpAnswer, text: &str) {
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(answer.text(), text);
    assert!(answer.cors_headers().is_empty(), "{answer:?}");
}

#[test]
fn the_portal_signs_in_and_gets_a_ticket_over_http() {
    let (stack, card, port) = bridge_stack(1, false, "");
    // Only the bridge listens, and only on the loopback address.
    assert_eq!(
        listening(stack.agent().unwrap().pid()),
        vec![format!("127.0.0.1:{port}")]
    );
    let _inserted = stack.insert(0, &card).unwrap();
    let ticket = stack.block_on(async {
        let mut http = HttpConnection::connect(port).await.unwrap();
        let status = http
            .send(&HttpRequest::new("GET", "/v1/status"))
            .await
            .unwrap();
        assert_eq!(status.status, 200, "{status:?}");
        assert_cors_for_portal(&status);
        let body = status.json().unwrap();
        assert_eq!(body["readers"].as_array().unwrap().len(), 2, "{body}");
        assert_ne!(body["session"]["state"], "signed_in", "{body}");

        // Once the agent has read the card.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = http
                .send(&HttpRequest::new("GET", "/v1/status"))
                .await
                .unwrap();
            if !status.json().unwrap()["readers"][0]["card"].is_null() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the card was not seen"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Not signed in yet.
        let early = http
            .send(&HttpRequest::call("ticket", &json!({})))
            .await
            .unwrap();
        assert_eq!((early.status, code(&early).as_str()), (401, "no_session"));
        assert_cors_for_portal(&early);

        // The PIN goes through the agent's pinentry, never through the page.
        let login = http
            .send(&HttpRequest::call("login", &json!({})))
            .await
            .unwrap();
        assert_eq!(login.status, 200, "{}", login.text());
        assert_eq!(login.json().unwrap()["result"]["state"], "signed_in");
        let roles = http
            .send(&HttpRequest::call("roles", &Value::Null))
            .await
            .unwrap();
        let roles = roles.json().unwrap()["result"].clone();
        if roles["selected"].is_null() {
            let role = roles["roles"][0]["id"].as_str().unwrap();
            let selected = http
                .send(&HttpRequest::call(
                    "select_role",
                    &json!({ "role": role, "remember": false }),
                ))
                .await
                .unwrap();
            assert_eq!(selected.status, 200, "{}", selected.text());
        }
        let mut empty_body = HttpRequest::call("ticket", &Value::Null);
        empty_body.body.clear();
        let ticket = http.send(&empty_body).await.unwrap();
        assert_eq!(ticket.status, 200, "{}", ticket.text());
        assert_cors_for_portal(&ticket);
        let ticket = ticket.json().unwrap()["result"]["ticket"]
            .as_str()
            .unwrap()
            .to_owned();

        // What the bridge does not serve, and bad input.
        for (method, status, expected) in [
            ("cancel_card", 404, "not_supported"),
            ("hello", 404, "not_supported"),
            ("subscribe", 404, "not_supported"),
            ("format_card", 404, "unknown_method"),
        ] {
            let answer = http
                .send(&HttpRequest::call(
                    method,
                    &json!({ "serial": "4082A001132F2B01" }),
                ))
                .await
                .unwrap();
            assert_eq!(
                (answer.status, code(&answer).as_str()),
                (status, expected),
                "{method}"
            );
        }
        let mut not_json = HttpRequest::call("status", &Value::Null);
        not_json.body = b"{not json".to_vec();
        let answer = http.send(&not_json).await.unwrap();
        assert_eq!(
            (answer.status, code(&answer).as_str()),
            (400, "bad_request")
        );
        let answer = http
            .send(&HttpRequest::call("login", &json!({ "reader": 7 })))
            .await
            .unwrap();
        assert_eq!(
            (answer.status, code(&answer).as_str()),
            (400, "bad_request")
        );
        let answer = http
            .send(&HttpRequest::new("GET", "/v1/nothing"))
            .await
            .unwrap();
        assert_eq!(answer.status, 404);
        // The connection is still served.
        let status = http
            .send(&HttpRequest::call("status", &json!({})))
            .await
            .unwrap();
        assert_eq!(status.status, 200);
        assert_eq!(
            status.json().unwrap()["result"]["session"]["state"],
            "signed_in"
        );
        ticket
    });
    // The service accepts the ticket for this holder.
    let cms = CmsClient::new(stack.cms_url(), stack.cms.ca().certificate_pem()).unwrap();
    let valid = stack.block_on(cms.validate_ticket(&ticket)).unwrap();
    assert_eq!(valid.user.id, card.user_id);
    // Neither the ticket nor the PIN in the agent's log.
    let logs = stack.agent_logs();
    assert!(!logs.contains(&ticket), "the ticket was logged");
    assert!(!logs.contains(&card.pin), "the PIN was logged");
}

#[test]
fn other_pages_rebinding_names_and_missing_origins_are_refused() {
    let (stack, _card, port) = bridge_stack(2, false, "");
    stack.block_on(async {
        let status = || HttpRequest::new("GET", "/v1/status");
        let ticket = || HttpRequest::call("ticket", &json!({}));
        for request in [
            status().from_origin(Some(ELSEWHERE)),
            ticket().from_origin(Some(ELSEWHERE)),
            status().from_origin(None),
            ticket().from_origin(None),
            status().from_origin(Some("null")),
            status().from_origin(Some(&format!("{PORTAL}/"))),
            status().from_origin(Some(&format!("{PORTAL}.evil.example"))),
            HttpRequest::new("GET", "/v1/socket").from_origin(Some(ELSEWHERE)),
        ] {
            let answer = http_once(port, &request).await.unwrap();
            assert_refused(&answer, "origin not allowed");
        }
        // DNS rebinding: the portal's own origin, through another name for 127.0.0.1.
        for host in [
            format!("evil.example:{port}"),
            "127.0.0.1".to_owned(),
            format!("127.0.0.1:{}", port.wrapping_add(1)),
        ] {
            let answer = http_once(port, &status().with_host(&host)).await.unwrap();
            assert_refused(&answer, "host not allowed");
        }
        let answer = http_once(port, &status().with_host(&format!("localhost:{port}")))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);

        // Preflights: granted with Private Network Access for the portal, refused for others.
        let preflight = |origin: &str| {
            HttpRequest::new("OPTIONS", "/v1/call/ticket")
                .from_origin(Some(origin))
                .with_header("access-control-request-method", "POST")
                .with_header("access-control-request-headers", "content-type")
                .with_header("access-control-request-private-network", "true")
        };
        let granted = http_once(port, &preflight(PORTAL)).await.unwrap();
        assert_eq!(granted.status, 204, "{granted:?}");
        assert_cors_for_portal(&granted);
        assert_eq!(
            granted.header("access-control-allow-methods"),
            Some("GET, POST")
        );
        assert_eq!(
            granted.header("access-control-allow-headers"),
            Some("content-type")
        );
        assert_eq!(granted.header("access-control-max-age"), Some("600"));
        assert_eq!(
            granted.header("access-control-allow-private-network"),
            Some("true")
        );
        let refused = http_once(port, &preflight(ELSEWHERE)).await.unwrap();
        assert_refused(&refused, "origin not allowed");

        // The WebSocket: refused from elsewhere and without an origin, served to the portal.
        for origin in [Some(ELSEWHERE), None] {
            let err = websocket(port, origin).await.unwrap_err().to_string();
            assert!(err.contains("403"), "{origin:?}: {err}");
        }
        let mut socket = websocket(port, Some(PORTAL)).await.unwrap();
        let hello = ws_hello(&mut socket).await.unwrap();
        assert_eq!(hello["result"]["protocol"], agent_ipc::PROTOCOL_VERSION);
    });
}

/// The next event named `name` on `socket`, skipping others.
async fn ws_event(socket: &mut BridgeSocket, name: &str) -> Value {
    loop {
        let message = ws_next(socket).await.unwrap();
        if message["event"] == name {
            return message;
        }
    }
}

#[test]
fn the_websocket_speaks_the_socket_protocol_and_carries_events() {
    let (mut stack, card, port) = bridge_stack(3, true, "");
    stack.block_on(async {
        let mut socket = websocket(port, Some(PORTAL)).await.unwrap();
        let early = ws_call(&mut socket, &json!({ "id": 1, "method": "status" }))
            .await
            .unwrap();
        assert_eq!(early["error"]["code"], "hello_required", "{early}");
        let hello = ws_hello(&mut socket).await.unwrap();
        assert!(hello["result"]["capabilities"].is_array(), "{hello}");
        let subscribed = ws_call(&mut socket, &json!({ "id": 2, "method": "subscribe" }))
            .await
            .unwrap();
        assert_eq!(
            subscribed,
            json!({ "id": 2, "result": { "subscribed": true } })
        );

        // Bad input gets an error and the connection goes on.
        socket
            .send(Message::binary(b"\x00\x01".to_vec()))
            .await
            .unwrap();
        let binary = ws_next(&mut socket).await.unwrap();
        assert_eq!(binary["error"]["code"], "bad_request", "{binary}");
        socket.send(Message::text("{not json")).await.unwrap();
        assert_eq!(
            ws_next(&mut socket).await.unwrap()["error"]["code"],
            "bad_request"
        );
        for (id, method, expected) in [
            (3, "cancel_card", "not_supported"),
            (4, "format_card", "unknown_method"),
        ] {
            let answer = ws_call(
                &mut socket,
                &json!({ "id": id, "method": method, "params": { "serial": "4082A001132F2B03" } }),
            )
            .await
            .unwrap();
            assert_eq!(answer["id"], id);
            assert_eq!(answer["error"]["code"], expected, "{answer}");
        }

        // A message over the cap ends only that WebSocket.
        let mut huge = websocket(port, Some(PORTAL)).await.unwrap();
        ws_hello(&mut huge).await.unwrap();
        let pad = "x".repeat(70 * 1024);
        let _ = huge
            .send(Message::text(format!(
                r#"{{"id":2,"method":"status","pad":"{pad}"}}"#
            )))
            .await;
        match ws_next(&mut huge).await {
            Ok(answer) => assert_eq!(answer["error"]["code"], "message_too_large", "{answer}"),
            Err(e) => assert!(e.to_string().contains("closed"), "{e}"),
        }

        let status = ws_call(&mut socket, &json!({ "id": 5, "method": "status" }))
            .await
            .unwrap();
        assert_eq!(status["id"], 5);
        assert_eq!(status["result"]["readers"].as_array().unwrap().len(), 2);
    });

    // Events: the card signs in (PIN through the pinentry) and its removal ends the session.
    let mut socket = stack.block_on(async {
        let mut socket = websocket(port, Some(PORTAL)).await.unwrap();
        ws_hello(&mut socket).await.unwrap();
        ws_call(&mut socket, &json!({ "id": 2, "method": "subscribe" }))
            .await
            .unwrap();
        socket
    });
    let inserted = stack.insert(0, &card).unwrap();
    let started = stack.block_on(ws_event(&mut socket, "session_started"));
    assert_eq!(
        started["data"]["session"]["state"], "signed_in",
        "{started}"
    );
    stack.bed.remove(0, inserted).unwrap();
    let ended = stack.block_on(ws_event(&mut socket, "session_ended"));
    assert_eq!(ended["data"]["reason"], "card_removed", "{ended}");

    // Stopping the agent says so on the WebSocket, then closes it.
    stack.stop_agent().unwrap();
    stack.block_on(async {
        let farewell = loop {
            let message = ws_next(&mut socket).await.unwrap();
            if message.get("event").is_none() {
                break message;
            }
        };
        assert_eq!(farewell["error"]["code"], "shutting_down", "{farewell}");
        assert!(ws_next(&mut socket).await.is_err());
    });
}

#[test]
fn the_body_cap_the_rate_the_connection_cap_and_the_timeouts_hold() {
    let (stack, _card, port) = bridge_stack(
        4,
        false,
        "max_connections = 3\nrequests_per_second = 1\nburst = 3\nidle_timeout_secs = 2\n",
    );
    stack.block_on(async {
        // Over the body cap.
        let mut large = HttpRequest::call("status", &Value::Null);
        large.body = vec![b' '; 70 * 1024];
        let answer = http_once(port, &large).await.unwrap();
        assert_eq!(
            (answer.status, code(&answer).as_str()),
            (413, "message_too_large")
        );
        assert_cors_for_portal(&answer);

        // Headers over the cap.
        let padded =
            HttpRequest::new("GET", "/v1/status").with_header("x-pad", &"x".repeat(70 * 1024));
        let answer = http_once(port, &padded).await.unwrap();
        assert_eq!(answer.status, 431, "{answer:?}");

        // The rate: a burst of three, then 429 with Retry-After and `busy`.
        let mut http = HttpConnection::connect(port).await.unwrap();
        for _ in 0..3 {
            let answer = http
                .send(&HttpRequest::new("GET", "/v1/status"))
                .await
                .unwrap();
            assert_eq!(answer.status, 200);
        }
        let limited = http
            .send(&HttpRequest::new("GET", "/v1/status"))
            .await
            .unwrap();
        assert_eq!((limited.status, code(&limited).as_str()), (429, "busy"));
        assert_eq!(limited.header("retry-after"), Some("1"));
        assert_cors_for_portal(&limited);
        // Another connection has a bucket of its own.
        let other = http_once(port, &HttpRequest::new("GET", "/v1/status"))
            .await
            .unwrap();
        assert_eq!(other.status, 200);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let again = http
            .send(&HttpRequest::new("GET", "/v1/status"))
            .await
            .unwrap();
        assert_eq!(again.status, 200);
        // Idle for the idle timeout: closed.
        assert!(
            http.closed_within(Duration::from_secs(4)).await,
            "not closed when idle"
        );

        // The WebSocket is metered too: the upgrade and hello take two of the three.
        let mut socket = websocket(port, Some(PORTAL)).await.unwrap();
        ws_hello(&mut socket).await.unwrap();
        let mut codes = Vec::new();
        for id in 2..5 {
            let answer = ws_call(&mut socket, &json!({ "id": id, "method": "status" }))
                .await
                .unwrap();
            codes.push(answer["error"]["code"].as_str().unwrap_or("ok").to_owned());
        }
        assert_eq!(codes, ["ok", "busy", "busy"]);
        drop(socket);

        // The connection cap: a slow client that never finishes its headers holds a place,
        // two more fill the cap, the next is refused; the others are still served.
        let mut slow = HttpConnection::connect(port).await.unwrap();
        let slow_write = slow.send_raw(b"GET /v1/status HTTP/1.1\r\nhost: 127.0.0.1");
        let slow_answer = tokio::time::timeout(Duration::from_millis(300), slow_write).await;
        assert!(slow_answer.is_err(), "a half-sent request was answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut connection = HttpConnection::connect(port).await.unwrap();
            let answer = connection
                .send(&HttpRequest::new("GET", "/v1/status"))
                .await
                .unwrap();
            assert_eq!(answer.status, 200);
            held.push(connection);
        }
        let mut over = HttpConnection::connect(port).await.unwrap();
        match over.send(&HttpRequest::new("GET", "/v1/status")).await {
            Ok(answer) => assert_eq!(answer.status, 503, "{answer:?}"),
            Err(e) => assert!(e.to_string().contains("closed"), "{e}"),
        }
        let answer = held[0]
            .send(&HttpRequest::new("GET", "/v1/status"))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        // The slow client is closed (idle for the idle timeout, or at the header-read
        // timeout, whichever comes first).
        assert!(
            slow.closed_within(Duration::from_secs(12)).await,
            "the slow client was not closed"
        );
        drop(held);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answer = http_once(port, &HttpRequest::new("GET", "/v1/status"))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
    });
}

#[test]
fn the_bridge_is_off_by_default_and_a_bad_origin_is_a_configuration_error() {
    let mut stack = Stack::start().unwrap();
    stack.start_agent(&AgentOptions::default()).unwrap();
    assert_eq!(
        listening(stack.agent().unwrap().pid()),
        Vec::<String>::new()
    );
    assert!(!stack.agent_logs().contains("web bridge"));
    stack.stop_agent().unwrap();

    let port = free_port().unwrap();
    let err = stack
        .start_agent(&AgentOptions {
            extra_config: format!(
                "[bridge]\nport = {port}\nallowed_origins = [\"https://portal.example.nhs.uk/\"]\n"
            ),
            ..AgentOptions::default()
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("no path, query or trailing slash"), "{err}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
