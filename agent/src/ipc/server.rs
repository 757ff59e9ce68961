//! The accept loop: admits connections of our own user, up to the cap, and shuts down cleanly.

use super::endpoint::{self, Peer, Stream};
use super::{connection, transport, AdmitAll, AgentLink, Listener, ServerLimits};
use agent_ipc::{encode_line, ErrorCode, ErrorObject, Outcome, Reply};
use interprocess::local_socket::traits::tokio::Listener as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The first pause after a failed accept; it doubles up to [`MAX_ACCEPT_BACKOFF`].
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// When a client leaves and at most this many are still connected, the heap's free pages go
/// back to the system ([`crate::heap::give_back`]).
const QUIET_CLIENTS: usize = 4;

/// Serves connections until `shutdown` is cancelled, then closes every connection and returns.
pub async fn serve(
    mut listener: Listener,
    link: AgentLink,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let accepting = match listener.accepting() {
        Some(Ok(accepting)) => accepting,
        Some(Err(e)) => {
            tracing::error!(error = %e, "cannot serve the socket");
            return;
        }
        None => return,
    };
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    let mut backoff = FIRST_ACCEPT_BACKOFF;
    tracing::info!(path = %listener.path().display(), "serving the socket");

    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = accepting.accept() => accepted,
        };
        let stream = match accepted {
            Ok(stream) => {
                backoff = FIRST_ACCEPT_BACKOFF;
                stream
            }
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        match endpoint::peer(&stream) {
            Ok(Peer::ThisUser) => {}
            Ok(Peer::Stranger(peer)) => {
                tracing::warn!(%peer, "refused a connection of another user");
                refuse(
                    stream,
                    ErrorObject::new(
                        ErrorCode::PermissionDenied,
                        "this agent serves only the user it runs for",
                    ),
                )
                .await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the peer's credentials; refused");
                refuse(
                    stream,
                    ErrorObject::new(
                        ErrorCode::PermissionDenied,
                        "the agent cannot tell who you are",
                    ),
                )
                .await;
                continue;
            }
        }
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "connection cap reached; refused"
            );
            refuse(
                stream,
                ErrorObject::new(
                    ErrorCode::TooManyConnections,
                    format!(
                        "the agent already serves {} connections; try again later",
                        limits.max_connections
                    ),
                )
                .with_data(serde_json::json!({ "max_connections": limits.max_connections })),
            )
            .await;
            continue;
        };
        let link = link.clone();
        let shutdown = shutdown.clone();
        let limits = limits.clone();
        let permits = Arc::clone(&permits);
        tracker.spawn(async move {
            let (source, sink) = transport::socket(stream);
            connection::run(source, sink, link, &limits, Box::new(AdmitAll), shutdown).await;
            drop(permit);
            if limits.max_connections - permits.available_permits() <= QUIET_CLIENTS {
                crate::heap::give_back();
            }
        });
    }

    // Stop accepting first, so new clients hear "not running" rather than wait.
    drop(accepting);
    listener.close();
    tracker.close();
    tracker.wait().await;
    tracing::info!("socket server stopped");
}

/// Writes one error line on a fresh connection and closes it. A fresh socket's buffer is
/// empty, so the write goes through on its first try; it is never waited for (a zero timeout
/// polls it once): if it cannot go at once, the line is dropped.
async fn refuse(stream: Stream, error: ErrorObject) {
    let reply = Reply {
        id: None,
        outcome: Outcome::Error(error),
    };
    let Ok(line) = encode_line(&reply) else {
        return;
    };
    let mut stream = stream;
    let _ = tokio::time::timeout(Duration::ZERO, stream.write_all(&line)).await;
}
