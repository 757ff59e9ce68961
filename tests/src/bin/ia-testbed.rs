//! The whole default stack by hand: `ia-testbed demo` starts a private pcscd with two virtual
//! readers, the reference CMS with demo users and cards, and the identity agent with a PIN
//! prompt that fits the display or terminal, then prints what to try until Ctrl-C.
//! `ia-testbed demo --once` walks insert → PIN → signed in → role → ticket → remove → signed
//! out (and an expired card refused) by itself, printing each step; CI runs it as a smoke test.

use agent_ipc::{Client, Event, SessionEndReason, SessionState, Subscription};
use anyhow::{bail, Context as _, Result};
use cardsim::AtrProfile;
use clap::{Parser, Subcommand};
use cms::issuance::InitialValidity;
use cms::policy::Policy;
use cms_api::client::CmsClient;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use testbed::bridge::free_port;
use testbed::stack::{
    workspace_binary, AgentOptions, PinentrySetup, Stack, StackCard, NURSE, RA_OFFICER,
    WARD_MANAGER,
};

#[derive(Parser)]
#[command(about = "The identity agent's whole stack on one machine, with virtual cards")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start pcscd, the CMS with demo users and cards, and the agent; run until Ctrl-C.
    Demo {
        /// Walk through a sign-in and sign-out by itself, then stop.
        #[arg(long)]
        once: bool,
    },
}

/// The demo cards, their holders and PINs.
struct DemoCards {
    expiring: StackCard,
    healthy: StackCard,
    expired: StackCard,
}

const STEP_TIMEOUT: Duration = Duration::from_secs(15);

fn main() -> Result<()> {
    let Command::Demo { once } = Cli::parse().command;
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .context("installing the Ctrl-C handler")?;

    println!("Identity Agent — demo stack");
    let bridge_port = free_port()?;
    let mut stack = Stack::start_with_portal(
        Policy::default(),
        &format!("http://127.0.0.1:{bridge_port}"),
    )
    .context("starting pcscd and the CMS")?;
    println!(
        "  pcscd      private instance with readers {:?} and {:?}",
        stack.bed.reader_name(0),
        stack.bed.reader_name(1)
    );
    println!("  CMS        {} (SQLite, its own CA)", stack.cms_url());
    let portal = format!("{}/portal/", stack.cms_url());
    let cards = demo_cards(&stack)?;
    let pinentry = if once { None } else { interactive_pinentry() };
    let prompt = pinentry
        .as_ref()
        .map_or("scripted (answers the demo PIN)".to_owned(), |p| {
            p.program.display().to_string()
        });
    let options = AgentOptions {
        log_filter: "info".into(),
        pinentry: Some(pinentry.unwrap_or(PinentrySetup {
            program: workspace_binary("ia-pinentry")?,
            args: vec!["--pin".into(), cards.expiring.pin.clone()],
            tty: None,
        })),
        // The portal's pages reach the agent through its web bridge, open to their origin only.
        extra_config: format!(
            "[bridge]\nport = {bridge_port}\nallowed_origins = [{:?}]\n",
            stack.cms_url()
        ),
        ..AgentOptions::default()
    };
    let started = Instant::now();
    let agent = stack
        .start_agent(&options)
        .context("starting identity-agent")?;
    println!(
        "  agent      pid {}, socket ready in {} ms, PIN prompt: {prompt}",
        agent.pid(),
        started.elapsed().as_millis()
    );
    println!("             log {}", agent.log.display());
    println!(
        "  portal     {portal} (trust {} in the browser); the pages reach the agent's bridge \
         on 127.0.0.1:{bridge_port}",
        stack.cms_ca_file().display()
    );
    let socket = stack.socket()?;

    if once {
        walk_through(&stack, &cards, bridge_port)?;
        stack.stop_agent()?;
        println!("Agent stopped. Demo done.");
        return Ok(());
    }

    let _tray = start_tray(&socket, &portal);
    let bin = workspace_binary("iactl")?;
    let cardsim = workspace_binary("cardsim")?;
    println!();
    println!("Try, in another terminal:");
    println!("  export IDENTITY_AGENT_SOCKET={}", socket.display());
    println!("  {} status", bin.display());
    println!("  {} events --follow", bin.display());
    println!("Insert a card (Ctrl-C in that terminal pulls it):");
    for (what, card) in [
        ("Jane Doe, expires in 30 days", &cards.expiring),
        ("Rita Admin (RA, B0267), healthy", &cards.healthy),
        ("Harry Holder, expired", &cards.expired),
    ] {
        println!("  # {what}: PIN {}", card.pin);
        println!(
            "  {} insert {} --port {}",
            cardsim.display(),
            card.file.display(),
            stack.bed.vpcd_addr(0).port()
        );
    }
    println!(
        "(port {} is the second reader.)",
        stack.bed.vpcd_addr(1).port()
    );
    println!("Events follow; Ctrl-C stops the demo.");
    let mut events = stack
        .runtime
        .block_on(async { Client::connect(&socket).await?.subscribe().await })?;
    stack.runtime.spawn(async move {
        while let Ok(event) = events.next_event().await {
            println!("  event: {}", describe(&event));
        }
    });
    let _ = stop_rx.recv();
    stack.stop_agent()?;
    println!("Agent stopped.");
    Ok(())
}

/// The tray, on a desktop (`DISPLAY` or `WAYLAND_DISPLAY` set); ended when the demo ends.
fn start_tray(socket: &std::path::Path, portal: &str) -> Option<TrayProcess> {
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        println!("  tray       not started (no display)");
        return None;
    }
    let program = match workspace_binary("identity-agent-tray") {
        Ok(program) => program,
        Err(e) => {
            println!("  tray       not started: {e:#}");
            return None;
        }
    };
    match std::process::Command::new(program)
        .arg("--socket")
        .arg(socket)
        .env("IDENTITY_AGENT_PORTAL_URL", portal)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(std::process::Stdio::null())
        .spawn()
    {
        Ok(child) => {
            println!(
                "  tray       pid {} (identity-agent-tray: icon, menu, notifications)",
                child.id()
            );
            Some(TrayProcess(child))
        }
        Err(e) => {
            println!("  tray       not started: {e}");
            None
        }
    }
}

/// The tray started by the demo, stopped with it.
struct TrayProcess(std::process::Child);

impl Drop for TrayProcess {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// The demo users and cards: a holder whose card expires in 30 days, an RA officer with a
/// healthy card, and a holder whose card has expired.
fn demo_cards(stack: &Stack) -> Result<DemoCards> {
    let (jane, _) = stack.user("Jane Doe", &[NURSE, WARD_MANAGER])?;
    let (rita, _) = stack.user("Rita Admin", &[RA_OFFICER])?;
    let (harry, _) = stack.user("Harry Holder", &[NURSE])?;
    let started = Instant::now();
    let cards = DemoCards {
        expiring: stack.issue(
            &jane,
            "4082A001132F2817".parse()?,
            "246810",
            InitialValidity::Days(30),
            AtrProfile::NhsCis,
        )?,
        healthy: stack.issue(
            &rita,
            "4082A001132F2818".parse()?,
            "864209",
            InitialValidity::Days(700),
            AtrProfile::Gemalto,
        )?,
        expired: stack.issue(
            &harry,
            "4082A001132F2819".parse()?,
            "975310",
            InitialValidity::Expired,
            AtrProfile::Oberthur,
        )?,
    };
    println!(
        "  cards      3 issued by the CMS over PC/SC in {} ms (keys made on the cards):",
        started.elapsed().as_millis()
    );
    for details in stack.cms.all_cards()? {
        println!("             {}", details.row.join("  "));
    }
    Ok(cards)
}

/// A PIN prompt that fits: a graphical pinentry on a display, else the curses one on this
/// terminal; none (scripted) without either.
fn interactive_pinentry() -> Option<PinentrySetup> {
    let find = |name: &str| {
        let path = PathBuf::from("/usr/bin").join(name);
        path.is_file().then_some(path)
    };
    if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some() {
        if let Some(program) = find("pinentry-gnome3").or_else(|| find("pinentry-gtk-2")) {
            return Some(PinentrySetup {
                program,
                args: Vec::new(),
                tty: None,
            });
        }
    }
    let tty = std::fs::read_link("/proc/self/fd/0").ok()?;
    if !tty.starts_with("/dev/pts") && !tty.starts_with("/dev/tty") {
        return None;
    }
    Some(PinentrySetup {
        program: find("pinentry-curses")?,
        args: Vec::new(),
        tty: Some(tty.display().to_string()),
    })
}

/// Insert → PIN → signed in → role → ticket → pulled → signed out, then an expired card.
fn walk_through(stack: &Stack, cards: &DemoCards, bridge_port: u16) -> Result<()> {
    let rt = &stack.runtime;
    let socket = stack.socket()?;
    let mut events = rt.block_on(async { Client::connect(&socket).await?.subscribe().await })?;
    let mut client = rt.block_on(Client::connect(&socket))?;

    println!(
        "1. Insert Jane Doe's card into {:?}",
        stack.bed.reader_name(0)
    );
    let inserted_at = Instant::now();
    let card = stack.insert(0, &cards.expiring)?;
    let seen = next(stack, &mut events, |e| {
        matches!(e, Event::CardInserted { .. })
    })?;
    println!("   {}", describe(&seen));
    next(stack, &mut events, |e| {
        matches!(
            e,
            Event::SessionState {
                state: SessionState::WaitingForPin
            }
        )
    })?;
    println!("   the agent asks for the PIN through pinentry");
    let started = next(stack, &mut events, |e| {
        matches!(e, Event::SessionStarted { .. } | Event::LoginFailed { .. })
    })?;
    if !matches!(started, Event::SessionStarted { .. }) {
        bail!("sign-in failed: {}", describe(&started));
    }
    println!(
        "2. {} ({} ms after the card went in)",
        describe(&started),
        inserted_at.elapsed().as_millis()
    );

    let roles = rt.block_on(client.roles())?;
    let manager = roles
        .roles
        .iter()
        .find(|r| r.job_role == "Ward Manager")
        .context("Jane holds the Ward Manager role")?;
    rt.block_on(client.select_role(&manager.id, true))?;
    let changed = next(stack, &mut events, |e| {
        matches!(e, Event::RoleChanged { .. })
    })?;
    println!("3. {}", describe(&changed));

    let ticket = rt.block_on(client.ticket())?;
    let cms = CmsClient::new(stack.cms_url(), stack.cms.ca().certificate_pem())?;
    let valid = rt.block_on(cms.validate_ticket(&ticket.ticket))?;
    println!(
        "4. the session ticket is accepted by the CMS: {} as {}",
        valid.user.name,
        valid.role.map_or("no role".into(), |r| r.job_role)
    );
    let (code, body) = bridge_status(bridge_port, stack.cms_url())?;
    if code != 200 || !body.contains("\"signed_in\"") {
        bail!("the bridge answered the portal's origin {code}: {body}");
    }
    let (refused, _) = bridge_status(bridge_port, "https://elsewhere.example")?;
    if refused != 403 {
        bail!("the bridge answered another origin {refused}");
    }
    println!(
        "   the portal's pages read the status through the agent's bridge; another origin gets {refused}"
    );

    println!("5. Pull the card");
    stack.bed.remove(0, card)?;
    let ended = next(stack, &mut events, |e| {
        matches!(
            e,
            Event::SessionEnded {
                reason: SessionEndReason::CardRemoved,
                ..
            }
        )
    })?;
    println!("   {}", describe(&ended));

    println!("6. Insert Harry Holder's expired card");
    let expired = stack.insert(0, &cards.expired)?;
    let refused = next(stack, &mut events, |e| {
        matches!(e, Event::LoginFailed { .. })
    })?;
    println!("   {}", describe(&refused));
    stack.bed.remove(0, expired)?;
    next(stack, &mut events, |e| {
        matches!(e, Event::CardRemoved { .. })
    })?;
    let status = rt.block_on(client.status())?;
    println!(
        "7. status: session {:?}, {} readers",
        status.session.state,
        status.readers.len()
    );
    Ok(())
}

/// `GET /v1/status` on the agent's bridge as a page of `origin` would ask it: the HTTP status
/// code and the body.
fn bridge_status(port: u16, origin: &str) -> Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to the agent's bridge on port {port}"))?;
    stream.set_read_timeout(Some(STEP_TIMEOUT))?;
    write!(
        stream,
        "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\n\
         Connection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("the bridge's answer is not HTTP: {answer:?}"))?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((code, body.to_owned()))
}

/// The next event matching `wanted`, within [`STEP_TIMEOUT`].
fn next(
    stack: &Stack,
    events: &mut Subscription,
    wanted: impl Fn(&Event) -> bool,
) -> Result<Event> {
    stack.runtime.block_on(async {
        tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                let event = events.next_event().await?;
                if wanted(&event) {
                    return Ok(event);
                }
            }
        })
        .await
        .context("the agent did not report the step in time")?
    })
}

/// One line for an event.
fn describe(event: &Event) -> String {
    match event {
        Event::CardInserted { reader, card } => format!(
            "card inserted in {reader}: {} {} of {}, {}",
            card.card_type,
            card.serial.as_deref().unwrap_or("(no serial)"),
            card.holder.as_deref().unwrap_or("(holder not named)"),
            match (&card.expires_on, card.days_left) {
                (_, _) if card.expired => "EXPIRED".to_owned(),
                (Some(on), Some(days)) => format!("expires {on} ({days} days)"),
                _ => "no expiry known".to_owned(),
            }
        ),
        Event::SessionStarted { session } => format!(
            "signed in as {}{}",
            session.user.as_ref().map_or("?", |u| u.name.as_str()),
            session
                .role
                .as_ref()
                .map_or(String::new(), |r| format!(" ({})", r.job_role))
        ),
        Event::SessionEnded { reason, .. } => format!("signed out: {reason:?}"),
        Event::RoleChanged { role } => {
            format!("role selected: {} at {}", role.job_role, role.organisation)
        }
        Event::LoginFailed { error, .. } => format!("sign-in refused: {}", error.message),
        other => serde_json::to_string(other).unwrap_or_else(|_| other.name().to_owned()),
    }
}
