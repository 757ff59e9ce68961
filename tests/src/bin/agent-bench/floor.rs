//! The floor the agent's socket figures are read against: a minimal Unix-socket server in this
//! process that answers each request line with the bytes the agent itself answered (captured
//! once, only the `id` changed). What the agent costs is its figure over the floor's, measured in
//! the same minutes on the same machine, which holds where absolute figures do not.

use anyhow::{bail, Context as _, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// The agent's replies to `hello` and `status`, read once over a raw connection.
pub struct Replies {
    hello: Value,
    status: Value,
}

impl Replies {
    /// Asks the agent at `socket` for `hello` and `status` and keeps its answers.
    pub fn capture(socket: &Path) -> Result<Self> {
        let mut agent = RawConnection::hello(socket)?;
        let status = agent.ask(r#"{"id":2,"method":"status"}"#)?;
        Ok(Self {
            hello: agent.hello,
            status,
        })
    }

    /// The reply to `request`: the captured one for its method, under its id.
    fn answer(&self, request: &str) -> String {
        let request: Value = serde_json::from_str(request).unwrap_or_default();
        let mut reply = match request["method"].as_str() {
            Some("hello") => self.hello.clone(),
            _ => self.status.clone(),
        };
        reply["id"] = request["id"].clone();
        let mut line = reply.to_string();
        line.push('\n');
        line
    }
}

/// A connection to the agent in raw lines with blocking reads, `hello` said: nothing of the
/// agent's own client between the benchmark and the socket.
pub struct RawConnection {
    stream: UnixStream,
    /// The answers, line by line.
    pub lines: BufReader<UnixStream>,
    /// The answer to `hello`.
    pub hello: Value,
}

impl RawConnection {
    /// Connects to the agent at `socket` and says `hello`.
    pub fn hello(socket: &Path) -> Result<Self> {
        let stream = UnixStream::connect(socket).context("connecting to the agent")?;
        let lines = BufReader::new(stream.try_clone()?);
        let mut agent = Self {
            stream,
            lines,
            hello: Value::Null,
        };
        agent.hello = agent.ask(&format!(
            r#"{{"id":1,"method":"hello","params":{{"protocol":{}}}}}"#,
            agent_ipc::PROTOCOL_VERSION
        ))?;
        Ok(agent)
    }

    /// Sends the request `line` and reads its answer, which must be a result.
    pub fn ask(&mut self, line: &str) -> Result<Value> {
        writeln!(self.stream, "{line}")?;
        let mut reply = String::new();
        self.lines.read_line(&mut reply)?;
        let value: Value = serde_json::from_str(&reply)?;
        if value.get("result").is_none() {
            bail!("the agent refused {line}: {reply}");
        }
        Ok(value)
    }
}

/// The floor server, serving on its own thread and runtime until the process ends.
pub struct Floor {
    /// Where it listens.
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Floor {
    /// Starts a floor server answering with `replies`, one task per connection on a runtime of
    /// two worker threads, one per CPU of the machine the figures come from (the agent itself
    /// runs on one thread; its figures over these show what that costs).
    pub fn start(replies: Replies) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("floor.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket)?;
        listener.set_nonblocking(true)?;
        let replies = std::sync::Arc::new(replies);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the floor server");
            runtime.block_on(async move {
                let listener =
                    tokio::net::UnixListener::from_std(listener).expect("the floor's listener");
                while let Ok((stream, _)) = listener.accept().await {
                    let replies = replies.clone();
                    tokio::spawn(async move {
                        let (read, mut write) = stream.into_split();
                        let mut lines = tokio::io::BufReader::new(read).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if write
                                .write_all(replies.answer(&line).as_bytes())
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                    });
                }
            });
        });
        Ok(Self { socket, _dir: dir })
    }
}
