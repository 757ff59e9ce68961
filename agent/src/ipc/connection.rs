//! One connection: a reader that parses and answers requests, and a writer task that owns the
//! transport's write side and sends replies and events through one bounded queue. The transport
//! is the socket or the web bridge's WebSocket (`transport`).
//!
//! Calls for the session owner run as tasks of their own, so a `login` waiting on the PIN
//! prompt holds up neither `status` on the same connection nor its events; replies carry the
//! request's id, so their order does not matter.

use super::answer::{answer, ask_owner, served, shutting_down, to_json};
use super::request::{parse_line, Admission, Refusal};
use super::transport::{Inbound, LineSink, LineSource};
use super::{AgentLink, ServerLimits};
use agent_ipc::{
    encode_line, Call, ErrorCode, ErrorObject, Event, HelloParams, HelloResult, Outcome, Reply,
    Subscribed, PROTOCOL_VERSION,
};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Lines waiting for the writer. When it is full, the reader stops reading until the client
/// reads its replies; a client that stops reading altogether is dropped after [`WRITE_STALL`].
const WRITER_QUEUE: usize = 256;
/// Calls of one connection running at once (the 17th is answered `busy`); `status` and the
/// other calls the server answers itself never count.
const MAX_IN_FLIGHT: usize = 16;
/// A write that makes no progress for this long drops the connection.
const WRITE_STALL: Duration = Duration::from_secs(10);
/// How long the farewell `shutting_down` line may take.
const FAREWELL: Duration = Duration::from_millis(200);

/// What the writer sends.
#[derive(Debug)]
enum Outgoing {
    /// A reply, encoded.
    Line(Vec<u8>),
    /// The reply to `subscribe`; events follow it from `events`.
    Subscribe {
        line: Vec<u8>,
        events: broadcast::Receiver<Event>,
    },
}

/// Where replies go: the writer's queue, and the token of the connection (a reply waiting for
/// room gives up when the connection is dropped).
#[derive(Debug, Clone)]
struct ReplySink {
    queue: mpsc::Sender<Outgoing>,
    conn: CancellationToken,
}

impl ReplySink {
    /// Queues `message`, waiting for room: a burst of requests is answered in full, and the
    /// writer's stall limit drops a client that never reads.
    async fn send(&self, message: Outgoing) {
        tokio::select! {
            _ = self.conn.cancelled() => {}
            // An error means the writer has ended; so will this connection.
            _ = self.queue.send(message) => {}
        }
    }

    async fn reply(&self, id: Option<u64>, outcome: Result<Value, ErrorObject>) {
        let reply = Reply {
            id,
            outcome: match outcome {
                Ok(value) => Outcome::Result(value),
                Err(error) => Outcome::Error(error),
            },
        };
        self.send(Outgoing::Line(encode_reply(&reply))).await;
    }

    async fn error(&self, id: Option<u64>, code: ErrorCode, message: impl Into<String>) {
        self.reply(id, Err(ErrorObject::new(code, message))).await;
    }
}

/// `reply` as a line; a result too large for the cap becomes an `internal` error.
fn encode_reply(reply: &Reply) -> Vec<u8> {
    match encode_line(reply) {
        Ok(line) => line,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a reply");
            let fallback = Reply {
                id: reply.id,
                outcome: Outcome::Error(ErrorObject::new(
                    ErrorCode::Internal,
                    "the agent could not encode its reply",
                )),
            };
            // A short, fixed reply always encodes.
            encode_line(&fallback).unwrap_or_default()
        }
    }
}

/// The protocol state of one connection.
struct Connection {
    link: AgentLink,
    sink: ReplySink,
    hello_done: bool,
    subscribed: bool,
    in_flight: JoinSet<()>,
    admission: Box<dyn Admission>,
}

/// Serves one connection, read from `source` and written to `sink`, until the client closes
/// it, it misbehaves, or `shutdown`. `admission` says which methods it serves.
pub async fn run(
    mut source: impl LineSource,
    sink: impl LineSink,
    link: AgentLink,
    limits: &ServerLimits,
    admission: Box<dyn Admission>,
    shutdown: CancellationToken,
) {
    let conn = shutdown.child_token();
    let (queue, queued) = mpsc::channel(WRITER_QUEUE);
    let writer = tokio::spawn(write_loop(sink, queued, conn.clone(), shutdown.clone()));
    let mut state = Connection {
        link,
        sink: ReplySink {
            queue,
            conn: conn.clone(),
        },
        hello_done: false,
        subscribed: false,
        in_flight: JoinSet::new(),
        admission,
    };
    let mut input_open = true;
    let accepted = Instant::now();
    let mut last_active = accepted;
    loop {
        // Before hello: a fixed deadline from the accept. After: idle time, counted only while
        // the connection is not subscribed and has no call running.
        let deadline = if !state.hello_done {
            (!limits.hello_timeout.is_zero()).then(|| accepted + limits.hello_timeout)
        } else if !state.subscribed && state.in_flight.is_empty() && !limits.idle_timeout.is_zero()
        {
            Some(last_active + limits.idle_timeout)
        } else {
            None
        };
        tokio::select! {
            _ = conn.cancelled() => break,
            _ = sleep_until(deadline), if input_open => {
                if state.hello_done {
                    // Idle: closed without a line (the client has nothing waiting).
                    tracing::debug!("closing an idle connection");
                } else {
                    tracing::debug!("closing a connection that did not say hello");
                    state.sink.error(None, ErrorCode::HelloRequired, format!(
                        "no hello within {} s of connecting; the connection is closed",
                        limits.hello_timeout.as_secs()
                    )).await;
                }
                break;
            }
            Some(_) = state.in_flight.join_next(), if !state.in_flight.is_empty() => {
                last_active = Instant::now();
            }
            inbound = source.next(), if input_open => match inbound {
                Inbound::Line(line) => {
                    last_active = Instant::now();
                    state.handle_line(&line).await
                }
                Inbound::Unreadable(error) => state.reply(None, Err(error)).await,
                Inbound::End => input_open = false,
                Inbound::Failed => break,
            },
            // The client has finished sending and every call is answered.
            _ = std::future::ready(()), if !input_open && state.in_flight.is_empty() => break,
        }
    }
    // Pending calls are abandoned when the connection goes; the owner sees the reply dropped.
    state.in_flight.abort_all();
    // Dropping the queue lets the writer finish what is queued and end.
    drop(state);
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "connection writer failed");
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Connection {
    async fn handle_line(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        match parse_line(line, self.hello_done, self.admission.as_mut()) {
            Ok((id, call)) => self.dispatch(id, call).await,
            Err(Refusal { id, error }) => self.reply(id, Err(error)).await,
        }
    }

    async fn reply(&self, id: Option<u64>, outcome: Result<Value, ErrorObject>) {
        self.sink.reply(id, outcome).await;
    }

    async fn dispatch(&mut self, id: u64, call: Call) {
        match call {
            Call::Hello(params) => {
                let outcome = self.hello(params);
                self.reply(Some(id), outcome).await;
            }
            Call::Status | Call::Readers => {
                let outcome = answer(&self.link, call).await;
                self.reply(Some(id), outcome).await;
            }
            Call::Subscribe => {
                let outcome = to_json(&Subscribed { subscribed: true });
                if self.subscribed {
                    return self.reply(Some(id), outcome).await;
                }
                let reply = Reply {
                    id: Some(id),
                    outcome: match outcome {
                        Ok(value) => Outcome::Result(value),
                        Err(error) => Outcome::Error(error),
                    },
                };
                self.subscribed = true;
                self.sink
                    .send(Outgoing::Subscribe {
                        line: encode_reply(&reply),
                        events: self.link.events.subscribe(),
                    })
                    .await;
            }
            call => self.forward(id, call).await,
        }
    }

    fn hello(&mut self, params: HelloParams) -> Result<Value, ErrorObject> {
        if params.protocol != PROTOCOL_VERSION {
            return Err(ErrorObject::new(
                ErrorCode::ProtocolMismatch,
                format!(
                    "this agent speaks protocol version {PROTOCOL_VERSION}, the client version \
                     {}: update the one that is older",
                    params.protocol
                ),
            )
            .with_data(serde_json::json!({
                "agent": PROTOCOL_VERSION,
                "client": params.protocol,
            })));
        }
        let client: Option<String> = params.client.map(|c| c.chars().take(64).collect());
        tracing::debug!(client = ?client, "client said hello");
        self.hello_done = true;
        to_json(&HelloResult {
            protocol: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            capabilities: self.link.capabilities.clone(),
        })
    }

    /// Hands `call` to the session owner in a task of its own and sends the answer back.
    async fn forward(&mut self, id: u64, call: Call) {
        if let Err(error) = served(&self.link, call.method()) {
            return self.reply(Some(id), Err(error)).await;
        }
        // Calls that have answered but are not reaped yet do not count as pending.
        while self.in_flight.try_join_next().is_some() {}
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            return self
                .sink
                .error(
                    Some(id),
                    ErrorCode::Busy,
                    format!("{MAX_IN_FLIGHT} requests of this connection are still running"),
                )
                .await;
        }
        let calls = self.link.calls.clone();
        let sink = self.sink.clone();
        self.in_flight.spawn(async move {
            let outcome = ask_owner(calls, call).await;
            sink.reply(Some(id), outcome).await;
        });
    }
}

/// Waits for the next event, or forever when not subscribed.
async fn next_event(events: &mut Option<broadcast::Receiver<Event>>) -> Result<Event, RecvError> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// How a write went.
enum Written {
    Done,
    /// The connection is being dropped (or shut down) mid-line.
    Cancelled,
    Failed,
}

async fn write_line(w: &mut impl LineSink, line: &[u8], conn: &CancellationToken) -> Written {
    let write = w.send(line);
    tokio::select! {
        _ = conn.cancelled() => Written::Cancelled,
        written = tokio::time::timeout(WRITE_STALL, write) => match written {
            Ok(Ok(())) => Written::Done,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "connection write failed");
                Written::Failed
            }
            Err(_) => {
                tracing::warn!("a client stopped reading; dropping it");
                Written::Failed
            }
        },
    }
}

/// The writer: replies from the queue and, after `subscribe`, events, one line each.
async fn write_loop(
    mut w: impl LineSink,
    mut queue: mpsc::Receiver<Outgoing>,
    conn: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut events: Option<broadcast::Receiver<Event>> = None;
    let mut torn = false;
    loop {
        let line = tokio::select! {
            biased;
            _ = conn.cancelled() => break,
            message = queue.recv() => match message {
                None => break,
                Some(Outgoing::Line(line)) => line,
                Some(Outgoing::Subscribe { line, events: receiver }) => {
                    events = Some(receiver);
                    line
                }
            },
            event = next_event(&mut events), if events.is_some() => match event {
                Ok(event) => match encode_line(&event) {
                    Ok(line) => line,
                    Err(e) => {
                        tracing::error!(event = event.name(), error = %e, "cannot encode an event");
                        continue;
                    }
                },
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a subscriber fell behind; dropping it");
                    let reply = Reply {
                        id: None,
                        outcome: Outcome::Error(
                            ErrorObject::new(
                                ErrorCode::SubscriberOverflow,
                                format!(
                                    "this subscriber read events too slowly and missed {missed}; \
                                     reconnect and subscribe again"
                                ),
                            )
                            .with_data(serde_json::json!({ "missed": missed })),
                        ),
                    };
                    let _ = write_line(&mut w, &encode_reply(&reply), &conn).await;
                    break;
                }
                Err(RecvError::Closed) => {
                    events = None;
                    continue;
                }
            },
        };
        match write_line(&mut w, &line, &conn).await {
            Written::Done => {}
            Written::Cancelled => {
                torn = true;
                break;
            }
            Written::Failed => break,
        }
    }
    conn.cancel();
    if shutdown.is_cancelled() && !torn {
        // Events published before the server was stopped (the session's end among them) go
        // out before the farewell.
        let mut last_lines = Vec::new();
        if let Some(receiver) = events.as_mut() {
            while let Ok(event) = receiver.try_recv() {
                if let Ok(line) = encode_line(&event) {
                    last_lines.push(line);
                }
            }
        }
        let reply = Reply {
            id: None,
            outcome: Outcome::Error(shutting_down()),
        };
        last_lines.push(encode_reply(&reply));
        let farewell = async {
            for line in &last_lines {
                w.send(line).await?;
            }
            std::io::Result::Ok(())
        };
        let _ = tokio::time::timeout(FAREWELL, farewell).await;
    }
    // No half-close: the socket closes as a whole when `run` drops the read half too, right
    // after this task ends.
}
