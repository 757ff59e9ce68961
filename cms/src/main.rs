//! `cms`: the admin CLI and server of the reference Card Management Service.

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use cms::cli::{Algorithm, Cli, Command, IssueArgs, ServeArgs};
use cms::issuance::{CardIssuance, InitialValidity};
use cms::{dates, server, Cms, DataDir, Policy};
use piv::{KeyAlgorithm, PivCard};
use std::ffi::CString;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Transport and TLS crates stay quiet whatever RUST_LOG says: their traces carry payloads.
    for quiet in [
        "rustls=warn",
        "tokio_rustls=warn",
        "hyper=warn",
        "hyper_util=warn",
        "h2=warn",
        "reqwest=warn",
    ] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    // Colour only on a terminal: under systemd standard error goes to journald, which would
    // keep the escape codes.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> Result<()> {
    // Whatever the service writes is its user's alone, even a file some library creates; the
    // data directory's files are also created with their modes, and checked at start.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    init_logging();
    let data_dir = DataDir::new(&cli.data_dir);
    match cli.command {
        Command::Init { hostnames } => {
            let cms = Cms::init(&data_dir, &hostnames, Policy::default())
                .with_context(|| format!("initialising {}", cli.data_dir.display()))?;
            println!(
                "CA certificate: {}",
                cms.data_dir().ca_files().ca_certificate.display()
            );
        }
        Command::Serve(args) => serve(&data_dir, args)?,
        Command::AddUser { name, id } => {
            let user = open(&data_dir)?
                .add_user(&name, id.as_deref())
                .context("adding the user")?;
            println!("{}", user.id);
        }
        Command::AddRoleProfile {
            user,
            organisation,
            job_role,
            activities,
        } => {
            let id = open(&data_dir)?
                .add_role_profile(&user, &organisation, &job_role, &activities)
                .context("adding the role profile")?;
            println!("{id}");
        }
        Command::IssueCard(args) => issue_card(&data_dir, args)?,
        Command::ListCards => {
            let cards = open(&data_dir)?.all_cards().context("listing cards")?;
            println!(
                "{:<16}  {:<9}  {:<8}  {:<11}  {:<12}  {:<12}  holder",
                "Serial Number", "Format", "Type", "Issued on", "Certs expire", "Cancelled on"
            );
            for card in cards {
                let [serial, format, card_type, issued, expires, cancelled] = &card.row;
                let holder = match &card.holder_name {
                    Some(name) => format!("{name} ({})", card.holder_id),
                    None => card.holder_id.clone(),
                };
                println!(
                    "{serial:<16}  {format:<9}  {card_type:<8}  {issued:<11}  {expires:<12}  {cancelled:<12}  {holder}"
                );
            }
        }
        Command::CancelCard { serial, reason } => {
            let card = open(&data_dir)?
                .admin_cancel_card(&serial, &reason)
                .with_context(|| format!("cancelling card {serial}"))?;
            println!(
                "card {} cancelled on {}",
                card.serial,
                card.cancelled_on.unwrap_or_default()
            );
        }
        Command::Audit { card, limit } => {
            let entries = open(&data_dir)?
                .database()
                .audit_log(card.as_deref(), limit)
                .context("reading the audit log")?;
            for e in entries {
                // An anonymous line (a failed sign-in) names the client's address.
                let actor = match &e.client {
                    Some(client) => format!("{}@{client}", e.actor),
                    None => e.actor,
                };
                println!(
                    "{} {} {:<20} {:<16} {:<36} {}",
                    e.id,
                    dates::iso_date(e.at),
                    e.action,
                    e.card_serial.unwrap_or_else(|| "-".into()),
                    actor,
                    e.detail
                );
            }
        }
    }
    Ok(())
}

fn open(data_dir: &DataDir) -> Result<Cms> {
    Cms::open(data_dir, Policy::default())
        .with_context(|| format!("opening the service in {}", data_dir.root().display()))
}

fn serve(data_dir: &DataDir, args: ServeArgs) -> Result<()> {
    let policy = Policy {
        challenge_ttl: Duration::from_secs(args.challenge_seconds),
        session_ttl: Duration::from_secs(args.session_minutes * 60),
        card_capacity: args.card_capacity,
        minimum_agent_version: args.min_agent_version,
        blocked_agent_versions: args.blocked_agent_versions,
        throttling: args.throttling.throttling(),
        ..Policy::default()
    };
    let cms = Cms::init(data_dir, &args.hostnames, policy)
        .with_context(|| format!("opening the service in {}", data_dir.root().display()))?;
    let ca_files = cms.data_dir().ca_files();
    let ca_path = ca_files.ca_certificate.clone();
    let tls = match (args.tls_certificate, args.tls_key) {
        (Some(certificate_chain), Some(key)) => server::TlsFiles {
            certificate_chain,
            key,
            issuer: None,
        },
        _ => server::TlsFiles::own(&ca_files),
    };
    let limits = args.limits.limits();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let portal = args.portal_agent_url;
        let portal_agent = portal.as_ref().map(|p| p.agent_url());
        let running = server::start_serving(Arc::new(cms), args.listen, &tls, &limits, portal)
            .await
            .context("starting the HTTPS server")?;
        println!("CA certificate: {}", ca_path.display());
        if tls.issuer.is_none() {
            println!("TLS certificate: {}", tls.certificate_chain.display());
        }
        println!("listening on {}", running.url());
        if let Some(agent) = portal_agent {
            println!(
                "portal on {}/portal/, talking to the identity agent at {agent}",
                running.url()
            );
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        running.stop().await;
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn issue_card(data_dir: &DataDir, args: IssueArgs) -> Result<()> {
    let cms = open(data_dir)?;
    let ctx = pcsc::Context::establish(pcsc::Scope::User)
        .context("connecting to pcscd (is it running?)")?;
    let reader = match args.reader {
        Some(name) => CString::new(name).context("reader name")?,
        None => first_reader_with_card(&ctx)?,
    };
    let mut card = PivCard::connect(&ctx, &reader)
        .with_context(|| format!("connecting to the card in {}", reader.to_string_lossy()))?;
    let current_management_key = match &args.management_key {
        Some(digits) => Some(Zeroizing::new(
            hex::decode(digits.trim()).context("the current management key is not hex")?,
        )),
        None => None,
    };
    let validity = if args.expired {
        InitialValidity::Expired
    } else {
        InitialValidity::Days(
            args.expires_in_days
                .unwrap_or(cms.policy().certificate_days),
        )
    };
    let issuance = CardIssuance {
        user_id: args.user,
        pin: Zeroizing::new(args.pin),
        algorithm: match args.algorithm {
            Algorithm::Rsa2048 => KeyAlgorithm::Rsa2048,
            Algorithm::P256 => KeyAlgorithm::P256,
        },
        validity,
        current_management_key,
        management_algorithms: args.management_algorithms,
        current_pin: Zeroizing::new(args.current_pin),
        current_puk: Zeroizing::new(args.current_puk),
        serial: args.serial,
    };
    let issued = cms
        .issue_card(&mut card, &issuance)
        .context("issuing the card")?;
    card.disconnect().context("disconnecting from the card")?;
    println!(
        "issued card {} ({}, {} management key) to {}: certificate {} expires {}",
        issued.serial,
        issued.card_type,
        issued.management_algorithm,
        issuance.user_id,
        issued.certificate.serial,
        dates::iso_date(issued.certificate.not_after)
    );
    Ok(())
}

fn first_reader_with_card(ctx: &pcsc::Context) -> Result<CString> {
    let readers = ctx.list_readers_owned().context("listing readers")?;
    let mut states: Vec<pcsc::ReaderState> = readers
        .into_iter()
        .map(|r| pcsc::ReaderState::new(r, pcsc::State::UNAWARE))
        .collect();
    if states.is_empty() {
        bail!("no smartcard reader is connected");
    }
    ctx.get_status_change(Duration::from_secs(1), &mut states)
        .context("reading the readers' state")?;
    states
        .iter()
        .find(|s| s.event_state().contains(pcsc::State::PRESENT))
        .map(|s| s.name().to_owned())
        .context("no reader holds a card: insert the blank card or name the reader with --reader")
}
