//! Asking the holder for a PIN through a `pinentry` program (the Assuan protocol). The
//! program gets only an allow-list of environment variables; display variables the agent lacks
//! are taken from the systemd user manager at prompt time (`user_manager.rs`).
//!
//! Pinentry's own timeout (`SETTIMEOUT`) is meant to end an unanswered prompt; the agent's hard
//! limit comes a few seconds later. However a prompt ends — answered, timed out or abandoned
//! by its caller (the future dropped) — the program is asked to go (`BYE`, then its standard
//! input closed), terminated (SIGTERM, which curses programs catch) if it has not gone after a
//! grace period, and killed only as a last resort, so a terminal pinentry can put the terminal
//! back the way it found it.

use crate::config::PinentryConfig;
use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use zeroize::{Zeroize, Zeroizing};

/// What the prompt says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinPrompt {
    /// The window title.
    pub title: String,
    /// The description (names the holder or the card serial, and the tries left).
    pub description: String,
    /// The prompt beside the entry (`PIN:`).
    pub prompt: String,
    /// An error shown above it (after a wrong PIN, or a PIN breaking the policy).
    pub error: Option<String>,
    /// Ask twice and have pinentry check both match (for a new PIN); the text of the
    /// second prompt. Not every pinentry does: [`PinEntry::repeated`] says whether this one
    /// did.
    pub repeat: Option<String>,
}

/// A PIN entered, and whether pinentry checked its repeat.
pub struct PinEntry {
    /// The PIN.
    pub pin: Zeroizing<String>,
    /// The prompt asked for a repeat and pinentry said it asked twice and both matched (the
    /// status `S PIN_REPEATED` before the PIN). Some pinentries accept `SETREPEAT` and ask
    /// once: then this is false, and checking the PIN twice is the caller's job.
    pub repeated: bool,
}

impl std::fmt::Debug for PinEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinEntry")
            .field("pin", &"<withheld>")
            .field("repeated", &self.repeated)
            .finish()
    }
}

/// Why no PIN came back.
#[derive(Debug, thiserror::Error)]
pub enum PinentryError {
    /// The holder cancelled (or closed the window).
    #[error("the PIN prompt was cancelled")]
    Cancelled,
    /// No answer before the timeout.
    #[error("no PIN was entered in time")]
    TimedOut,
    /// The program could not be run or broke the protocol.
    #[error("the PIN prompt failed: {0}")]
    Failed(String),
}

/// The environment variables a pinentry program may see; everything else is withheld.
pub const ENV_ALLOW_LIST: &[&str] = &[
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_RUNTIME_DIR",
    "XDG_SESSION_TYPE",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TERM",
    "PATH",
    "HOME",
    "PINENTRY_USER_DATA",
    "GTK_IM_MODULE",
    "QT_IM_MODULE",
];

/// The error code (low 16 bits of an Assuan `ERR`) of a cancelled operation.
const GPG_ERR_CANCELED: u32 = 99;
/// The error code of an operation cancelled by the user on the whole.
const GPG_ERR_FULLY_CANCELED: u32 = 198;
/// The error code of pinentry's own timeout.
const GPG_ERR_TIMEOUT: u32 = 62;
/// The longest line Assuan allows, without the line feed.
const MAX_LINE: usize = 1000;
/// How long after pinentry's own timeout the agent stops waiting for an answer.
pub const HARD_LIMIT_GRACE: Duration = Duration::from_secs(5);
/// How long a pinentry asked to go (`BYE`, end of input) may take before it is terminated.
pub const FAREWELL: Duration = Duration::from_millis(1500);
/// How long a terminated pinentry may take before it is killed.
const TERMINATION: Duration = Duration::from_millis(500);

/// Runs the pinentry program of `config` and returns the PIN entered. A prompt with `repeat`
/// needs [`ask_pin_entry`], which says whether pinentry checked the repeat.
pub async fn ask_pin(
    config: &PinentryConfig,
    prompt: &PinPrompt,
) -> Result<Zeroizing<String>, PinentryError> {
    ask_pin_entry(config, prompt).await.map(|entry| entry.pin)
}

/// Runs the pinentry program of `config` and returns the PIN entered, with whether pinentry
/// confirmed the repeat the prompt asked for.
///
/// The answer is awaited until pinentry's own timeout plus [`HARD_LIMIT_GRACE`]. Dropping the
/// future (a caller cancelling) leaves a task behind that asks the program to go and kills it
/// only if it does not.
pub async fn ask_pin_entry(
    config: &PinentryConfig,
    prompt: &PinPrompt,
) -> Result<PinEntry, PinentryError> {
    let commands = commands(config, prompt)?;
    let program = config.program.display().to_string();
    let mut command = Command::new(&config.program);
    command
        .args(&config.args)
        .env_clear()
        .envs(prompt_environment().await)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| {
        PinentryError::Failed(format!("cannot run pinentry program {program}: {e}"))
    })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(PinentryError::Failed(format!(
            "pinentry program {program} has no pipes"
        )));
    };
    tracing::debug!(program = %program, pid = child.id(), "asking for a PIN");
    let conversation = Conversation {
        stdin,
        stdout: BufReader::new(stdout),
        line: Zeroizing::new(Vec::with_capacity(2 * MAX_LINE)),
    };
    let mut open = OpenPrompt(Some((conversation, child)));
    let result = {
        let Some((conversation, _)) = open.0.as_mut() else {
            unreachable!("the prompt is open");
        };
        let talk = conversation.ask(&commands, prompt.repeat.is_some());
        match config.timeout() {
            limit if limit.is_zero() => talk.await,
            limit => tokio::time::timeout(limit.saturating_add(HARD_LIMIT_GRACE), talk)
                .await
                .unwrap_or(Err(PinentryError::TimedOut)),
        }
    };
    if let Some((conversation, child)) = open.0.take() {
        // In a task of its own, so a caller giving up now does not cut the farewell short.
        let _ = tokio::spawn(close(conversation, child)).await;
    }
    match &result {
        Ok(entry) => {
            tracing::debug!(program = %program, repeated = entry.repeated, "a PIN was entered")
        }
        Err(e) => tracing::info!(program = %program, error = %e, "no PIN was entered"),
    }
    result.map_err(|e| match e {
        PinentryError::Failed(why) => PinentryError::Failed(format!("{program}: {why}")),
        other => other,
    })
}

/// The allow-listed environment a pinentry gets: the agent's own, and — when the agent knows no
/// display (socket-activated before the desktop imported its variables) — what the user
/// manager has now for the names the agent lacks.
async fn prompt_environment() -> Vec<(&'static str, OsString)> {
    let from_manager = if crate::user_manager::lacks_display() {
        crate::user_manager::environment(ENV_ALLOW_LIST).await
    } else {
        Vec::new()
    };
    ENV_ALLOW_LIST
        .iter()
        .filter_map(|name| {
            let own = std::env::var_os(name);
            if own.as_ref().is_some_and(|v| !v.is_empty()) {
                return own.map(|value| (*name, value));
            }
            match from_manager.iter().find(|(n, _)| n == name) {
                Some((_, value)) => {
                    tracing::debug!("{name} for pinentry from the user manager");
                    Some((*name, OsString::from(value)))
                }
                None => own.map(|value| (*name, value)),
            }
        })
        .collect()
}

/// A running pinentry. Dropped while it still holds the program (its caller gave up), it
/// leaves [`close`] running in a task.
struct OpenPrompt(Option<(Conversation, Child)>);

impl Drop for OpenPrompt {
    fn drop(&mut self) {
        let Some((conversation, child)) = self.0.take() else {
            return;
        };
        tracing::debug!(pid = child.id(), "the PIN prompt was abandoned");
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(close(conversation, child));
            }
            // No runtime to say goodbye on: the child is killed as it is dropped.
            Err(_) => drop((conversation, child)),
        }
    }
}

/// Ends a pinentry: `BYE`, its input closed, its output read and thrown away until it exits;
/// terminated after [`FAREWELL`] and killed after [`TERMINATION`] more. Reaps it.
async fn close(conversation: Conversation, mut child: Child) {
    let Conversation {
        mut stdin,
        mut stdout,
        ..
    } = conversation;
    let pid = child.id();
    let farewell = async {
        // Queued behind a pending GETPIN, it is read when the prompt ends.
        let _ = stdin.write_all(b"BYE\n").await;
        let _ = stdin.flush().await;
        drop(stdin);
        exited(&mut child, &mut stdout).await
    };
    if tokio::time::timeout(FAREWELL, farewell).await.is_ok() {
        tracing::debug!(pid, "the pinentry program went when asked");
        return;
    }
    ask_to_terminate(pid);
    let how = match tokio::time::timeout(TERMINATION, exited(&mut child, &mut stdout)).await {
        Ok(_) => "terminated",
        Err(_) => {
            // Kills and reaps it.
            let _ = child.kill().await;
            "killed"
        }
    };
    tracing::info!(pid, how, "the pinentry program did not go when asked");
}

/// Sends SIGTERM to our child `pid` (not yet reaped, so the pid is still its).
#[cfg(unix)]
fn ask_to_terminate(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kill(2) on our own child, not yet reaped, so the pid is still its.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

/// Windows has no request to end a console-less program: after [`TERMINATION`] it is killed.
#[cfg(not(unix))]
fn ask_to_terminate(_pid: Option<u32>) {}

/// Waits for `child` to exit, reading what it still writes to `stdout` into a zeroised buffer
/// (a late answer may hold a PIN) and throwing it away.
async fn exited(
    child: &mut Child,
    stdout: &mut BufReader<ChildStdout>,
) -> std::io::Result<std::process::ExitStatus> {
    let drain = async {
        let mut buffer = Zeroizing::new([0u8; 1024]);
        while let Ok(n) = stdout.read(&mut buffer[..]).await {
            if n == 0 {
                break;
            }
        }
        // Its output may end before it does.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        status = child.wait() => status,
        () = drain => unreachable!("draining never ends"),
    }
}

/// The commands before `GETPIN`, escaped and checked for length.
fn commands(config: &PinentryConfig, prompt: &PinPrompt) -> Result<Vec<String>, PinentryError> {
    let mut commands = Vec::new();
    if let Some(tty) = &config.tty {
        commands.push(format!("OPTION ttyname={}", escape(tty)));
        if let Some(term) = std::env::var("TERM").ok().filter(|t| !t.is_empty()) {
            commands.push(format!("OPTION ttytype={}", escape(&term)));
        }
    }
    commands.push(format!("SETTIMEOUT {}", config.timeout_secs));
    let texts = [
        ("SETTITLE", Some(&prompt.title)),
        ("SETDESC", Some(&prompt.description)),
        ("SETPROMPT", Some(&prompt.prompt)),
        ("SETERROR", prompt.error.as_ref()),
        ("SETREPEAT", prompt.repeat.as_ref()),
    ];
    for (verb, text) in texts {
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            commands.push(format!("{verb} {}", escape(text)));
        }
    }
    if prompt.repeat.is_some() {
        commands.push(format!("SETREPEATERROR {}", escape("PINs do not match")));
    }
    if let Some(long) = commands.iter().find(|c| c.len() > MAX_LINE) {
        let verb = long.split(' ').next().unwrap_or_default();
        return Err(PinentryError::Failed(format!(
            "the text of {verb} is too long for the Assuan protocol"
        )));
    }
    Ok(commands)
}

/// Assuan percent-escaping of a parameter: `%`, CR, LF and other control characters.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '%' || (c as u32) < 0x20 {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Decodes Assuan percent-escapes into `out` (a malformed escape is kept as it is).
pub fn unescape_into(data: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < data.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if data[i] == b'%' && i + 2 < data.len() {
            if let (Some(hi), Some(lo)) = (hex(data[i + 1]), hex(data[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
}

/// One Assuan reply line.
enum Reply {
    Ok,
    Err {
        code: u32,
        text: String,
    },
    Data,
    /// The status line `S PIN_REPEATED`: pinentry asked twice and both entries matched.
    PinRepeated,
    Other,
}

/// The pipes to one pinentry and its current line.
struct Conversation {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The last line read; it may hold the PIN, so it is zeroised.
    line: Zeroizing<Vec<u8>>,
}

impl Conversation {
    /// Greeting, set-up, `GETPIN`; `repeat`: the set-up asked for a repeat.
    async fn ask(&mut self, commands: &[String], repeat: bool) -> Result<PinEntry, PinentryError> {
        match self.next_reply().await? {
            Reply::Ok => {}
            Reply::Err { text, .. } => {
                return Err(PinentryError::Failed(format!(
                    "it refused to start: {text}"
                )))
            }
            _ => return Err(PinentryError::Failed("no Assuan greeting".into())),
        }
        for command in commands {
            self.send(command).await?;
            match self.final_reply().await? {
                Ok(()) => {}
                // Old pinentries lack these; they are conveniences (a repeat not confirmed is
                // asked by the caller).
                Err(_) if command.starts_with("OPTION ") || command.starts_with("SETREPEAT") => {
                    tracing::debug!(command = %command.split(' ').next().unwrap_or_default(), "pinentry does not support it");
                }
                Err(e) => return Err(e),
            }
        }
        self.send("GETPIN").await?;
        // Room for the longest line, so decoding never reallocates (and leaves copies behind).
        let mut pin = Zeroizing::new(Vec::with_capacity(2 * MAX_LINE));
        let mut repeated = false;
        loop {
            match self.next_reply().await? {
                Reply::Data => {
                    let data = self.line.get(2..).unwrap_or_default();
                    unescape_into(data, &mut pin);
                }
                Reply::PinRepeated => repeated = repeat,
                Reply::Ok => break,
                Reply::Err { code, text } => return Err(classify(code, text)),
                Reply::Other => {}
            }
        }
        match String::from_utf8(std::mem::take(&mut *pin)) {
            Ok(pin) => Ok(PinEntry {
                pin: Zeroizing::new(pin),
                repeated,
            }),
            Err(e) => {
                e.into_bytes().zeroize();
                Err(PinentryError::Failed("the PIN is not UTF-8".into()))
            }
        }
    }

    async fn send(&mut self, command: &str) -> Result<(), PinentryError> {
        let mut line = Vec::with_capacity(command.len() + 1);
        line.extend_from_slice(command.as_bytes());
        line.push(b'\n');
        self.stdin.write_all(&line).await.map_err(lost)?;
        self.stdin.flush().await.map_err(lost)
    }

    /// Reads replies up to `OK` or `ERR`; status and comment lines are skipped, data is not
    /// expected.
    async fn final_reply(&mut self) -> Result<Result<(), PinentryError>, PinentryError> {
        loop {
            match self.next_reply().await? {
                Reply::Ok => return Ok(Ok(())),
                Reply::Err { code, text } => return Ok(Err(classify(code, text))),
                Reply::Data | Reply::PinRepeated | Reply::Other => {}
            }
        }
    }

    /// Reads one line into `self.line` and says what it is. An `INQUIRE` is answered with
    /// no data.
    async fn next_reply(&mut self) -> Result<Reply, PinentryError> {
        self.line.clear();
        let n = (&mut self.stdout)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.line)
            .await
            .map_err(lost)?;
        if n == 0 {
            return Err(PinentryError::Failed("it ended without answering".into()));
        }
        if self.line.last() != Some(&b'\n') {
            return Err(PinentryError::Failed(
                "it sent a line that is too long".into(),
            ));
        }
        self.line.pop();
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        let line = &self.line[..];
        if line == b"OK" || line.starts_with(b"OK ") {
            return Ok(Reply::Ok);
        }
        if line == b"D" || line.starts_with(b"D ") {
            return Ok(Reply::Data);
        }
        if line == b"ERR" || line.starts_with(b"ERR ") {
            let rest = String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned();
            let (code, text) = rest.split_once(' ').unwrap_or((rest.as_str(), ""));
            return Ok(Reply::Err {
                code: code.parse().unwrap_or(0),
                text: text.to_owned(),
            });
        }
        if is_pin_repeated(line) {
            return Ok(Reply::PinRepeated);
        }
        if line.starts_with(b"INQUIRE ") {
            self.send("END").await?;
        }
        Ok(Reply::Other)
    }
}

/// Whether an Assuan line is the status `PIN_REPEATED` (with or without arguments).
fn is_pin_repeated(line: &[u8]) -> bool {
    let Some(status) = line.strip_prefix(b"S ") else {
        return false;
    };
    let keyword = status.split(|b| *b == b' ').next().unwrap_or_default();
    keyword == b"PIN_REPEATED"
}

/// Maps an `ERR` to why there is no PIN.
fn classify(code: u32, text: String) -> PinentryError {
    match code & 0xFFFF {
        GPG_ERR_CANCELED | GPG_ERR_FULLY_CANCELED => PinentryError::Cancelled,
        GPG_ERR_TIMEOUT => PinentryError::TimedOut,
        _ if text.to_lowercase().contains("cancel") => PinentryError::Cancelled,
        _ => PinentryError::Failed(format!("ERR {code} {text}")),
    }
}

fn lost(e: std::io::Error) -> PinentryError {
    PinentryError::Failed(format!("the conversation broke off: {e}"))
}

#[cfg(test)]
mod tests;
