//! Clients of the agent's web bridge for the tests and the benchmark: raw HTTP/1.1 over a TCP
//! stream (so every header sent and received is the test's to choose and see) and a WebSocket.

use anyhow::{bail, Context as _, Result};
use futures_util::{SinkExt as _, StreamExt as _};
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The portal's origin in the tests.
pub const PORTAL: &str = "https://portal.example.nhs.uk";

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The agent's `[bridge]` section for `port`, allowing [`PORTAL`], with `extra` lines.
pub fn bridge_config(port: u16, extra: &str) -> String {
    format!("[bridge]\nport = {port}\nallowed_origins = [{PORTAL:?}]\n{extra}\n")
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The headers, names in lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every header whose name starts with `access-control-`.
    pub fn cors_headers(&self) -> Vec<&(String, String)> {
        self.headers
            .iter()
            .filter(|(n, _)| n.starts_with("access-control-"))
            .collect()
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request: method, path and headers; `Host: 127.0.0.1:PORT` and `Origin: PORTAL` unless
/// replaced (an empty value leaves the header out).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// `GET`, `POST`, `OPTIONS`.
    pub method: &'static str,
    /// The path.
    pub path: String,
    /// The `Host` header (`None`: `127.0.0.1:PORT`).
    pub host: Option<String>,
    /// The `Origin` header (`None`: no header).
    pub origin: Option<String>,
    /// More headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// `method path` from the portal.
    pub fn new(method: &'static str, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            host: None,
            origin: Some(PORTAL.to_owned()),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `POST /v1/call/{method}` with `params` as the body.
    pub fn call(method: &str, params: &serde_json::Value) -> Self {
        let mut request = Self::new("POST", format!("/v1/call/{method}"));
        request.body = params.to_string().into_bytes();
        request
            .headers
            .push(("content-type".into(), "application/json".into()));
        request
    }

    /// The same request from `origin` (`None`: without an `Origin`).
    pub fn from_origin(mut self, origin: Option<&str>) -> Self {
        self.origin = origin.map(str::to_owned);
        self
    }

    /// The same request with another `Host`.
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// The same request with header `name: value`.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The request's bytes for the bridge on `port`.
    pub fn encode(&self, port: u16) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        let host = self.host.clone().unwrap_or(format!("127.0.0.1:{port}"));
        head.push_str(&format!("host: {host}\r\n"));
        if let Some(origin) = &self.origin {
            head.push_str(&format!("origin: {origin}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() || self.method == "POST" {
            head.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// A keep-alive HTTP/1.1 connection to the bridge.
#[derive(Debug)]
pub struct HttpConnection {
    port: u16,
    stream: BufReader<TcpStream>,
}

/// How long an answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

impl HttpConnection {
    /// Connects to the bridge on `port`.
    pub async fn connect(port: u16) -> Result<Self> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            port,
            stream: BufReader::new(stream),
        })
    }

    /// Sends `request` and reads its answer.
    pub async fn send(&mut self, request: &HttpRequest) -> Result<HttpAnswer> {
        self.send_raw(&request.encode(self.port)).await
    }

    /// Sends `bytes` as they are and reads one answer.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<HttpAnswer> {
        self.stream.get_mut().write_all(bytes).await?;
        self.answer().await
    }

    /// Reads one answer.
    pub async fn answer(&mut self) -> Result<HttpAnswer> {
        tokio::time::timeout(ANSWER_TIMEOUT, self.read_answer())
            .await
            .context("no answer from the bridge")?
    }

    async fn read_answer(&mut self) -> Result<HttpAnswer> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            bail!("the bridge closed the connection");
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header
                .split_once(':')
                .with_context(|| format!("bad header {header:?}"))?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse::<usize>())
            .transpose()?
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(HttpAnswer {
            status,
            headers,
            body,
        })
    }

    /// Whether the bridge has closed the connection (waits up to `within`).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(within, self.stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

/// `request` on a connection of its own.
pub async fn http_once(port: u16, request: &HttpRequest) -> Result<HttpAnswer> {
    HttpConnection::connect(port).await?.send(request).await
}

/// A WebSocket to the bridge.
pub type BridgeSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `/v1/socket` on `port` from `origin` (without an `Origin` when `None`).
pub async fn websocket(port: u16, origin: Option<&str>) -> Result<BridgeSocket> {
    let mut request = format!("ws://127.0.0.1:{port}/v1/socket").into_client_request()?;
    let headers = request.headers_mut();
    headers.remove("origin");
    if let Some(origin) = origin {
        headers.insert("origin", HeaderValue::from_str(origin)?);
    }
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(socket)
}

/// Sends `message` as one text message and returns the next text message that is not an
/// event, as JSON.
pub async fn ws_call(
    socket: &mut BridgeSocket,
    message: &serde_json::Value,
) -> Result<serde_json::Value> {
    socket.send(Message::text(message.to_string())).await?;
    loop {
        let next = ws_next(socket).await?;
        if next.get("event").is_none() {
            return Ok(next);
        }
    }
}

/// The next text message, as JSON.
pub async fn ws_next(socket: &mut BridgeSocket) -> Result<serde_json::Value> {
    loop {
        let message = tokio::time::timeout(ANSWER_TIMEOUT, socket.next())
            .await
            .context("no message from the bridge")?
            .context("the bridge closed the WebSocket")??;
        match message {
            Message::Text(text) => {
                return serde_json::from_str(text.as_str())
                    .with_context(|| format!("not JSON: {text}"))
            }
            Message::Close(frame) => bail!("the bridge closed the WebSocket: {frame:?}"),
            _ => continue,
        }
    }
}

/// `hello` on a new WebSocket.
pub async fn ws_hello(socket: &mut BridgeSocket) -> Result<serde_json::Value> {
    ws_call(
        socket,
        &serde_json::json!({
            "id": 1,
            "method": "hello",
            "params": { "protocol": agent_ipc::PROTOCOL_VERSION, "client": "bridge-test" }
        }),
    )
    .await
}
