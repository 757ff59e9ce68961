//! Hostile and fresh clients of the real server over TLS, from a chosen loopback address (on
//! Linux the whole of 127.0.0.0/8 is loopback): connections that stall in each phase of a
//! request, and a fresh client's `GET /v1/health`. Shared by the connection tests and
//! `cms-bench --hold`.

#![allow(dead_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The first bytes of an HTTP/2 connection ("prior knowledge", RFC 9113 §3.4), then an empty
/// SETTINGS frame.
pub const HTTP2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// How a held connection stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// TLS, a POST's headers with `Content-Length: 1000`, one byte of body, then nothing.
    SlowBody,
    /// TLS, half a request line, then nothing.
    SlowHeader,
    /// TLS, one complete `GET /v1/health` answered on a kept-alive connection, then nothing.
    Idle,
    /// TLS, the HTTP/2 preface and an empty SETTINGS frame, then nothing.
    Http2,
}

impl Stall {
    /// Every kind of stall.
    pub const ALL: [Stall; 4] = [
        Stall::SlowBody,
        Stall::SlowHeader,
        Stall::Idle,
        Stall::Http2,
    ];
}

/// A TLS connector that trusts only the service's CA (PEM), offering no ALPN protocol.
pub fn connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for der in cms::ca::pem_blocks(ca_pem, "CERTIFICATE") {
        roots
            .add(rustls::pki_types::CertificateDer::from(der))
            .expect("the CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A TCP connection to `server` from the address `local`.
pub async fn tcp_from(local: IpAddr, server: SocketAddr) -> io::Result<TcpStream> {
    let socket = match local {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(local, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A TCP connection to `server` from `local` whose receive buffer is `bytes` (as the kernel
/// rounds it): a client whose window fills quickly when it stops reading.
pub async fn tcp_with_receive_buffer(
    local: IpAddr,
    server: SocketAddr,
    bytes: u32,
) -> io::Result<TcpStream> {
    let socket = match local {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_recv_buffer_size(bytes)?;
    socket.bind(SocketAddr::new(local, 0))?;
    socket.connect(server).await
}

/// A TLS connection to `server` from `local`.
pub async fn tls_from(
    tls: &TlsConnector,
    local: IpAddr,
    server: SocketAddr,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(local, server).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a DNS name");
    tls.connect(name, tcp).await
}

/// Reads one HTTP/1.1 answer whose body is small and whose headers give its length; returns
/// the status and the bytes read.
async fn read_answer<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> io::Result<(u16, Vec<u8>)> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before an answer",
            ));
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                return Ok((status, seen));
            }
        }
    }
}

/// Opens a connection from `local` and leaves it stalled as `stall` says.
pub async fn stall(
    tls: &TlsConnector,
    local: IpAddr,
    server: SocketAddr,
    stall: Stall,
) -> io::Result<TlsStream<TcpStream>> {
    let mut stream = tls_from(tls, local, server).await?;
    match stall {
        Stall::SlowBody => {
            stream
                .write_all(
                    b"POST /v1/auth/challenge HTTP/1.1\r\nHost: localhost\r\n\
                      Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
                )
                .await?
        }
        Stall::SlowHeader => stream.write_all(b"GET /v1/heal").await?,
        Stall::Idle => {
            stream
                .write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await?;
            let (status, _) = read_answer(&mut stream).await?;
            if status != 200 {
                return Err(io::Error::other(format!("health answered {status}")));
            }
        }
        Stall::Http2 => stream.write_all(HTTP2_PREFACE).await?,
    }
    stream.flush().await?;
    Ok(stream)
}

/// Waits until the server closes `stream` (end of stream, or a reset); returns what it sent
/// meanwhile.
pub async fn until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// A fresh client's `GET /v1/health` from `local` on a new connection (TLS included): the
/// status and how long the whole exchange took.
pub async fn health_from(
    tls: &TlsConnector,
    local: IpAddr,
    server: SocketAddr,
) -> io::Result<(u16, Duration)> {
    let started = Instant::now();
    let mut stream = tls_from(tls, local, server).await?;
    stream
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    stream.flush().await?;
    let (status, _) = read_answer(&mut stream).await?;
    Ok((status, started.elapsed()))
}
