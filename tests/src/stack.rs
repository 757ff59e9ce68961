//! The whole stack on one machine: the test bed's private pcscd and virtual readers, the
//! reference Card Management Service over HTTPS on an ephemeral port with a temporary
//! database, virtual cards it issued over PC/SC, and the agent as a real process with the
//! scripted pinentry. The end-to-end tests, the demo and the benchmarks stand on it.

use crate::TestBed;
use anyhow::{bail, Context as _, Result};
use cardsim::{AtrProfile, CardFile, CardSpec, Faults, InsertedCard};
use cms::issuance::{CardIssuance, InitialValidity};
use cms::server::RunningServer;
use cms::{Cms, DataDir, Policy};
use cms_api::client::CmsClient;
use cms_api::protocol::SessionCreated;
use piv::consts::key;
use piv::{CardSerial, KeyAlgorithm, Pin, PivCard, Puk};
use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A role profile: organisation, job role, activity codes.
pub type RoleSpec<'a> = (&'a str, &'a str, &'a [&'a str]);

/// A clinical role.
pub const NURSE: RoleSpec<'static> = ("Leeds Teaching Hospitals", "Staff Nurse", &["B0360"]);
/// A second clinical role.
pub const WARD_MANAGER: RoleSpec<'static> = (
    "Leeds Teaching Hospitals",
    "Ward Manager",
    &["B0360", "B0572"],
);
/// A Registration Authority role that may repair cards.
pub const RA_OFFICER: RoleSpec<'static> = (
    "Leeds Teaching Hospitals",
    "Registration Authority Agent",
    &["B0267"],
);

/// The PIN [`Stack::nurse_card`] gives Jane Doe's card.
pub const NURSE_PIN: &str = "246810";

/// How long the agent may take to bind its socket.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A card the service issued: its file (insert it with [`Stack::insert`]), serial and PIN.
#[derive(Debug, Clone)]
pub struct StackCard {
    /// The virtual card's state file.
    pub file: PathBuf,
    /// Its serial.
    pub serial: CardSerial,
    /// The holder's PIN.
    pub pin: String,
    /// The holder's user id.
    pub user_id: String,
}

/// How the agent is configured.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `session.removal_action`: `logout`, `lock` or `keep`.
    pub removal_action: &'static str,
    /// `session.login_on_insert`.
    pub login_on_insert: bool,
    /// `session.certificate_check_secs`.
    pub certificate_check_secs: u64,
    /// `RUST_LOG` of the agent.
    pub log_filter: String,
    /// The PIN prompt; by default the scripted pinentry reading [`Stack::pin_answers`].
    pub pinentry: Option<PinentrySetup>,
    /// Extra TOML appended to the configuration.
    pub extra_config: String,
    /// Extra environment of the agent, set last; an empty value removes the variable. The agent
    /// has no session bus unless this names one in `DBUS_SESSION_BUS_ADDRESS` (so no test
    /// reaches the keyring of whoever runs it), and `PATH` here decides which `systemctl` it
    /// finds.
    pub env: Vec<(String, String)>,
}

/// A pinentry program for the agent.
#[derive(Debug, Clone)]
pub struct PinentrySetup {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The terminal it asks on (`pinentry.tty`), for a terminal pinentry.
    pub tty: Option<String>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            removal_action: "logout",
            login_on_insert: true,
            certificate_check_secs: 0,
            log_filter: "trace".into(),
            pinentry: None,
            extra_config: String::new(),
            env: Vec::new(),
        }
    }
}

/// The agent process.
#[derive(Debug)]
pub struct AgentProcess {
    child: Child,
    /// Its socket.
    pub socket: PathBuf,
    /// Its log (standard error).
    pub log: PathBuf,
}

impl AgentProcess {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// pcscd with two readers, the service, and (once started) the agent.
pub struct Stack {
    // Field order is drop order: the agent goes before the service and pcscd.
    agent: Option<AgentProcess>,
    server: Option<RunningServer>,
    /// The service, for seeding users and cards and reading its records.
    pub cms: Arc<Cms>,
    /// The runtime the service runs on (also handy for async clients in tests).
    pub runtime: tokio::runtime::Runtime,
    url: String,
    /// pcscd and the readers.
    pub bed: TestBed,
}

impl Stack {
    /// Starts pcscd and the service (no users, no cards, no agent yet).
    pub fn start() -> Result<Self> {
        Self::start_with(Policy::default())
    }

    /// [`Stack::start`] with the service's `policy`.
    pub fn start_with(policy: Policy) -> Result<Self> {
        Self::start_serving(policy, None)
    }

    /// [`Stack::start_with`], with the service's web portal on under `/portal` and its pages
    /// pointed at the agent bridge at `agent_url` (`http://127.0.0.1:PORT`: the port the
    /// agent's `[bridge]` will listen on; its `allowed_origins` take [`Stack::cms_url`]).
    pub fn start_with_portal(policy: Policy, agent_url: &str) -> Result<Self> {
        let portal = cms::portal::PortalConfig::new(agent_url)?;
        Self::start_serving(policy, Some(portal))
    }

    fn start_serving(policy: Policy, portal: Option<cms::portal::PortalConfig>) -> Result<Self> {
        let bed = TestBed::start()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let data = bed.dir().join("cms");
        let cms = Arc::new(
            Cms::init(&DataDir::new(&data), &[], policy)
                .context("initialising the Card Management Service")?,
        );
        let addr = "127.0.0.1:0".parse().context("loopback address")?;
        let server = match portal {
            Some(portal) => {
                runtime.block_on(cms::server::start_with_portal(cms.clone(), addr, portal))
            }
            None => runtime.block_on(cms::server::start(cms.clone(), addr)),
        }
        .context("starting the Card Management Service")?;
        let url = server.url();
        std::fs::write(bed.dir().join("cms-ca.pem"), cms.ca().certificate_pem())?;
        Ok(Self {
            agent: None,
            server: Some(server),
            cms,
            runtime,
            url,
            bed,
        })
    }

    /// The service's base URL.
    pub fn cms_url(&self) -> &str {
        &self.url
    }

    /// The service's CA certificate file.
    pub fn cms_ca_file(&self) -> PathBuf {
        self.bed.dir().join("cms-ca.pem")
    }

    /// Adds a user with `roles`; returns the user id and the role ids.
    pub fn user(&self, name: &str, roles: &[RoleSpec<'_>]) -> Result<(String, Vec<i64>)> {
        let user = self.cms.add_user(name, None)?;
        let mut ids = Vec::new();
        for (organisation, job_role, activities) in roles {
            let activities: Vec<String> = activities.iter().map(|a| a.to_string()).collect();
            ids.push(
                self.cms
                    .add_role_profile(&user.id, organisation, job_role, &activities)?,
            );
        }
        Ok((user.id, ids))
    }

    /// A card for a new nurse, Jane Doe (the holder most tests need), with [`NURSE_PIN`].
    pub fn nurse_card(
        &self,
        serial: CardSerial,
        validity: InitialValidity,
        profile: AtrProfile,
    ) -> Result<StackCard> {
        self.nurse_card_of("Jane Doe", serial, NURSE_PIN, validity, profile)
    }

    /// A card for a new nurse called `name`, with `pin` (see [`Stack::issue`]).
    pub fn nurse_card_of(
        &self,
        name: &str,
        serial: CardSerial,
        pin: &str,
        validity: InitialValidity,
        profile: AtrProfile,
    ) -> Result<StackCard> {
        let (user, _) = self.user(name, &[NURSE])?;
        self.issue(&user, serial, pin, validity, profile)
    }

    /// A new stack (default policy) and Jane Doe's card from [`Stack::nurse_card`].
    pub fn with_nurse_card(
        serial: CardSerial,
        validity: InitialValidity,
        profile: AtrProfile,
    ) -> Result<(Self, StackCard)> {
        let stack = Self::start()?;
        let card = stack.nurse_card(serial, validity, profile)?;
        Ok((stack, card))
    }

    /// Issues a new virtual card (`serial`, ATR `profile`) to `user_id` with `pin`, through
    /// reader 1 over PC/SC, and takes it out again. Call before the agent starts, or with
    /// reader 1 empty.
    pub fn issue(
        &self,
        user_id: &str,
        serial: CardSerial,
        pin: &str,
        validity: InitialValidity,
        profile: AtrProfile,
    ) -> Result<StackCard> {
        let mut spec = CardSpec::new(serial);
        spec.profile = profile;
        self.issue_spec(user_id, spec, pin, validity, KeyAlgorithm::Rsa2048)
    }

    /// A card for a new Registration Authority officer, Rita Admin, holding `roles` (usually
    /// [`RA_OFFICER`]), with `pin`: valid for 500 days, with a Gemalto ATR.
    pub fn officer_card(
        &self,
        roles: &[RoleSpec<'_>],
        serial: CardSerial,
        pin: &str,
    ) -> Result<StackCard> {
        let (rita, _) = self.user("Rita Admin", roles)?;
        self.issue(
            &rita,
            serial,
            pin,
            InitialValidity::Days(500),
            AtrProfile::Gemalto,
        )
    }

    /// Issues a new virtual card made as `spec` says (its management-key algorithms and
    /// metadata among them) to `user_id` with `pin` and a 9A key of `algorithm` (an
    /// `nhs-cis` card from [`CardSpec::new`] for a key other than RSA 2048); see
    /// [`Stack::issue`].
    pub fn issue_spec(
        &self,
        user_id: &str,
        spec: CardSpec,
        pin: &str,
        validity: InitialValidity,
        algorithm: KeyAlgorithm,
    ) -> Result<StackCard> {
        let serial = spec.serial;
        let file = self.bed.dir().join(format!("card-{serial}.json"));
        CardFile::create(&file, &spec)?;
        let inserted = self.bed.insert(1, &file, Faults::default())?;
        let ctx = self.bed.context()?;
        let mut card = PivCard::connect(&ctx, &CString::new(self.bed.reader_name(1))?)?;
        self.cms
            .issue_card(
                &mut card,
                &CardIssuance::for_blank_card(user_id, pin, algorithm, validity),
            )
            .with_context(|| format!("issuing card {serial}"))?;
        card.disconnect()?;
        self.bed.remove(1, inserted)?;
        Ok(StackCard {
            file,
            serial,
            pin: pin.to_owned(),
            user_id: user_id.to_owned(),
        })
    }

    /// Inserts `card` into reader `slot` and waits until pcscd sees it.
    pub fn insert(&self, slot: usize, card: &StackCard) -> Result<InsertedCard> {
        self.bed.insert(slot, &card.file, Faults::default())
    }

    /// [`Stack::insert`] with `faults`.
    pub fn insert_with(
        &self,
        slot: usize,
        card: &StackCard,
        faults: Faults,
    ) -> Result<InsertedCard> {
        self.bed.insert(slot, &card.file, faults)
    }

    /// Deletes the 9A certificate of `card` in reader `slot` with the service's management
    /// key, as another program could; with `new_key`, replaces the card's key first.
    pub fn lose_certificate(&self, slot: usize, card: &StackCard, new_key: bool) -> Result<()> {
        let mut piv = self.bed.connect(slot)?;
        let tx = piv.transaction()?;
        let management = self.cms.card_management_key(&card.serial.to_string())?;
        tx.authenticate_management_key(&mut piv::LocalResponder::new(management))?;
        if new_key {
            tx.generate_key(piv::consts::key::AUTHENTICATION, KeyAlgorithm::P256)?;
        }
        tx.put_data(piv::consts::object::CERT_9A, &[])?;
        drop(tx);
        piv.disconnect()?;
        Ok(())
    }

    /// The service's record of `card`.
    pub fn card_record(&self, card: &StackCard) -> Result<cms::db::CardRecord> {
        let serial = card.serial.to_string();
        self.cms
            .database()
            .card(&serial)?
            .with_context(|| format!("the service has no card {serial}"))
    }

    /// How many API requests the service has served so far.
    pub fn cms_requests(&self) -> u64 {
        self.server.as_ref().map_or(0, RunningServer::requests)
    }

    /// Makes the service unreachable once it has served `total` requests in all (`None`:
    /// serving normally again); see [`RunningServer::refuse_after`].
    pub fn cms_refuse_after(&self, total: Option<u64>) {
        if let Some(server) = &self.server {
            server.refuse_after(total);
        }
    }

    /// Checks that the card `card` in reader `slot` and the service agree: the card's 9A
    /// certificate is the service's active certificate for it, the service has no renewal or
    /// repair open for it (a restore left open changes nothing and gives way to the next
    /// operation), and the card holds the PUK custody derives for the card's PUK generation
    /// (tried by changing the PUK to itself, which also resets its retry counter). The error
    /// names what disagrees.
    pub fn card_agrees_with_cms(&self, slot: usize, card: &StackCard) -> Result<()> {
        let serial = card.serial.to_string();
        let db = self.cms.database();
        let record = db
            .card(&serial)?
            .with_context(|| format!("the CMS has no record of card {serial}"))?;
        let active = db
            .active_certificate(&serial)?
            .with_context(|| format!("the CMS has no active certificate for card {serial}"))?;
        if let Some(op) = db
            .open_operation(&serial)?
            .filter(|op| op.kind != cms_api::OperationKind::Restore)
        {
            bail!(
                "the CMS has {} operation {} open for card {serial} (state {})",
                op.kind.as_str(),
                op.id,
                op.state.as_str()
            );
        }

        let ctx = self.bed.context()?;
        let mut piv = PivCard::connect(&ctx, &CString::new(self.bed.reader_name(slot))?)
            .with_context(|| format!("connecting to the card in reader {slot}"))?;
        let tx = piv.transaction()?;
        let on_card = tx.card_serial().context("reading the card's serial")?;
        if on_card != card.serial {
            bail!("reader {slot} holds card {on_card}, not card {serial}");
        }
        let certificate = tx
            .read_certificate(key::AUTHENTICATION)
            .with_context(|| format!("reading card {serial}'s 9A certificate"))?;
        if certificate.der() != active.der.as_slice() {
            bail!(
                "card {serial}'s 9A certificate (serial {}) is not the CMS's active certificate \
                 (serial {})",
                certificate.serial_hex(),
                active.serial
            );
        }
        let puk = self.cms.custody().puk(card.serial, record.puk_generation);
        let puk = Puk::new(&puk)?;
        tx.change_puk(&puk, &puk).with_context(|| {
            format!(
                "card {serial} does not take the PUK of generation {} the CMS's custody derives",
                record.puk_generation
            )
        })?;
        drop(tx);
        piv.disconnect()?;
        Ok(())
    }

    /// Signs in to the service with the card in reader `slot`, without the agent: `pin`
    /// verified on the card, the service's challenge signed by the card's 9A key.
    pub fn sign_in_directly(&self, slot: usize, pin: &str) -> Result<SessionCreated> {
        let client = CmsClient::new(&self.url, self.cms.ca().certificate_pem())?;
        let ctx = self.bed.context()?;
        let mut piv = PivCard::connect(&ctx, &CString::new(self.bed.reader_name(slot))?)
            .with_context(|| format!("connecting to the card in reader {slot}"))?;
        let tx = piv.transaction()?;
        tx.verify_pin(&Pin::new(pin)?)
            .context("verifying the PIN on the card")?;
        let serial = tx.card_serial()?.to_string();
        let certificate = tx.read_certificate(key::AUTHENTICATION)?;
        let algorithm = certificate.public_key()?.algorithm()?;
        let (created, _) = self
            .runtime
            .block_on(client.authenticate(&serial, certificate.der(), |message| {
                tx.sign(key::AUTHENTICATION, algorithm, message)
            }))
            .with_context(|| format!("signing in with card {serial}"))?;
        drop(tx);
        piv.disconnect()?;
        Ok(created)
    }

    /// The scripted pinentry's answers, one per prompt, in order (`!cancel` cancels).
    pub fn pin_answers(&self, answers: &[&str]) -> Result<()> {
        let script = self.bed.dir().join("pinentry-script");
        let _ = std::fs::remove_file(script.with_extension("pos"));
        let mut text = answers.join("\n");
        text.push('\n');
        std::fs::write(&script, text)?;
        let _ = std::fs::remove_file(self.bed.dir().join("pinentry-script.pos"));
        Ok(())
    }

    /// What the scripted pinentry was asked, one JSON object per prompt.
    pub fn pin_prompts(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.bed.dir().join("pinentry.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Starts the agent with `options` and waits until its socket answers.
    pub fn start_agent(&mut self, options: &AgentOptions) -> Result<&AgentProcess> {
        if self.agent.is_some() {
            bail!("the agent is already running");
        }
        let (mut command, socket, log) = self.agent_command(options)?;
        let child = command
            .env_remove("NOTIFY_SOCKET")
            .spawn()
            .context("starting identity-agent")?;
        let mut agent = AgentProcess { child, socket, log };
        wait_until_serving(&mut agent)?;
        Ok(self.agent.insert(agent))
    }

    /// The command that starts the agent in the foreground with `options` (configuration
    /// written, state and socket in the stack's directory, standard error to a new log), its
    /// socket path and its log path.
    pub fn agent_command(&self, options: &AgentOptions) -> Result<(Command, PathBuf, PathBuf)> {
        let dir = self.bed.dir().to_path_buf();
        if !dir.join("pinentry-script").exists() {
            self.pin_answers(&[])?;
        }
        let config = dir.join("agent.toml");
        std::fs::write(&config, self.agent_config(options)?)?;
        let socket = dir.join("run").join("agent.sock");
        let log = dir.join(format!("agent-{}.log", next_log_number(&dir)));
        let mut command = Command::new(workspace_binary("identity-agent")?);
        command
            .arg("--foreground")
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", &options.log_filter)
            .env("XDG_STATE_HOME", dir.join("state"))
            .env("DBUS_SESSION_BUS_ADDRESS", no_session_bus(&dir))
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        for (name, value) in &options.env {
            match value.is_empty() {
                true => command.env_remove(name),
                false => command.env(name, value),
            };
        }
        Ok((command, socket, log))
    }

    /// The agent's configuration for `options`.
    pub fn agent_config(&self, options: &AgentOptions) -> Result<String> {
        let dir = self.bed.dir();
        let pinentry = match &options.pinentry {
            Some(setup) => setup.clone(),
            None => PinentrySetup {
                program: workspace_binary("ia-pinentry")?,
                args: ["--script", "--log"]
                    .iter()
                    .zip(["pinentry-script", "pinentry.log"])
                    .flat_map(|(flag, file)| {
                        [flag.to_string(), dir.join(file).display().to_string()]
                    })
                    .collect(),
                tty: None,
            },
        };
        let tty = pinentry
            .tty
            .map(|t| format!("tty = {t:?}\n"))
            .unwrap_or_default();
        Ok(format!(
            "[cms]\nurl = {url:?}\nca_file = {ca:?}\n\n\
             [pinentry]\nprogram = {program:?}\nargs = {args:?}\ntimeout_secs = 60\n{tty}\n\
             [session]\nremoval_action = {removal:?}\nlogin_on_insert = {auto}\ncertificate_check_secs = {check}\n\n{extra}\n",
            url = self.url,
            ca = self.cms_ca_file(),
            program = pinentry.program,
            args = pinentry.args,
            removal = options.removal_action,
            auto = options.login_on_insert,
            check = options.certificate_check_secs,
            extra = options.extra_config,
        ))
    }

    /// The running agent.
    pub fn agent(&self) -> Result<&AgentProcess> {
        self.agent.as_ref().context("the agent is not running")
    }

    /// The agent's socket.
    pub fn socket(&self) -> Result<PathBuf> {
        Ok(self.agent()?.socket.clone())
    }

    /// Stops the agent with SIGTERM and waits for it; returns its exit status.
    pub fn stop_agent(&mut self) -> Result<std::process::ExitStatus> {
        let mut agent = self.agent.take().context("the agent is not running")?;
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(agent.child.id() as i32, libc::SIGTERM) };
        wait_with_timeout(&mut agent.child, Duration::from_secs(10))
    }

    /// Kills the agent with SIGKILL and waits for it.
    pub fn kill_agent(&mut self) -> Result<()> {
        let mut agent = self.agent.take().context("the agent is not running")?;
        agent.child.kill()?;
        agent.child.wait()?;
        Ok(())
    }

    /// Every agent log of this stack, concatenated.
    pub fn agent_logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.bed.dir()) {
            let mut logs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("agent-") && n.ends_with(".log"))
                })
                .collect();
            logs.sort();
            for log in logs {
                all.push_str(&std::fs::read_to_string(log).unwrap_or_default());
            }
        }
        all
    }

    /// The agent's audit log.
    pub fn audit_log(&self) -> String {
        std::fs::read_to_string(self.bed.dir().join("state/identity-agent/audit.log"))
            .unwrap_or_default()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.child.kill();
            let _ = agent.child.wait();
        }
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop());
        }
    }
}

/// A session bus address nothing listens on, in the stack's directory.
pub fn no_session_bus(dir: &Path) -> String {
    format!("unix:path={}", dir.join("no-session-bus").display())
}

fn next_log_number(dir: &Path) -> usize {
    (1..)
        .find(|n| !dir.join(format!("agent-{n}.log")).exists())
        .unwrap_or(1)
}

/// Waits until the agent answers `hello` on its socket, or fails with its log.
fn wait_until_serving(agent: &mut AgentProcess) -> Result<()> {
    let deadline = Instant::now() + AGENT_START_TIMEOUT;
    loop {
        if let Some(status) = agent.child.try_wait()? {
            let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
            bail!("identity-agent exited ({status}) before serving:\n{log}");
        }
        if hello(&agent.socket).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
            bail!("identity-agent did not serve within {AGENT_START_TIMEOUT:?}:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Says `hello` on `socket` and reads the answer.
fn hello(socket: &Path) -> Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    writeln!(
        stream,
        "{{\"id\":0,\"method\":\"hello\",\"params\":{{\"protocol\":{}}}}}",
        agent_ipc::PROTOCOL_VERSION
    )?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if !line.contains("\"result\"") {
        bail!("unexpected hello answer: {line}");
    }
    Ok(line)
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A binary of this workspace beside the running executable (tests run from
/// `target/<profile>/deps`, binaries from `target/<profile>`), built first if missing.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .collect();
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let package = match name {
        "ia-testbed" | "agent-bench" => "tests",
        "ia-pinentry" => "ia-pinentry",
        "cardsim" => "cardsim",
        "identity-agent-tray" => "tray",
        _ => "agent",
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .with_context(|| format!("building {name}"))?;
    if !status.success() {
        bail!("building {name} failed");
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not beside {}", exe.display()))
}
