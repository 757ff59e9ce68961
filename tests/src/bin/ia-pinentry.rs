//! `ia-pinentry`: a scripted pinentry for the tests and the demo. It speaks the Assuan protocol
//! on standard input and output like a real pinentry and answers `GETPIN` from `--pin` or from
//! the next unused line of a `--script` file (the position is kept in `FILE.pos`, so a script
//! runs on across many pinentry processes).
//!
//! Script lines: a PIN, `!cancel` (the holder cancels) or `!hang` (never answers). A used-up
//! script cancels. `--log FILE` appends one JSON line per `GETPIN` with the texts shown and the
//! names of the environment variables this process sees — never the PIN.

use anyhow::{Context as _, Result};
use clap::Parser;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The reply to a cancelled `GETPIN` (GPG_ERR_CANCELED from source pinentry).
const CANCELLED: &str = "ERR 83886179 Operation cancelled <Pinentry>";

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
}

fn main() -> Result<()> {
    let args = Args::parse();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout().lock();
    writeln!(out, "OK Pleased to meet you")?;
    out.flush()?;
    let mut prompt = Prompt::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
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
                if let Some(log) = &args.log {
                    log_getpin(log, &prompt)?;
                }
                match answer {
                    Answer::Pin(pin) => {
                        if prompt.repeat.is_some() {
                            writeln!(out, "S PIN_REPEATED")?;
                        }
                        if !pin.is_empty() {
                            writeln!(out, "D {}", escape(&pin))?;
                        }
                    }
                    Answer::Cancel => {
                        writeln!(out, "{CANCELLED}")?;
                        out.flush()?;
                        prompt.error = None;
                        continue;
                    }
                    Answer::Hang => loop {
                        std::thread::sleep(std::time::Duration::from_secs(3600));
                    },
                }
                // Like a real pinentry, an error text is shown once.
                prompt.error = None;
            }
            "BYE" => {
                writeln!(out, "OK closing connection")?;
                out.flush()?;
                return Ok(());
            }
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
    // SAFETY: flock on a descriptor we own; it is released when the file is closed.
    if unsafe { libc::flock(pos_file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot lock the script position");
    }
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

/// Appends one JSON line: the texts of this `GETPIN` and the environment's variable names.
fn log_getpin(log: &Path, prompt: &Prompt) -> Result<()> {
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
        "timeout": prompt.timeout,
        "options": prompt.options,
        "env": env,
    });
    let mut line = serde_json::to_vec(&record)?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open the log {}", log.display()))?;
    file.write_all(&line)?;
    Ok(())
}

/// Assuan percent-encoding of data: `%`, CR, LF and other control characters.
fn escape(text: &str) -> String {
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

/// Decodes Assuan percent-escapes (a malformed escape is kept as it is).
fn unescape(text: &str) -> String {
    let data = text.as_bytes();
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'%' && i + 2 < data.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(data[i + 1]), hex(data[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
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
