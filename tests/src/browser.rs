//! A real browser for the portal tests: Debian's `chromium`, headless, driven over W3C WebDriver
//! by Debian's `chromedriver`.
//!
//! Each [`Browser`] runs its own chromedriver on a free loopback port with a fresh profile, and
//! ends both when dropped. The pages are served by the real CMS over HTTPS; the browser trusts
//! exactly that server's key ([`spki_pin`]), not every certificate.

use crate::bridge::free_port;
use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use der::{DecodePem as _, Encode as _};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long chromedriver may take to answer after it starts.
const DRIVER_START: Duration = Duration::from_secs(20);
/// How long one WebDriver command may take (a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// What the browser is started with.
#[derive(Debug, Clone, Default)]
pub struct BrowserOptions {
    /// Base64 SHA-256 digests of the SubjectPublicKeyInfo of servers to trust ([`spki_pin`]).
    pub trusted_spki: Vec<String>,
}

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: ureq::Agent,
    _profile: tempfile::TempDir,
}

/// The digest Chromium's `--ignore-certificate-errors-spki-list` takes for the first certificate
/// in the PEM file `path`: base64 of the SHA-256 of its SubjectPublicKeyInfo.
pub fn spki_pin(path: &Path) -> Result<String> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let certificate = x509_cert::Certificate::from_pem(pem.as_bytes())
        .context("parsing the certificate (PEM)")?;
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .context("encoding the public key")?;
    Ok(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki)))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub fn start(options: &BrowserOptions) -> Result<Self> {
        let port = free_port()?;
        let driver = Command::new(program("chromedriver")?)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let profile = tempfile::tempdir()?;
        let http = ureq::AgentBuilder::new().timeout(COMMAND_TIMEOUT).build();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Self {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        browser.wait_for_driver()?;
        let mut args = vec![
            "--headless=new".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--window-size=1100,900".to_owned(),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        // Chromium's sandbox refuses to run as root (as CI does); elsewhere it stays on.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            args.push("--no-sandbox".to_owned());
        }
        if !options.trusted_spki.is_empty() {
            args.push(format!(
                "--ignore-certificate-errors-spki-list={}",
                options.trusted_spki.join(",")
            ));
        }
        let created = browser.command(
            "POST",
            "/session",
            &json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": program("chromium")?, "args": args},
            }}}),
        )?;
        browser.session = created["sessionId"]
            .as_str()
            .context("chromedriver gave no session id")?
            .to_owned();
        Ok(browser)
    }

    fn wait_for_driver(&mut self) -> Result<()> {
        let deadline = Instant::now() + DRIVER_START;
        loop {
            if let Ok(response) = self.http.get(&format!("{}/status", self.base)).call() {
                let status: Value = response.into_json()?;
                if status["value"]["ready"] == json!(true) {
                    return Ok(());
                }
            }
            if let Some(status) = self.driver.try_wait()? {
                bail!("chromedriver exited at start: {status}");
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not answer within {DRIVER_START:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One WebDriver command; its `value`, or the driver's error as an error.
    fn command(&self, method: &str, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let request = self.http.request(method, &url);
        let answer = match method {
            "GET" | "DELETE" => request.call(),
            _ => request.send_json(body),
        };
        let value: Value = match answer {
            Ok(response) => response.into_json()?,
            Err(ureq::Error::Status(_, response)) => response.into_json()?,
            Err(e) => return Err(e).with_context(|| format!("WebDriver {method} {path}")),
        };
        match value["value"].get("error") {
            Some(error) => bail!(
                "WebDriver {method} {path}: {error}: {}",
                value["value"]["message"].as_str().unwrap_or("")
            ),
            None => Ok(value["value"].clone()),
        }
    }

    fn session_command(&self, method: &str, path: &str, body: &Value) -> Result<Value> {
        self.command(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.session_command("POST", "/url", &json!({ "url": url }))?;
        Ok(())
    }

    /// The page's current URL.
    pub fn url(&self) -> Result<String> {
        let url = self.session_command("GET", "/url", &Value::Null)?;
        Ok(url.as_str().unwrap_or_default().to_owned())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns its
    /// value. A returned promise is awaited.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.session_command(
            "POST",
            "/execute/sync",
            &json!({ "script": script, "args": args }),
        )
    }

    /// The first element matching the CSS `selector`, if any.
    fn element(&self, selector: &str) -> Result<Option<String>> {
        let found = self.session_command(
            "POST",
            "/elements",
            &json!({ "using": "css selector", "value": selector }),
        )?;
        Ok(found
            .as_array()
            .and_then(|all| all.first())
            .and_then(|e| e[ELEMENT].as_str())
            .map(str::to_owned))
    }

    /// Whether an element matches `selector` now.
    pub fn exists(&self, selector: &str) -> Result<bool> {
        Ok(self.element(selector)?.is_some())
    }

    /// Clicks the element matching `selector`, as a person would (it must be shown).
    pub fn click(&self, selector: &str) -> Result<()> {
        let element = self.wait_for(selector, COMMAND_TIMEOUT)?;
        self.session_command("POST", &format!("/element/{element}/click"), &json!({}))?;
        Ok(())
    }

    /// The rendered text of the element matching `selector` (empty when there is none).
    pub fn text(&self, selector: &str) -> Result<String> {
        match self.element(selector)? {
            Some(element) => {
                let text =
                    self.session_command("GET", &format!("/element/{element}/text"), &Value::Null)?;
                Ok(text.as_str().unwrap_or_default().to_owned())
            }
            None => Ok(String::new()),
        }
    }

    /// Waits up to `timeout` for an element matching `selector`.
    pub fn wait_for(&self, selector: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(element) = self.element(selector)? {
                return Ok(element);
            }
            if Instant::now() > deadline {
                bail!("no {selector:?} on {} within {timeout:?}", self.url()?);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` until the text of `selector` satisfies `done`; returns it.
    pub fn wait_for_text(
        &self,
        selector: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text(selector)?;
            if done(&text) {
                return Ok(text);
            }
            if Instant::now() > deadline {
                bail!(
                    "{selector:?} on {} still reads {text:?} after {timeout:?}",
                    self.url()?
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let png = self.session_command("GET", "/screenshot", &Value::Null)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().context("no screenshot data")?)
            .context("the screenshot is not base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.command(
                "DELETE",
                &format!("/session/{}", self.session),
                &Value::Null,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where the portal tests put their screenshots: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("screenshots")
}

/// `name` on the `PATH`, or an error saying what to install.
fn program(name: &str) -> Result<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .with_context(|| format!("{name} is not installed (scripts/setup installs it)"))
}

/// Serves `page` as HTML to every request on a free loopback port, over plain HTTP, until the
/// process ends; returns the port. For pages that stand for another web site.
pub fn serve_page(page: String) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // A thread each: a browser may open a connection it sends nothing on yet.
            let page = page.clone();
            std::thread::spawn(move || {
                // The request's head, up to its blank line; every path gets the page.
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = write!(
                    &stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
            });
        }
    });
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_loaded_read_clicked_and_photographed() {
        let port = serve_page(
            "<!doctype html><title>t</title><p id=\"p\">before</p>\
             <button id=\"b\" onclick=\"p.textContent='after'\">go</button>"
                .to_owned(),
        )
        .unwrap();
        let browser = Browser::start(&BrowserOptions::default()).unwrap();
        browser.goto(&format!("http://127.0.0.1:{port}/")).unwrap();
        assert_eq!(browser.text("#p").unwrap(), "before");
        assert!(!browser.exists("#missing").unwrap());
        browser.click("#b").unwrap();
        let text = browser
            .wait_for_text("#p", Duration::from_secs(10), |t| t == "after")
            .unwrap();
        assert_eq!(text, "after");
        assert_eq!(browser.execute("return 6 * 7", &[]).unwrap(), json!(42));
        let shot = tempfile::tempdir().unwrap();
        let path = shot.path().join("page.png");
        browser.screenshot(&path).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
            "{}",
            png.len()
        );
    }
}
