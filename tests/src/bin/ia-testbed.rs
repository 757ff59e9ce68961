//! The test bed by hand: `ia-testbed demo` runs a private pcscd with two virtual readers, issues
//! a virtual PIV card over PC/SC, reads it back and keeps it inserted until Ctrl-C.

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use piv::consts::key;
use piv::{KeyAlgorithm, Pin, PinStatus, PivCard};
use std::ffi::CString;
use std::time::{Instant, SystemTime};
use testbed::issue::{issue_card, Issuance};
use testbed::pki::TestCa;
use testbed::TestBed;

#[derive(Parser)]
#[command(about = "The identity agent's test bed: private pcscd, virtual readers, virtual cards")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Issue a virtual card, read it back over PC/SC and keep it inserted until Ctrl-C.
    Demo {
        /// Remove the card and stop after the walk-through instead of waiting for Ctrl-C.
        #[arg(long)]
        once: bool,
    },
}

/// The PIN of the demo card (the virtual card's default).
const DEMO_PIN: &str = "123456";

fn main() -> Result<()> {
    let Command::Demo { once } = Cli::parse().command;
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .context("installing the Ctrl-C handler")?;

    let bed = TestBed::start().context("starting the private pcscd")?;
    let (env_name, socket) = bed.client_env();
    println!("Identity Agent test bed");
    println!(
        "  pcscd        private instance, clients use {env_name}={}",
        socket.display()
    );
    println!(
        "  readers      {:?}, {:?}",
        bed.reader_name(0),
        bed.reader_name(1)
    );

    let mut ca = TestCa::new("Identity Agent Demo CA")?;
    let serial = "4082A001132F2817".parse()?;
    let started = Instant::now();
    let issued = issue_card(&bed, 0, &mut ca, &Issuance::new(serial, "Demo Holder"))
        .context("issuing the demo card")?;
    println!(
        "Issued a virtual card in {:?} over PC/SC in {} ms (RSA-2048 key generated on the card)",
        bed.reader_name(0),
        started.elapsed().as_millis()
    );

    show_card(&bed, 0)?;

    println!("Try, in another terminal (as root):");
    println!(
        "  {env_name}={} pkcs15-tool --list-certificates",
        socket.display()
    );
    println!(
        "  {env_name}={} yubico-piv-tool -r 'Virtual PCD 00 00' -a status",
        socket.display()
    );
    println!("  target/debug/cardsim show {}", issued.file.display());
    if !once {
        println!("Running until Ctrl-C.");
        let _ = stop_rx.recv();
    }
    bed.remove(0, issued.inserted)?;
    println!(
        "Card removed: pcscd reports {:?} empty. Done.",
        bed.reader_name(0)
    );
    Ok(())
}

/// Reads the card in reader `slot` back over PC/SC and prints what an agent would show.
fn show_card(bed: &TestBed, slot: usize) -> Result<()> {
    let ctx = bed.context()?;
    let mut card = PivCard::connect(&ctx, &CString::new(bed.reader_name(slot))?)?;
    let atr = card.atr().to_vec();
    let profile = cardsim::AtrProfile::ALL
        .into_iter()
        .find(|p| p.atr() == atr);
    let tx = card.transaction()?;
    let serial = tx.card_serial()?;
    let certificate = tx.read_certificate(key::AUTHENTICATION)?;
    let days_left = certificate
        .not_after()
        .duration_since(SystemTime::now())
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    let tries = match tx.pin_status()? {
        PinStatus::Verified => "verified".to_owned(),
        PinStatus::NotVerified { tries_left } => format!("{tries_left} tries left"),
        PinStatus::Blocked => "blocked".to_owned(),
    };
    tx.verify_pin(&Pin::new(DEMO_PIN)?)?;
    let challenge = b"identity agent demo challenge";
    let signature = tx.sign(key::AUTHENTICATION, KeyAlgorithm::Rsa2048, challenge)?;
    certificate.verify(challenge, &signature)?;
    tx.logout()?;
    drop(tx);
    card.disconnect()?;

    println!("Card in {:?}", bed.reader_name(slot));
    println!(
        "  ATR          {} ({})",
        hex::encode_upper(&atr),
        profile.map_or("unknown card", |p| p.name())
    );
    println!("  serial       {serial}");
    println!("  certificate  {}", certificate.subject());
    println!("  issued by    {}", certificate.issuer());
    println!(
        "  expires      {} ({days_left} days left)",
        certificate.x509().tbs_certificate.validity.not_after
    );
    println!("  PIN          {tries}");
    println!(
        "  signature    a challenge signed by the card's 9A key verifies against the certificate"
    );
    Ok(())
}
