//! The service keeps serving under hostile connections: connections stalled in every phase
//! (a body that stops or trickles, headers that stop or trickle, an idle kept-alive connection,
//! an HTTP/2 preface) are held from "attacker" loopback addresses while a fresh client from
//! 127.0.0.1 is served; each is closed by the server within its deadline; and one address
//! cannot hold more than its cap of connections while other addresses are still served.
//!
//! Deadlines here are short (seconds) and every timing assertion has a margin of several
//! seconds: what is checked is that a connection is closed at all, by its deadline, not when
//! to the millisecond.
#![cfg(target_os = "linux")]

#[path = "common/hostile.rs"]
mod hostile;

use cms::server::{self, RunningServer, ServerLimits, TlsFiles};
use cms::{Cms, DataDir, Policy};
use hostile::{Stall, HTTP2_PREFACE};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsConnector;

/// What a deadline may be overshot by before a test calls it missed: generous, for a loaded
/// machine.
const MARGIN: Duration = Duration::from_secs(5);

/// The fresh client's address.
const FRESH: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// An attacker's address: 127.0.0.`n`.
fn attacker(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A service in a temporary directory, served with `limits`, and a TLS connector trusting it.
struct Served {
    _dir: tempfile::TempDir,
    server: RunningServer,
    tls: TlsConnector,
}

async fn serve(limits: ServerLimits) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let cms = Arc::new(Cms::init(&DataDir::new(dir.path()), &[], Policy::default()).unwrap());
    let files = TlsFiles::own(&cms.data_dir().ca_files());
    let server =
        server::start_with_tls(cms.clone(), "127.0.0.1:0".parse().unwrap(), &files, &limits)
            .await
            .unwrap();
    let tls = hostile::connector(cms.ca().certificate_pem());
    Served {
        _dir: dir,
        server,
        tls,
    }
}

/// A connection the server closed: when, and what it sent before.
struct Closed {
    stall: Stall,
    opened: Instant,
    closed: Instant,
    received: Vec<u8>,
}

/// Opens `count` connections from `from` stalled as `stall`, each watched (in a task) until the
/// server closes it.
async fn hold(
    served: &Served,
    from: IpAddr,
    stall: Stall,
    count: usize,
) -> Vec<tokio::task::JoinHandle<Closed>> {
    let mut watchers = Vec::new();
    for _ in 0..count {
        let opened = Instant::now();
        let mut stream = hostile::stall(&served.tls, from, served.server.addr, stall)
            .await
            .unwrap_or_else(|e| panic!("{stall:?} from {from}: {e}"));
        watchers.push(tokio::spawn(async move {
            let received = hostile::until_closed(&mut stream).await;
            Closed {
                stall,
                opened,
                closed: Instant::now(),
                received,
            }
        }));
    }
    watchers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_client_is_served_while_stalled_connections_are_held_and_each_is_closed_by_its_deadline(
) {
    let deadline = Duration::from_secs(4);
    let limits = ServerLimits {
        max_connections: 20,
        max_connections_per_client: 4,
        handshake_timeout: deadline,
        header_timeout: deadline,
        body_timeout: deadline,
        write_timeout: deadline,
    };
    let served = serve(limits).await;
    // Four attacker addresses, each holding its cap of one kind of stalled connection: 16 of
    // the 20 slots.
    let mut watchers = Vec::new();
    for (n, stall) in (2..).zip(Stall::ALL) {
        watchers.extend(hold(&served, attacker(n), stall, 4).await);
    }
    let (status, took) = hostile::health_from(&served.tls, FRESH, served.server.addr)
        .await
        .unwrap();
    let served_at = Instant::now();
    assert_eq!(status, 200);
    assert!(took < MARGIN, "the fresh client waited {took:?}");

    let mut closed = Vec::new();
    for watcher in watchers {
        let c = tokio::time::timeout(deadline + 2 * MARGIN, watcher)
            .await
            .expect("a stalled connection was never closed")
            .unwrap();
        closed.push(c);
    }
    for c in &closed {
        let held = c.closed - c.opened;
        match c.stall {
            Stall::Http2 => {
                // Refused at once, and not answered in HTTP/2 (whose answer would start with a
                // SETTINGS frame): at most an HTTP/1.1 error.
                assert!(held < MARGIN, "an HTTP/2 preface was held {held:?}");
                assert!(
                    c.received.is_empty() || c.received.starts_with(b"HTTP/1.1 "),
                    "an HTTP/2 preface was answered {:?}",
                    String::from_utf8_lossy(&c.received)
                );
            }
            stall => {
                assert!(
                    c.closed > served_at,
                    "a {stall:?} connection was closed before the fresh client was served"
                );
                assert!(
                    held < deadline + MARGIN,
                    "a {stall:?} connection was held {held:?}"
                );
                assert!(
                    held >= deadline / 2,
                    "a {stall:?} connection was closed after only {held:?}"
                );
            }
        }
        if c.stall == Stall::SlowBody {
            // A late body's request is not answered (no error about its size or shape).
            assert!(
                c.received.is_empty(),
                "a late body was answered {:?}",
                String::from_utf8_lossy(&c.received)
            );
        }
    }
    served.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_bodies_that_trickle_are_cut_at_their_deadline_however_they_trickle() {
    let deadline = Duration::from_secs(3);
    let limits = ServerLimits {
        header_timeout: deadline,
        body_timeout: deadline,
        ..ServerLimits::default()
    };
    let served = serve(limits).await;
    let addr = served.server.addr;
    let mut trickles = Vec::new();
    for (n, stall) in [(2, Stall::SlowHeader), (3, Stall::SlowBody)] {
        let opened = Instant::now();
        let mut stream = hostile::stall(&served.tls, attacker(n), addr, stall)
            .await
            .unwrap();
        trickles.push(tokio::spawn(async move {
            // One byte every 200 ms, never finishing: no read ever waits long, yet the whole
            // header or body is late.
            let byte: &[u8] = if stall == Stall::SlowHeader {
                b"h"
            } else {
                b" "
            };
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let sent = async {
                    stream.write_all(byte).await?;
                    stream.flush().await
                };
                if sent.await.is_err() {
                    break;
                }
                if opened.elapsed() > deadline + 3 * MARGIN {
                    panic!("a trickling {stall:?} connection is still open");
                }
            }
            // Written bytes fail only once the server has closed; make sure it has.
            let _ = hostile::until_closed(&mut stream).await;
            (stall, opened.elapsed())
        }));
    }
    for trickle in trickles {
        let (stall, held) = trickle.await.unwrap();
        assert!(
            held < deadline + 2 * MARGIN,
            "a trickling {stall:?} connection was held {held:?}"
        );
        assert!(
            held >= deadline / 2,
            "a trickling {stall:?} connection was closed after only {held:?}"
        );
    }
    served.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_cap_while_other_addresses_are_served() {
    // Long deadlines: the attacker's connections stay for the whole test.
    let limits = ServerLimits {
        max_connections: 64,
        max_connections_per_client: 4,
        header_timeout: Duration::from_secs(60),
        ..ServerLimits::default()
    };
    let served = serve(limits).await;
    let addr = served.server.addr;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            hostile::stall(&served.tls, attacker(2), addr, Stall::SlowHeader)
                .await
                .unwrap(),
        );
    }
    // The fifth from the same address is closed before its TLS handshake.
    let fifth = tokio::time::timeout(MARGIN, hostile::tls_from(&served.tls, attacker(2), addr))
        .await
        .expect("the fifth connection was neither served nor closed");
    assert!(
        fifth.is_err(),
        "a fifth connection from one address was served"
    );
    // Another attacker address and the fresh client are served meanwhile.
    let (status, _) = hostile::health_from(&served.tls, attacker(3), addr)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, took) = hostile::health_from(&served.tls, FRESH, addr)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(took < MARGIN, "the fresh client waited {took:?}");
    // One of the four closes: the address gets its slot back.
    drop(held.pop());
    let started = Instant::now();
    loop {
        match hostile::stall(&served.tls, attacker(2), addr, Stall::Idle).await {
            Ok(_) => break,
            Err(e) if started.elapsed() > MARGIN => {
                panic!("the freed slot was not given back: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    // (Closed first: a graceful stop would wait for their headers.)
    drop(held);
    served.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_preface_is_refused_promptly_even_with_long_deadlines() {
    let served = serve(ServerLimits::default()).await;
    let mut stream = hostile::tls_from(&served.tls, attacker(2), served.server.addr)
        .await
        .unwrap();
    let started = Instant::now();
    stream.write_all(HTTP2_PREFACE).await.unwrap();
    stream.flush().await.unwrap();
    let received = tokio::time::timeout(MARGIN, hostile::until_closed(&mut stream))
        .await
        .expect("an HTTP/2 connection was held");
    assert!(started.elapsed() < MARGIN);
    assert!(
        received.is_empty() || received.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    served.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_that_ends_within_its_deadline_is_answered() {
    let limits = ServerLimits {
        body_timeout: Duration::from_secs(4),
        ..ServerLimits::default()
    };
    let served = serve(limits).await;
    let mut stream = hostile::tls_from(&served.tls, FRESH, served.server.addr)
        .await
        .unwrap();
    let body = br#"{"serial": "4082A001132F2817"}"#;
    let head = format!(
        "POST /v1/auth/challenge HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Half the body, a pause well inside the deadline, then the rest.
    stream.write_all(&body[..10]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stream.write_all(&body[10..]).await.unwrap();
    stream.flush().await.unwrap();
    let answer = String::from_utf8(hostile::until_closed(&mut stream).await).unwrap();
    // No such card: the service's own refusal, so the body was read in full and parsed.
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    assert!(answer.contains(r#""code":"unknown_card""#), "{answer}");
    served.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_is_cut_at_the_write_deadline() {
    let deadline = Duration::from_secs(2);
    let limits = ServerLimits {
        header_timeout: Duration::from_secs(60),
        write_timeout: deadline,
        ..ServerLimits::default()
    };
    let served = serve(limits).await;
    // A small receive window, so that the server's answers back up quickly.
    let tcp = hostile::tcp_with_receive_buffer(attacker(2), served.server.addr, 4096)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = served.tls.connect(name, tcp).await.unwrap();
    let (mut reader, mut writer) = tokio::io::split(stream);
    // Many pipelined requests, answers never read: far more answers than the buffers hold.
    const REQUESTS: usize = 20_000;
    let pipelined = tokio::spawn(async move {
        let request = b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n";
        for _ in 0..REQUESTS / 100 {
            if writer.write_all(&request.repeat(100)).await.is_err() {
                break;
            }
        }
        let _ = writer.flush().await;
        writer
    });
    tokio::time::sleep(deadline + MARGIN).await;
    // Reading now drains what was sent before the server gave up; without a write deadline
    // every answer would arrive and the kept-alive connection would stay open.
    let received = tokio::time::timeout(MARGIN, hostile::until_closed(&mut reader))
        .await
        .expect("the connection of a client that reads nothing was held");
    let answers = received
        .windows(b"HTTP/1.1 200".len())
        .filter(|w| *w == b"HTTP/1.1 200")
        .count();
    assert!(
        answers < REQUESTS,
        "all {answers} answers were written to a client that read nothing"
    );
    pipelined.abort();
    served.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_64_kib_is_refused_not_buffered() {
    let served = serve(ServerLimits::default()).await;
    let mut stream = hostile::tls_from(&served.tls, FRESH, served.server.addr)
        .await
        .unwrap();
    let head = format!(
        "GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    // The server may close before reading all of it: a failed write is fine.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.flush().await;
    let received = tokio::time::timeout(MARGIN, hostile::until_closed(&mut stream))
        .await
        .expect("an oversized head's connection was held");
    let answer = String::from_utf8_lossy(&received);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431 "),
        "{answer}"
    );
    assert!(!answer.contains("200 OK"), "{answer}");
    served.server.stop().await;
}
