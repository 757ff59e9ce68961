//! The web bridge: the socket API over HTTP and a WebSocket on `127.0.0.1`, for the pages of the
//! organisation's web portal (the contract is in `agent-ipc/PROTOCOL.md`, "Web bridge"). Off
//! unless `[bridge] port` is set; only the loopback address can be served.
//!
//! It serves the same session owner as the socket, through the same [`AgentLink`]:
//! `connection` serves one TCP connection, `http` routes its requests through the gate
//! (`guard`: host, origin, preflight) to the endpoints, `socket` serves the WebSocket through
//! the socket's own connection code, `admission` and `limits` say what one client may do.

use crate::ipc::AgentLink;
use anyhow::Context as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod admission;
mod config;
mod connection;
mod guard;
mod http;
mod limits;
mod socket;

pub use config::{AllowedOrigin, BridgeConfig};

use admission::SharedBucket;
use limits::TokenBucket;

/// The first pause after a failed accept; it doubles up to [`MAX_ACCEPT_BACKOFF`].
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// What every connection of the bridge shares.
struct Bridge {
    port: u16,
    allowed_origins: Vec<AllowedOrigin>,
    link: AgentLink,
    max_connections: usize,
    idle_timeout: Duration,
    shutdown: CancellationToken,
    /// Every connection, WebSockets included: shutdown waits for them.
    connections: TaskTracker,
}

/// One client connection's share: its rate and its place under the connection cap (held
/// until its last request, or its WebSocket, is done).
#[derive(Debug, Clone)]
struct Client {
    bucket: SharedBucket,
    _place: Arc<OwnedSemaphorePermit>,
}

/// Binds `127.0.0.1:port` when the bridge is on (`None` when it is off).
pub async fn bind(config: &BridgeConfig) -> anyhow::Result<Option<TcpListener>> {
    if !config.enabled() {
        return Ok(None);
    }
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, config.port));
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the web bridge to {address}"))?;
    Ok(Some(listener))
}

/// Serves the bridge on `listener` until `shutdown` is cancelled, then closes every
/// connection and returns.
pub async fn serve(
    listener: TcpListener,
    config: BridgeConfig,
    link: AgentLink,
    shutdown: CancellationToken,
) {
    let bridge = Arc::new(Bridge {
        port: listener.local_addr().map_or(config.port, |a| a.port()),
        allowed_origins: config.allowed_origins.clone(),
        link,
        max_connections: config.max_connections,
        idle_timeout: config.idle_timeout(),
        shutdown: shutdown.clone(),
        connections: TaskTracker::new(),
    });
    if bridge.allowed_origins.is_empty() {
        tracing::warn!("the web bridge has no allowed origins: every page is refused");
    }
    tracing::info!(
        port = bridge.port,
        origins = ?config.allowed_origins.iter().map(AllowedOrigin::as_str).collect::<Vec<_>>(),
        "serving the web bridge on 127.0.0.1"
    );
    let router = http::router(Arc::clone(&bridge));
    let places = Arc::new(Semaphore::new(config.max_connections));
    let mut backoff = FIRST_ACCEPT_BACKOFF;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = FIRST_ACCEPT_BACKOFF;
                stream
            }
            Err(e) => {
                tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, "bridge accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
            tracing::warn!(
                max = config.max_connections,
                "web bridge connection cap reached; refused"
            );
            refuse(stream).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = Client {
            bucket: Arc::new(Mutex::new(TokenBucket::new(
                config.requests_per_second,
                config.burst,
                Instant::now(),
            ))),
            _place: Arc::new(place),
        };
        bridge.connections.spawn(connection::serve(
            stream,
            router.clone(),
            client,
            bridge.idle_timeout,
            shutdown.clone(),
        ));
    }
    drop(listener);
    bridge.connections.close();
    bridge.connections.wait().await;
    tracing::info!("web bridge stopped");
}

/// Answers a connection over the cap with a 503 and closes it. The write is tried once and
/// never waited for.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = "too many connections to the identity agent; try again later";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::ZERO, stream.write_all(answer.as_bytes())).await;
}
