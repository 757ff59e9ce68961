//! Windows builds of this workspace, run under Wine against a test bed's pcscd
//! (`docs/WINDOWS.md`): the cross build of a program, and a run of it through
//! `scripts/wine-run` (the Wine 10 of `scripts/wine-root`), whose winscard reaches the bed's
//! private pcscd through the host's pcsc-lite — to its end, or as a session the test talks to
//! line by line.

use crate::stack::{AgentOptions, PinentrySetup, Stack};
use crate::TestBed;
use anyhow::{bail, Context as _, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The Rust target of the Windows build.
pub const WINDOWS_TARGET: &str = "x86_64-pc-windows-gnu";
/// The linker that target needs (Debian's `gcc-mingw-w64-x86-64`).
const MINGW_LINKER: &str = "x86_64-w64-mingw32-gcc";
/// How long one Windows program may run under Wine, once the Wine root is made.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the Windows build cannot be made here, when its toolchain is missing (the Rust target's
/// standard library or the mingw-w64 linker); `None` when it can. `scripts/setup` installs both.
pub fn missing_toolchain() -> Option<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let target_lib = sysroot.map(|s| s.join("lib/rustlib").join(WINDOWS_TARGET).join("lib"));
    if !target_lib.is_some_and(|dir| dir.is_dir()) {
        return Some(format!(
            "the Rust target {WINDOWS_TARGET} is not installed (rustup target add \
             {WINDOWS_TARGET}, or scripts/setup)"
        ));
    }
    let linker = Command::new(MINGW_LINKER)
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !linker.is_ok_and(|s| s.success()) {
        return Some(format!(
            "the linker {MINGW_LINKER} is missing (apt install gcc-mingw-w64-x86-64, or \
             scripts/setup as root)"
        ));
    }
    None
}

/// A program of this workspace to build for Windows.
#[derive(Debug, Clone, Copy)]
pub enum Program<'a> {
    /// A binary of the package (`--bin`).
    Bin(&'a str),
    /// An example of the package (`--example`).
    Example(&'a str),
}

/// Builds `program` of `package` for Windows (the debug build) and returns its `.exe`.
pub fn build(package: &str, program: Program<'_>) -> Result<PathBuf> {
    build_profile(package, program, "dev")
}

/// [`build`] in the cargo profile `profile` (`dev`, `release`).
pub fn build_profile(package: &str, program: Program<'_>, profile: &str) -> Result<PathBuf> {
    let _lock = build_lock()?;
    let (kind, name) = match program {
        Program::Bin(name) => ("--bin", name),
        Program::Example(name) => ("--example", name),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .args([
            "--profile",
            profile,
            "--target",
            WINDOWS_TARGET,
            "-p",
            package,
            kind,
            name,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("building {package}'s {name} for Windows"))?;
    if !output.status.success() {
        bail!("building {package}'s {name} for {WINDOWS_TARGET} failed");
    }
    // The last artifact cargo names for that program is its executable.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == name)
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo named no executable for {name}"))
}

/// Holds the Windows builds of this workspace's target directory to one at a time until
/// dropped. The tests and the installer build the same executables with different package sets,
/// so with different features of the crates below them (clap's, windows-sys's), and cargo swaps
/// `identity-agent.exe` between the two builds: a build beside `scripts/package-windows` could
/// swap it while `wixl` reads it into the installer's cabinet.
pub fn build_lock() -> Result<File> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&target)?;
    let lock = File::create(target.join("windows-build.lock"))?;
    lock.lock().context("locking the Windows build")?;
    Ok(lock)
}

/// `scripts/wine-run exe args…` as a PC/SC client of `bed`'s pcscd, in a process group of its
/// own (so a run that hangs is ended whole: unshare, Wine, wineserver); the Wine root is made
/// first when missing, outside any time limit (it takes minutes, once).
fn wine_run(bed: &TestBed, exe: &Path, args: &[&str]) -> Result<Command> {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let root = Command::new(scripts.join("wine-root"))
        .stdout(Stdio::null())
        .status()
        .context("running scripts/wine-root")?;
    if !root.success() {
        bail!("no Wine root to run Windows programs in (scripts/wine-root said why above)");
    }
    let (socket_env, socket) = bed.client_env();
    let mut command = Command::new(scripts.join("wine-run"));
    command
        .arg(exe)
        .args(args)
        .env(socket_env, socket)
        .process_group(0);
    Ok(command)
}

/// `path` as Windows under Wine names it (the host's root is drive Z:).
pub fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// Ends the process group `leader` leads (a `wine_run` command's).
fn kill_group(leader: &Child) {
    // SAFETY: kill has no memory preconditions; the group is the child's own.
    unsafe { libc::kill(-(leader.id() as i32), libc::SIGKILL) };
}

/// What a Windows program printed and how it ended.
#[derive(Debug)]
pub struct WineOutput {
    /// Its exit code (`None` when a signal ended Wine).
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error (with whatever Wine itself said).
    pub stderr: String,
}

/// Runs the Windows program `exe` with `args` under Wine, as a PC/SC client of `bed`'s pcscd;
/// what it printed goes to the test's output too.
pub fn run(bed: &TestBed, exe: &Path, args: &[&str]) -> Result<WineOutput> {
    let out_path = bed.dir().join("wine.out");
    let err_path = bed.dir().join("wine.err");
    let mut child = wine_run(bed, exe, args)?
        .stdin(Stdio::null())
        .stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?)
        .spawn()
        .context("running scripts/wine-run")?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            kill_group(&child);
            let _ = child.wait();
            bail!(
                "{} did not finish under Wine within {RUN_TIMEOUT:?}; it printed:\n{}{}",
                exe.display(),
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = WineOutput {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path)?,
        stderr: std::fs::read_to_string(&err_path)?,
    };
    eprintln!(
        "$ scripts/wine-run {} {}\n{}{}(exit {:?})",
        exe.display(),
        args.join(" "),
        output.stdout,
        output.stderr,
        output.code
    );
    Ok(output)
}

/// A Windows program under Wine that the test talks to line by line over its standard input
/// and output (`agent-ipc`'s `line-client`, say); what it writes to standard error goes to a
/// file, shown by [`WineSession::stderr`]. Ended with its whole Wine on drop.
pub struct WineSession {
    child: Child,
    input: ChildStdin,
    /// Each line with when it arrived.
    lines: Receiver<(Instant, String)>,
    stderr_path: PathBuf,
}

impl WineSession {
    /// Starts `exe` with `args` under Wine, as a PC/SC client of `bed`'s pcscd.
    pub fn start(bed: &TestBed, exe: &Path, args: &[&str]) -> Result<WineSession> {
        Self::start_on(bed, None, exe, args)
    }

    /// [`WineSession::start`], with Wine's windows on the X `display` when one is given.
    pub fn start_on(
        bed: &TestBed,
        display: Option<&str>,
        exe: &Path,
        args: &[&str],
    ) -> Result<WineSession> {
        let stderr_path = bed.dir().join("wine-session.err");
        let mut command = wine_run(bed, exe, args)?;
        if let Some(display) = display {
            command.env("IDENTITY_AGENT_WINE_DISPLAY", display);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path)?)
            .spawn()
            .context("running scripts/wine-run")?;
        let input = child.stdin.take().context("no standard input")?;
        let output = child.stdout.take().context("no standard output")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                let arrived = Instant::now();
                eprintln!("wine> {line}");
                if tx.send((arrived, line)).is_err() {
                    break;
                }
            }
        });
        Ok(WineSession {
            child,
            input,
            lines,
            stderr_path,
        })
    }

    /// Writes `line` to the program's input.
    pub fn send(&mut self, line: &str) -> Result<()> {
        eprintln!("wine< {line}");
        writeln!(self.input, "{line}")?;
        Ok(self.input.flush()?)
    }

    /// The next line `wanted` accepts, within `timeout`; the lines before it are skipped.
    pub fn expect(&mut self, timeout: Duration, wanted: impl Fn(&str) -> bool) -> Result<String> {
        self.expect_timed(timeout, wanted).map(|(_, line)| line)
    }

    /// [`WineSession::expect`], with when the line arrived (read as it was written, by a
    /// thread of its own).
    pub fn expect_timed(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<(Instant, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((arrived, line)) if wanted(&line) => return Ok((arrived, line)),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => bail!(
                    "no such line within {timeout:?}; standard error:\n{}",
                    self.stderr()
                ),
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "the program ended first; standard error:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    /// What the program (and Wine) wrote to standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for WineSession {
    fn drop(&mut self) {
        kill_group(&self.child);
        let _ = self.child.wait();
    }
}

/// The Windows agent and what runs it under Wine: `identity-agent.exe`, the scripted
/// `ia-pinentry.exe` it asks PINs with, and `agent-ipc`'s `line-client.exe`, which starts it and
/// relays its socket API as lines.
pub struct WindowsAgent {
    agent: PathBuf,
    pinentry: PathBuf,
    client: PathBuf,
}

impl WindowsAgent {
    /// Builds the three in the cargo profile `profile` (`dev`, `release`).
    pub fn build(profile: &str) -> Result<WindowsAgent> {
        Ok(WindowsAgent {
            agent: build_profile("agent", Program::Bin("identity-agent"), profile)?,
            pinentry: build_profile("ia-pinentry", Program::Bin("ia-pinentry"), profile)?,
            client: build_profile("agent-ipc", Program::Example("line-client"), profile)?,
        })
    }

    /// Starts the agent under Wine on a pipe of its own, configured as `stack` configures its
    /// Linux agent for `options`, with `ia-pinentry.exe pinentry_args` as its pinentry; the
    /// session's first lines are the pipe's `security` and `ready`.
    pub fn start(
        &self,
        stack: &Stack,
        options: &AgentOptions,
        pinentry_args: Vec<String>,
    ) -> Result<WineSession> {
        let command = self.command_line(stack, options, pinentry_args)?;
        let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
        WineSession::start(&stack.bed, Path::new(&command[0]), &args)
    }

    /// The pipe the agent serves ([`WindowsAgent::start`]'s, one per test process).
    pub fn pipe() -> String {
        format!(r"\\.\pipe\identity-agent-test-{}", std::process::id())
    }

    /// What [`WindowsAgent::start`] runs under Wine: `line-client.exe` and its arguments,
    /// with the agent's configuration written.
    pub fn command_line(
        &self,
        stack: &Stack,
        options: &AgentOptions,
        pinentry_args: Vec<String>,
    ) -> Result<Vec<String>> {
        let options = AgentOptions {
            pinentry: Some(PinentrySetup {
                program: self.pinentry.clone(),
                args: pinentry_args,
                tty: None,
            }),
            ..options.clone()
        };
        let config = stack.bed.dir().join("agent-windows.toml");
        std::fs::write(&config, stack.agent_config(&options)?)?;
        let pipe = Self::pipe();
        Ok(vec![
            self.client.display().to_string(),
            "--endpoint".into(),
            pipe.clone(),
            "--agent".into(),
            self.agent.display().to_string(),
            "--foreground".into(),
            "--config".into(),
            config.display().to_string(),
            "--socket".into(),
            pipe,
        ])
    }
}
