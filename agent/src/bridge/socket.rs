//! `GET /v1/socket`: the socket API over a WebSocket, one text message a line. The messages go
//! through the same connection code as the local socket's lines (`crate::ipc`), with the
//! bridge's methods and rate.

use super::admission::SocketAdmission;
use super::limits::{HELLO_TIMEOUT, MAX_BODY_BYTES};
use super::{Bridge, Client};
use crate::ipc::{self, Inbound, LineSink, LineSource, ServerLimits};
use agent_ipc::{ErrorCode, ErrorObject};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use std::sync::Arc;

/// Upgrades to the WebSocket (the gate has checked the host and origin) and serves it.
pub(super) async fn upgrade(
    State(bridge): State<Arc<Bridge>>,
    Extension(client): Extension<Client>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // The bridge's shutdown waits for the WebSocket as for any connection.
    let running = bridge.connections.token();
    upgrade
        .max_message_size(MAX_BODY_BYTES)
        .max_frame_size(MAX_BODY_BYTES)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "bridge WebSocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            serve(socket, &bridge, client).await;
            drop(running);
        })
}

/// Serves one WebSocket until either side closes it or the agent shuts down.
async fn serve(socket: WebSocket, bridge: &Bridge, client: Client) {
    let (sink, stream) = socket.split();
    let limits = ServerLimits {
        max_connections: bridge.max_connections,
        hello_timeout: HELLO_TIMEOUT,
        idle_timeout: bridge.idle_timeout,
    };
    let admission = SocketAdmission {
        bucket: client.bucket.clone(),
    };
    ipc::serve_connection(
        WebSocketSource {
            stream,
            ended: false,
        },
        WebSocketSink(sink),
        bridge.link.clone(),
        &limits,
        Box::new(admission),
        bridge.shutdown.clone(),
    )
    .await;
    // The connection's place under the cap is given back with `client`.
    drop(client);
}

/// The WebSocket's read side: text messages are lines.
struct WebSocketSource {
    stream: SplitStream<WebSocket>,
    /// A message over the cap was reported; the socket cannot go on after it.
    ended: bool,
}

impl LineSource for WebSocketSource {
    async fn next(&mut self) -> Inbound {
        if self.ended {
            return Inbound::End;
        }
        loop {
            return match self.stream.next().await {
                Some(Ok(Message::Text(text))) => Inbound::Line(text.as_str().to_owned()),
                Some(Ok(Message::Binary(_))) => Inbound::Unreadable(ErrorObject::new(
                    ErrorCode::BadRequest,
                    "binary messages are not served: send each request as one text message",
                )),
                // Pings are answered by the WebSocket itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None => Inbound::End,
                Some(Err(e)) if too_large(&e) => {
                    self.ended = true;
                    Inbound::Unreadable(ErrorObject::new(
                        ErrorCode::MessageTooLarge,
                        format!(
                            "message longer than {MAX_BODY_BYTES} bytes; the connection is closed"
                        ),
                    ))
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "bridge WebSocket read failed");
                    Inbound::Failed
                }
            };
        }
    }
}

/// Whether `error` is a message or frame over the cap.
fn too_large(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The WebSocket's write side: each line a text message, without its newline.
struct WebSocketSink(SplitSink<WebSocket, Message>);

impl LineSink for WebSocketSink {
    async fn send(&mut self, line: &[u8]) -> std::io::Result<()> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let text = String::from_utf8(line.to_vec())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        self.0
            .send(Message::Text(text.into()))
            .await
            .map_err(std::io::Error::other)
    }
}
