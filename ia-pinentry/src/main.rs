//! `ia-pinentry`: a scripted pinentry for the tests and the demo. It speaks the Assuan protocol
//! on standard input and output like a real pinentry and answers `GETPIN` from `--pin` or from
//! the next unused line of a `--script` file (the position is kept in `FILE.pos`, so a script
//! runs on across many pinentry processes).
//!
//! Script lines: a PIN, `!cancel` (the holder cancels), `!hang` (the holder never answers: the
//! prompt times out after `SETTIMEOUT` seconds, if set, and the program still leaves when sent
//! `BYE` or at the end of its input meanwhile) or `!deaf` (never answers and never leaves by
//! itself: it ignores its timeout, `BYE`, the end of its input and SIGTERM). A used-up script
//! cancels.
//!
//! Like a modern pinentry, after `SETREPEAT` it says the PIN was entered twice alike (the status
//! `S PIN_REPEATED` before the PIN); `--ignore-repeat` makes it behave like pinentry-curses
//! 1.2.1, which accepts `SETREPEAT` but asks once and says nothing.
//!
//! `--log FILE` appends one JSON line per `GETPIN` with the texts shown, whether the repeat was
//! confirmed and the names of the environment variables this process sees — never the PIN.
//! `--end-log FILE` appends one JSON line when the program leaves by itself: on `BYE` or at
//! the end of its input (a killed program writes nothing).

use agent::pinentry::{escape, unescape_into};
use anyhow::{Context as _, Result};
use clap::Parser;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The reply to a cancelled `GETPIN` (GPG_ERR_CANCELED from source pinentry).
const CANCELLED: &str = "ERR 83886179 Operation cancelled <Pinentry>";
/// The reply to a `GETPIN` unanswered within `SETTIMEOUT` (GPG_ERR_TIMEOUT from source
/// pinentry).
const TIMED_OUT: &str = "ERR 83886142 Timeout <Pinentry>";

#[derive(Parser)]
#[command(about = "A scripted pinentry (Assuan on standard input and output) for tests")]
struct Args {
    /// Answer every GETPIN with this PIN.
    #[arg(long, conflicts_with = "script")]
    pin: Option<String>,
    /// Answer each GETPIN with the next unused line of this file (`!cancel`, `!hang`).
    #[arg(long)]
    script: Option<PathBuf>,
    /// Append a JSON line per GETPIN to this file (texts and environment variable names).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Accept SETREPEAT but ask once and never confirm the repeat (like pinentry-curses
    /// 1.2.1).
    #[arg(long)]
    ignore_repeat: bool,
    /// Append a JSON line to this file when leaving by itself (on BYE or end of input).
    #[arg(long)]
    end_log: Option<PathBuf>,
}

/// The texts set for the next `GETPIN`.
#[derive(Default)]
struct Prompt {
    title: Option<String>,
    description: Option<String>,
    prompt: Option<String>,
    error: Option<String>,
    repeat: Option<String>,
    repeat_error: Option<String>,
    timeout: Option<String>,
    options: Vec<String>,
}

/// What a `GETPIN` answers.
enum Answer {
    Pin(String),
    Cancel,
    Hang,
    Deaf,
}

/// How the program leaves by itself.
#[derive(Clone, Copy)]
enum End {
    /// It was sent `BYE`.
    Bye,
    /// Its input ended.
    Eof,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let input = read_lines();
    let mut out = std::io::stdout().lock();
    writeln!(out, "OK Pleased to meet you")?;
    out.flush()?;
    let mut prompt = Prompt::default();
    loop {
        let Ok(line) = input.recv() else {
            return leave(&args, End::Eof, &mut out);
        };
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
        let value = || Some(unescape(rest));
        match verb.to_ascii_uppercase().as_str() {
            "OPTION" => prompt.options.push(unescape(rest)),
            "SETTITLE" => prompt.title = value(),
            "SETDESC" => prompt.description = value(),
            "SETPROMPT" => prompt.prompt = value(),
            "SETERROR" => prompt.error = value(),
            "SETREPEAT" => prompt.repeat = value(),
            "SETREPEATERROR" => prompt.repeat_error = value(),
            "SETTIMEOUT" => prompt.timeout = value(),
            "SETOK" | "SETCANCEL" | "SETNOTOK" | "SETKEYINFO" | "NOP" => {}
            "RESET" => prompt = Prompt::default(),
            "GETINFO" => match rest {
                "pid" => writeln!(out, "D {}", std::process::id())?,
                "version" => writeln!(out, "D {}", env!("CARGO_PKG_VERSION"))?,
                "flavor" => writeln!(out, "D ia-pinentry")?,
                _ => {
                    writeln!(out, "ERR 83886361 Not implemented <Pinentry>")?;
                    out.flush()?;
                    continue;
                }
            },
            "GETPIN" => {
                let answer = next_answer(&args)?;
                let confirms = matches!(answer, Answer::Pin(_))
                    && prompt.repeat.is_some()
                    && !args.ignore_repeat;
                if let Some(log) = &args.log {
                    log_getpin(log, &prompt, confirms)?;
                }
                // Like a real pinentry, an error text is shown once.
                prompt.error = None;
                match answer {
                    Answer::Pin(pin) => {
                        if confirms {
                            writeln!(out, "S PIN_REPEATED")?;
                        }
                        if !pin.is_empty() {
                            writeln!(out, "D {}", escape(&pin))?;
                        }
                    }
                    Answer::Cancel => {
                        writeln!(out, "{CANCELLED}")?;
                        out.flush()?;
                        continue;
                    }
                    Answer::Hang => {
                        if let Some(end) = hang(&input, prompt.timeout.as_deref()) {
                            return leave(&args, end, &mut out);
                        }
                        writeln!(out, "{TIMED_OUT}")?;
                        out.flush()?;
                        continue;
                    }
                    Answer::Deaf => deaf(),
                }
            }
            "BYE" => return leave(&args, End::Bye, &mut out),
            _ => {
                writeln!(
                    out,
                    "ERR 536871187 Unknown IPC command <User defined source 1>"
                )?;
                out.flush()?;
                continue;
            }
        }
        writeln!(out, "OK")?;
        out.flush()?;
    }
}

/// `--pin`, else the next unused line of `--script` (advancing `FILE.pos` under a lock), else
/// cancel.
fn next_answer(args: &Args) -> Result<Answer> {
    if let Some(pin) = &args.pin {
        return Ok(Answer::Pin(pin.clone()));
    }
    let Some(script) = &args.script else {
        return Ok(Answer::Cancel);
    };
    let text = std::fs::read_to_string(script)
        .with_context(|| format!("cannot read the script {}", script.display()))?;
    let mut pos_path = script.clone().into_os_string();
    pos_path.push(".pos");
    let mut pos_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&pos_path)
        .with_context(|| format!("cannot open {}", Path::new(&pos_path).display()))?;
    lock_exclusive(&pos_file).context("cannot lock the script position")?;
    let mut pos = String::new();
    pos_file.read_to_string(&mut pos)?;
    let pos: usize = pos.trim().parse().unwrap_or(0);
    let line = text
        .lines()
        .nth(pos)
        .map(|l| l.trim_end_matches('\r').to_owned());
    write_pos(&mut pos_file, pos + 1)?;
    Ok(match line.as_deref() {
        None | Some("!cancel") => Answer::Cancel,
        Some("!hang") => Answer::Hang,
        Some("!deaf") => Answer::Deaf,
        Some(pin) => Answer::Pin(pin.to_owned()),
    })
}

fn write_pos(file: &mut File, pos: usize) -> Result<()> {
    file.seek(SeekFrom::Start(0))?;
    file.set_len(0)?;
    file.write_all(format!("{pos}\n").as_bytes())?;
    file.sync_data()?;
    Ok(())
}

/// Standard input, line by line, read on a thread of its own so a hanging prompt still sees
/// `BYE` and the end of input; the channel closes at the end of input.
fn read_lines() -> Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// A prompt nobody answers: `None` when its timeout (`SETTIMEOUT` seconds, 0 or unset: none)
/// passes, else how the program was asked to leave meanwhile. Other commands are ignored, as a
/// pinentry busy with its window does not read them.
fn hang(input: &Receiver<Vec<u8>>, timeout: Option<&str>) -> Option<End> {
    let seconds: u64 = timeout.and_then(|t| t.trim().parse().ok()).unwrap_or(0);
    let deadline = (seconds > 0).then(|| Instant::now() + Duration::from_secs(seconds));
    loop {
        let line = match deadline {
            Some(deadline) => {
                match input.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(line) => line,
                    Err(RecvTimeoutError::Timeout) => return None,
                    Err(RecvTimeoutError::Disconnected) => return Some(End::Eof),
                }
            }
            None => match input.recv() {
                Ok(line) => line,
                Err(_) => return Some(End::Eof),
            },
        };
        let text = String::from_utf8_lossy(&line);
        if text.trim_end().eq_ignore_ascii_case("BYE") {
            return Some(End::Bye);
        }
    }
}

/// Locks `file` for this process until it is closed (the script's position, shared by the
/// pinentry processes of one test).
#[cfg(unix)]
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; it is released when the file is closed.
    match unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Locks `file` for this process until it is closed (the script's position, shared by the
/// pinentry processes of one test).
#[cfg(windows)]
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Storage::FileSystem::{LockFileEx, LOCKFILE_EXCLUSIVE_LOCK};
    use windows_sys::Win32::System::IO::OVERLAPPED;
    // SAFETY: an all-zero OVERLAPPED is offset 0 and no event.
    let mut overlapped: OVERLAPPED = unsafe { std::mem::zeroed() };
    // SAFETY: a handle we own and an OVERLAPPED that outlives the (blocking) call; the lock
    // is released when the handle is closed.
    match unsafe {
        LockFileEx(
            file.as_raw_handle(),
            LOCKFILE_EXCLUSIVE_LOCK,
            0,
            u32::MAX,
            u32::MAX,
            &mut overlapped,
        )
    } {
        0 => Err(std::io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// A prompt that never ends and a program that never leaves by itself: its timeout, its input
/// and SIGTERM are ignored (only SIGKILL ends it).
fn deaf() -> ! {
    #[cfg(unix)]
    // SAFETY: setting a signal disposition to SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN)
    };
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Leaves by itself: records how in `--end-log`, then answers a `BYE` (if the client still
/// listens).
fn leave(args: &Args, end: End, out: &mut impl Write) -> Result<()> {
    if let Some(path) = &args.end_log {
        let record = serde_json::json!({
            "pid": std::process::id(),
            "end": match end {
                End::Bye => "bye",
                End::Eof => "eof",
            },
        });
        append_line(path, &record)?;
    }
    if matches!(end, End::Bye) {
        let _ = writeln!(out, "OK closing connection").and_then(|()| out.flush());
    }
    Ok(())
}

/// Appends `record` as one JSON line to `path`.
fn append_line(path: &Path, record: &serde_json::Value) -> Result<()> {
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log {}", path.display()))?;
    file.write_all(&line)?;
    Ok(())
}

/// Appends one JSON line: the texts of this `GETPIN`, whether the repeat is confirmed and the
/// environment's variable names.
fn log_getpin(log: &Path, prompt: &Prompt, repeated: bool) -> Result<()> {
    let mut env: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    env.sort();
    let record = serde_json::json!({
        "pid": std::process::id(),
        "title": prompt.title,
        "description": prompt.description,
        "prompt": prompt.prompt,
        "error": prompt.error,
        "repeat": prompt.repeat,
        "repeat_error": prompt.repeat_error,
        "repeated": repeated,
        "timeout": prompt.timeout,
        "options": prompt.options,
        "env": env,
    });
    append_line(log, &record)
}

/// Decodes Assuan percent-escapes into text (a malformed escape is kept as it is).
fn unescape(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    unescape_into(text.as_bytes(), &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        let text = "50% off\r\nünï";
        assert_eq!(escape(text), "50%25 off%0D%0Aünï");
        assert_eq!(unescape(&escape(text)), text);
        assert_eq!(unescape("%4"), "%4");
        assert_eq!(unescape("%+1%41"), "%+1A");
    }
}
