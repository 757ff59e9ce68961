//! Windows builds of this workspace, run under Wine against a test bed's pcscd
//! (`docs/WINDOWS.md`): the cross build of a program, and a run of it through
//! `scripts/wine-run` (the Wine 10 of `scripts/wine-root`), whose winscard reaches the bed's
//! private pcscd through the host's pcsc-lite.

use crate::TestBed;
use anyhow::{bail, Context as _, Result};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

/// Builds example `example` of `package` for Windows and returns its `.exe`.
pub fn build_example(package: &str, example: &str) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .args([
            "--target",
            WINDOWS_TARGET,
            "-p",
            package,
            "--example",
            example,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("building {package}'s example {example} for Windows"))?;
    if !output.status.success() {
        bail!("building {package}'s example {example} for {WINDOWS_TARGET} failed");
    }
    // The last artifact cargo names for that example is its executable.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == example)
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo named no executable for the example {example}"))
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
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    // The Wine root first, outside the run's time limit: making it takes minutes, once.
    let root = Command::new(scripts.join("wine-root"))
        .stdout(Stdio::null())
        .status()
        .context("running scripts/wine-root")?;
    if !root.success() {
        bail!("no Wine root to run Windows programs in (scripts/wine-root said why above)");
    }
    let wine_run = scripts.join("wine-run");
    let (socket_env, socket) = bed.client_env();
    let out_path = bed.dir().join("wine.out");
    let err_path = bed.dir().join("wine.err");
    let mut child = Command::new(&wine_run)
        .arg(exe)
        .args(args)
        .env(socket_env, socket)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?)
        // Its own process group, so a run that hangs is ended whole (unshare, Wine, wineserver).
        .process_group(0)
        .spawn()
        .with_context(|| format!("running {}", wine_run.display()))?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            // SAFETY: kill has no memory preconditions; the group is the child's own.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            bail!(
                "{} did not finish under Wine within {RUN_TIMEOUT:?}",
                exe.display()
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
