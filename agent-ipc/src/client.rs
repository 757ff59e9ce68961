//! The async client of the agent's socket: connects, says `hello`, and offers one typed method
//! per request. Calls on one [`Client`] run one after another; every request carries an id and
//! its reply is matched by that id. Events that arrive while a reply is awaited are kept and
//! handed out by [`Subscription::next_event`].

use crate::endpoint::{self, Stream};
use crate::framing::{encode_line, FrameError, LineReader};
use crate::wire::*;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader, ReadHalf, WriteHalf};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No agent listens on the socket (no socket file, or nothing answers on it).
    #[error("identity-agent is not running (no socket at {}): start it with `identity-agent`", path.display())]
    NotRunning {
        /// The socket path tried.
        path: PathBuf,
    },
    /// The connection failed.
    #[error("talking to identity-agent failed: {0}")]
    Io(#[from] io::Error),
    /// The agent sent something this client does not understand, or speaks another version.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The agent answered with an error (its code and data are kept).
    #[error("{0}")]
    Agent(ErrorObject),
}

impl ClientError {
    /// The agent's error, when it answered one.
    pub fn agent_error(&self) -> Option<&ErrorObject> {
        match self {
            ClientError::Agent(e) => Some(e),
            _ => None,
        }
    }
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => ClientError::Io(e),
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

/// One connection, shared by [`Client`] and [`Subscription`].
#[derive(Debug)]
struct Connection {
    reader: LineReader<BufReader<ReadHalf<Stream>>>,
    writer: WriteHalf<Stream>,
    next_id: u64,
    /// Events read while a reply was awaited, oldest first.
    events: VecDeque<Event>,
}

impl Connection {
    async fn call_raw(&mut self, call: Call) -> Result<serde_json::Value, ClientError> {
        self.next_id += 1;
        let id = self.next_id;
        let line = encode_line(&Request { id, call })?;
        if let Err(e) = self.write(&line).await {
            // The agent may have refused the connection with an error line and closed it
            // before we wrote: that line says more than a broken pipe.
            if let Ok(Some(ServerMessage::Reply(Reply {
                id: None,
                outcome: Outcome::Error(err),
            }))) = self.read_message().await
            {
                return Err(ClientError::Agent(err));
            }
            return Err(e.into());
        }
        loop {
            match self.read_message().await? {
                None => return Err(closed()),
                Some(ServerMessage::Event(event)) => self.events.push_back(event),
                Some(ServerMessage::Reply(reply)) => match (reply.id, reply.outcome) {
                    (Some(got), Outcome::Result(value)) if got == id => return Ok(value),
                    (Some(got), Outcome::Error(err)) if got == id => {
                        return Err(ClientError::Agent(err))
                    }
                    // An error about the connection itself (overflow, shutting down, …).
                    (None, Outcome::Error(err)) => return Err(ClientError::Agent(err)),
                    (other, _) => {
                        return Err(ClientError::Protocol(format!(
                            "reply to request {other:?} while waiting for request {id}"
                        )))
                    }
                },
            }
        }
    }

    async fn write(&mut self, line: &[u8]) -> io::Result<()> {
        self.writer.write_all(line).await?;
        self.writer.flush().await
    }

    async fn read_message(&mut self) -> Result<Option<ServerMessage>, ClientError> {
        let Some(line) = self.reader.next_line().await? else {
            return Ok(None);
        };
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| ClientError::Protocol(format!("unreadable message from the agent: {e}")))
    }
}

fn closed() -> ClientError {
    ClientError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the agent closed the connection",
    ))
}

fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ClientError> {
    serde_json::from_value(value)
        .map_err(|e| ClientError::Protocol(format!("unexpected result from the agent: {e}")))
}

/// A connection to the agent, past `hello`.
#[derive(Debug)]
pub struct Client {
    conn: Connection,
    hello: HelloResult,
}

/// How often, and how long apart, a connect is retried while the agent's backlog is full.
const CONNECT_RETRIES: u32 = 50;
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(20);

impl Client {
    /// Connects to the agent at `path` (see [`crate::default_socket_path`]) and says `hello`
    /// with [`PROTOCOL_VERSION`], naming this client `identity-agent-client`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        Self::connect_as(path, "identity-agent-client").await
    }

    /// Like [`Client::connect`], naming the client `client_name` in `hello` (for the agent's
    /// log).
    pub async fn connect_as(
        path: impl AsRef<Path>,
        client_name: &str,
    ) -> Result<Self, ClientError> {
        let path = path.as_ref();
        let stream = connect_stream(path).await?;
        let (read, writer) = tokio::io::split(stream);
        let mut conn = Connection {
            reader: LineReader::new(BufReader::new(read)),
            writer,
            next_id: 0,
            events: VecDeque::new(),
        };
        let value = conn
            .call_raw(Call::Hello(HelloParams {
                protocol: PROTOCOL_VERSION,
                client: Some(client_name.to_owned()),
            }))
            .await?;
        let hello: HelloResult = typed(value)?;
        if hello.protocol != PROTOCOL_VERSION {
            return Err(ClientError::Protocol(format!(
                "the agent speaks protocol version {}, this client version {PROTOCOL_VERSION}: \
                 update the one that is older",
                hello.protocol
            )));
        }
        Ok(Self { conn, hello })
    }

    /// What the agent said to `hello`: its version and capabilities.
    pub fn hello(&self) -> &HelloResult {
        &self.hello
    }

    /// Sends any call and returns its result as JSON (for scripts that print it).
    pub async fn call_raw(&mut self, call: Call) -> Result<serde_json::Value, ClientError> {
        self.conn.call_raw(call).await
    }

    async fn call<T: DeserializeOwned>(&mut self, call: Call) -> Result<T, ClientError> {
        typed(self.conn.call_raw(call).await?)
    }

    /// The agent, its readers, cards and session.
    pub async fn status(&mut self) -> Result<Status, ClientError> {
        self.call(Call::Status).await
    }

    /// The readers and their cards.
    pub async fn readers(&mut self) -> Result<Vec<ReaderStatus>, ClientError> {
        self.call(Call::Readers).await
    }

    /// Signs in with the card in `reader` (by default the only reader with a PIV card); the
    /// agent asks for the PIN itself.
    pub async fn login(&mut self, reader: Option<String>) -> Result<SessionStatus, ClientError> {
        self.call(Call::Login(LoginParams { reader })).await
    }

    /// Ends the session.
    pub async fn logout(&mut self) -> Result<SessionStatus, ClientError> {
        self.call(Call::Logout).await
    }

    /// The signed-in user's roles.
    pub async fn roles(&mut self) -> Result<Roles, ClientError> {
        self.call(Call::Roles).await
    }

    /// Selects a role, remembering it as the default when `remember` is true.
    pub async fn select_role(
        &mut self,
        role: impl Into<String>,
        remember: bool,
    ) -> Result<SessionStatus, ClientError> {
        self.call(Call::SelectRole(SelectRoleParams {
            role: role.into(),
            remember,
        }))
        .await
    }

    /// The session ticket for relying applications.
    pub async fn ticket(&mut self) -> Result<Ticket, ClientError> {
        self.call(Call::Ticket).await
    }

    /// Renews the signed-in card's certificates; answers when the renewal is done.
    pub async fn renew(&mut self) -> Result<OperationStatus, ClientError> {
        self.call(Call::Renew).await
    }

    /// Repairs the card in `reader` (the one `serial`, if given, as the officer confirmed it);
    /// answers when the repair is done.
    pub async fn repair(
        &mut self,
        reader: Option<String>,
        serial: Option<String>,
    ) -> Result<OperationStatus, ClientError> {
        self.call(Call::Repair(RepairParams { reader, serial }))
            .await
    }

    /// The Smartcard Details of the card in `reader` at the Card Management Service.
    pub async fn card_details(
        &mut self,
        reader: Option<String>,
    ) -> Result<CardDetails, ClientError> {
        self.call(Call::CardDetails(CardParams { reader })).await
    }

    /// Cancels card `serial` at the Card Management Service (RA).
    pub async fn cancel_card(
        &mut self,
        serial: impl Into<String>,
        reason: impl Into<String>,
    ) -> Result<CardDetails, ClientError> {
        self.call(Call::CancelCard(CancelCardParams {
            serial: serial.into(),
            reason: reason.into(),
        }))
        .await
    }

    /// Cancels a running renew or repair.
    pub async fn cancel_operation(
        &mut self,
        operation: impl Into<String>,
    ) -> Result<OperationStatus, ClientError> {
        self.call(Call::CancelOperation(CancelOperationParams {
            operation: operation.into(),
        }))
        .await
    }

    /// Diagnoses the card in `reader`, healing what is safe when `heal` is true.
    pub async fn doctor(
        &mut self,
        reader: Option<String>,
        heal: bool,
    ) -> Result<DoctorReport, ClientError> {
        self.call(Call::Doctor(DoctorParams { reader, heal })).await
    }

    /// Subscribes to events; the connection then belongs to the [`Subscription`].
    pub async fn subscribe(mut self) -> Result<Subscription, ClientError> {
        let _: Subscribed = self.call(Call::Subscribe).await?;
        Ok(Subscription { conn: self.conn })
    }
}

async fn connect_stream(path: &Path) -> Result<Stream, ClientError> {
    let mut tries = 0;
    loop {
        match endpoint::connect(path).await {
            Ok(stream) => return Ok(stream),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ClientError::NotRunning {
                    path: path.to_owned(),
                })
            }
            // The agent's accept backlog is full: it is busy, not gone.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && tries < CONNECT_RETRIES => {
                tries += 1;
                tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
            }
            Err(e) => return Err(ClientError::Io(e)),
        }
    }
}

/// A subscribed connection: events in the order the agent sent them.
#[derive(Debug)]
pub struct Subscription {
    conn: Connection,
}

impl Subscription {
    /// The next event. Fails with [`ClientError::Agent`] when the agent drops this subscriber
    /// (`subscriber_overflow`) or shuts down (`shutting_down`), and with an I/O error when the
    /// connection closes. Cancel-safe.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        if let Some(event) = self.conn.events.pop_front() {
            return Ok(event);
        }
        loop {
            match self.conn.read_message().await? {
                None => return Err(closed()),
                Some(ServerMessage::Event(event)) => return Ok(event),
                Some(ServerMessage::Reply(Reply {
                    id: None,
                    outcome: Outcome::Error(err),
                })) => return Err(ClientError::Agent(err)),
                // A late reply to nothing we wait for: skip it.
                Some(ServerMessage::Reply(_)) => {}
            }
        }
    }

    /// Sends a call on the subscribed connection; events that arrive meanwhile are kept for
    /// [`Subscription::next_event`].
    pub async fn call_raw(&mut self, call: Call) -> Result<serde_json::Value, ClientError> {
        self.conn.call_raw(call).await
    }
}
