//! A private pcscd: its own reader configuration, vpcd port pair and client socket, in a private
//! mount namespace so it never touches the machine's pcscd.

use anyhow::{bail, Context as _, Result};
use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The vpcd driver Debian's `vsmartcard-vpcd` installs.
pub const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";

/// A running private pcscd; stopped (and never left behind) when dropped.
#[derive(Debug)]
pub struct IsolatedPcscd {
    child: Option<Child>,
    run_dir: PathBuf,
    conf_dir: PathBuf,
    log: PathBuf,
    port: u16,
}

impl IsolatedPcscd {
    /// Starts pcscd with one vpcd entry on `port` (readers on `port` and `port + 1`), its socket
    /// in `run_dir`, and waits until its socket accepts clients.
    pub fn start(work_dir: &Path, run_dir: &Path, port: u16) -> Result<Self> {
        check_prerequisites()?;
        let conf_dir = work_dir.join("reader.conf.d");
        fs::create_dir_all(&conf_dir)?;
        fs::create_dir_all(run_dir)?;
        // A socket left by an earlier pcscd of this process would look ready before ours is.
        let _ = fs::remove_file(run_dir.join("pcscd.comm"));
        fs::write(
            conf_dir.join("vpcd"),
            format!(
                "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x{port:04X}\n\
                 LIBPATH {VPCD_DRIVER}\nCHANNELID 0x{port:04X}\n"
            ),
        )?;
        let log = work_dir.join("pcscd.log");
        let mut pcscd = Self {
            child: None,
            run_dir: run_dir.into(),
            conf_dir,
            log,
            port,
        };
        pcscd.spawn()?;
        Ok(pcscd)
    }

    fn spawn(&mut self) -> Result<()> {
        let _ = fs::remove_file(self.socket());
        // Inside the namespace /run/pcscd is our run dir, so pcscd's socket lands there. Without
        // root, an unprivileged user namespace is used and /run gets a private tmpfs if needed.
        let script = format!(
            "set -e; if [ ! -d /run/pcscd ]; then mkdir -p /run/pcscd 2>/dev/null || \
             {{ mount -t tmpfs identity-agent-run /run && mkdir -p /run/pcscd; }}; fi; \
             mount --bind '{}' /run/pcscd; exec pcscd --foreground -c '{}'",
            self.run_dir.display(),
            self.conf_dir.display()
        );
        let mut cmd = Command::new("unshare");
        if !is_root() {
            cmd.arg("-r");
        }
        cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(File::create(&self.log)?)
            .stderr(File::create(self.log.with_extension("err"))?);
        // SAFETY: prctl is async-signal-safe; it makes pcscd die with the thread that owns the
        // test bed, so a test killed mid-way leaves no stray pcscd.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().context("starting pcscd under unshare")?;
        self.child = Some(child);
        self.wait_for_socket()
    }

    fn wait_for_socket(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.socket().exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "pcscd exited ({status}) before it was ready: {}",
                    fs::read_to_string(self.log.with_extension("err"))
                        .unwrap_or_default()
                        .trim()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "pcscd did not create {} within 10 s",
                    self.socket().display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// The client socket to give libpcsclite as `PCSCLITE_CSOCK_NAME`.
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("pcscd.comm")
    }

    /// The first vpcd port; the second reader listens on the next one.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The daemon's output so far (for test failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops pcscd, as when the service is stopped under a running client.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets pcscd remove its socket; SIGKILL if it does not go within 2 s.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(2);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts pcscd again with the same configuration (after [`stop`](Self::stop)).
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for IsolatedPcscd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn check_prerequisites() -> Result<()> {
    for (path, package) in [
        ("/usr/sbin/pcscd", "pcscd"),
        (VPCD_DRIVER, "vsmartcard-vpcd"),
    ] {
        if !Path::new(path).exists() {
            bail!("{path} is missing: install the {package} package (run scripts/setup as root)");
        }
    }
    if !is_root() {
        let probe = Command::new("unshare").args(["-rm", "true"]).status();
        if !probe.is_ok_and(|s| s.success()) {
            bail!(
                "the test bed needs root or unprivileged user namespaces to run a private pcscd; \
                 run the tests as root, or enable user namespaces \
                 (sysctl kernel.unprivileged_userns_clone=1)"
            );
        }
    }
    Ok(())
}

/// Picks an even port whose pair (port, port + 1) is free right now.
pub fn free_port_pair() -> Result<u16> {
    for _ in 0..200 {
        let port = 20000 + 2 * (rand::random::<u16>() % 20000);
        let a = TcpListener::bind(("0.0.0.0", port));
        let b = TcpListener::bind(("0.0.0.0", port + 1));
        if a.is_ok() && b.is_ok() {
            return Ok(port);
        }
    }
    bail!("no free TCP port pair for the vpcd readers")
}
