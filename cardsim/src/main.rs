//! `cardsim`: create, insert, remove and inspect virtual PIV cards.

use anyhow::{anyhow, bail, Context, Result};
use cardsim::slot_key::algorithm_name;
use cardsim::state::algorithm_from_name;
use cardsim::{AtrProfile, CardFile, CardSpec, Faults};
use clap::{Parser, Subcommand};
use der::{Decode, EncodePem};
use piv::{CardSerial, ManagementAlgorithm, ManagementKey};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use x509_cert::Certificate;

#[derive(Parser)]
#[command(
    name = "cardsim",
    version,
    about = "A virtual PIV smartcard for the vpcd reader"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Personalise a new card file.
    Create(CreateArgs),
    /// Insert a card into a vpcd reader and serve it until SIGINT/SIGTERM or disconnection.
    Insert {
        /// The card file.
        file: PathBuf,
        /// The vpcd port of the reader.
        #[arg(long)]
        port: u16,
        /// The vpcd host.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Pull the card after it has answered this many APDUs.
        #[arg(long)]
        pull_after: Option<u32>,
        /// Delay every reply by this many milliseconds.
        #[arg(long)]
        delay_ms: Option<u64>,
        /// Answer one instruction with a fixed status word: INS:SW in hex, e.g. 20:6983.
        #[arg(long)]
        force_status: Option<String>,
        /// Flip every byte of reply data, keeping the status word.
        #[arg(long)]
        corrupt_replies: bool,
        /// Refuse to power on (no ATR).
        #[arg(long)]
        refuse_power_on: bool,
    },
    /// Stop the `cardsim insert` serving this card file.
    Remove {
        /// The card file.
        file: PathBuf,
    },
    /// Show a card: serial, profile, tries left, slots and objects (never secrets).
    Show {
        /// The card file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What `create` personalises.
#[derive(clap::Args)]
struct CreateArgs {
    /// The card file to write.
    file: PathBuf,
    /// The card serial: 16 hex digits.
    #[arg(long)]
    serial: CardSerial,
    /// ATR profile: nhs-cis, gemalto, oberthur, piv, yubikey or javacard (an ATR that names
    /// no card type).
    #[arg(long, default_value = "nhs-cis")]
    profile: AtrProfile,
    /// The PIN (default 123456).
    #[arg(long)]
    pin: Option<String>,
    /// The PUK (default 12345678).
    #[arg(long)]
    puk: Option<String>,
    /// The 9B key's algorithm: 3des (a YubiKey before 5.7), aes128, aes192 (5.7 and
    /// later) or aes256. The card gets that algorithm's factory key (01 02 … 08 repeated)
    /// and takes only keys of it, unless --mgmt-accepts says more.
    #[arg(long, default_value = "3des")]
    mgmt_alg: ManagementAlgorithm,
    /// The algorithms SET MANAGEMENT KEY takes, comma-separated (default: only --mgmt-alg
    /// when it is given, else all four).
    #[arg(long, value_delimiter = ',')]
    mgmt_accepts: Vec<ManagementAlgorithm>,
    /// Answer GET METADATA with 6D00, as cards without the Yubico extension do.
    #[arg(long)]
    no_metadata: bool,
    /// The 9B management key in hex, of --mgmt-alg's length (48 digits for 3DES and
    /// AES-192, 32 for AES-128, 64 for AES-256).
    #[arg(long)]
    management_key: Option<String>,
    /// Generate a key: SLOT:ALG, e.g. 9a:rsa2048 or 9c:p256. Repeatable.
    #[arg(long)]
    generate: Vec<String>,
    /// Write a certificate: SLOT:FILE.pem (the first certificate of the chain). Repeatable.
    #[arg(long)]
    certificate: Vec<String>,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Create(args) => create(args),
        Command::Insert {
            file,
            port,
            host,
            pull_after,
            delay_ms,
            force_status,
            corrupt_replies,
            refuse_power_on,
        } => {
            let faults = Faults {
                pull_after_apdus: pull_after,
                reply_delay: delay_ms.map(Duration::from_millis),
                force_status: force_status
                    .as_deref()
                    .map(parse_force_status)
                    .transpose()?,
                corrupt_replies,
                refuse_power_on,
            };
            insert(&file, &host, port, faults)
        }
        Command::Remove { file } => remove(&file),
        Command::Show { file, json } => show(&file, json),
    }
}

fn parse_slot(text: &str) -> Result<u8> {
    let slot = u8::from_str_radix(text.trim_start_matches("0x"), 16)
        .with_context(|| format!("slot {text:?} is not a hex byte"))?;
    if !piv::consts::is_asymmetric_slot(slot) {
        bail!("slot {slot:02X} cannot hold a key (9a, 9c, 9d, 9e or 82..95)");
    }
    Ok(slot)
}

fn create(args: CreateArgs) -> Result<()> {
    let CreateArgs {
        file,
        serial,
        profile,
        pin,
        puk,
        mgmt_alg,
        mgmt_accepts,
        no_metadata,
        management_key,
        generate,
        certificate: certificates,
    } = args;
    let file = file.as_path();
    let mut spec = CardSpec::new(serial);
    spec.profile = profile;
    if let Some(pin) = pin {
        spec.pin = pin;
    }
    if let Some(puk) = puk {
        spec.puk = puk;
    }
    if mgmt_alg != ManagementAlgorithm::Tdes || !mgmt_accepts.is_empty() {
        spec = spec.with_management_algorithm(mgmt_alg);
    }
    if !mgmt_accepts.is_empty() {
        spec.management_algorithms = mgmt_accepts;
    }
    spec.metadata = !no_metadata;
    if let Some(hex_key) = management_key {
        spec.management_key =
            ManagementKey::from_hex_with(mgmt_alg, &hex_key).context("reading --management-key")?;
    }
    // Check every argument before writing anything.
    let mut keys = Vec::new();
    for g in &generate {
        let (slot, alg) = g
            .split_once(':')
            .ok_or_else(|| anyhow!("--generate {g:?}: expected SLOT:ALG"))?;
        let alg = algorithm_from_name(alg)
            .ok_or_else(|| anyhow!("--generate {g:?}: algorithm is rsa2048 or p256"))?;
        keys.push((parse_slot(slot)?, alg));
    }
    let mut certs = Vec::new();
    for c in &certificates {
        let (slot, path) = c
            .split_once(':')
            .ok_or_else(|| anyhow!("--certificate {c:?}: expected SLOT:FILE.pem"))?;
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading certificate chain {path}"))?;
        let chain = Certificate::load_pem_chain(pem.as_bytes())
            .with_context(|| format!("parsing certificate chain {path}"))?;
        let first = chain
            .first()
            .ok_or_else(|| anyhow!("{path} holds no certificate"))?;
        let der = der::Encode::to_der(first).context("encoding the certificate")?;
        certs.push((parse_slot(slot)?, der));
    }
    let mut card = CardFile::create(file, &spec)
        .with_context(|| format!("creating card {}", file.display()))?;
    for (slot, alg) in keys {
        let spki = card
            .generate_key(slot, alg)
            .with_context(|| format!("generating a key in slot {slot:02X}"))?;
        let spki = spki::SubjectPublicKeyInfoOwned::from_der(&spki)
            .context("reading the generated public key")?;
        let pem = spki
            .to_pem(der::pem::LineEnding::LF)
            .context("encoding the public key")?;
        println!("slot {slot:02X}: generated {}", algorithm_name(alg));
        print!("{pem}");
    }
    for (slot, der) in certs {
        card.import_certificate(slot, &der)
            .with_context(|| format!("writing the certificate of slot {slot:02X}"))?;
        println!("slot {slot:02X}: certificate written");
    }
    println!(
        "created card {} serial {} profile {}",
        file.display(),
        card.serial(),
        card.profile()
    );
    Ok(())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn pid_file(card: &Path) -> PathBuf {
    let mut name = card.as_os_str().to_owned();
    name.push(".pid");
    PathBuf::from(name)
}

fn insert(file: &Path, host: &str, port: u16, faults: Faults) -> Result<()> {
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .ok_or_else(|| anyhow!("{host} has no address"))?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let card = cardsim::insert(file, addr, faults)
        .with_context(|| format!("inserting {} into vpcd at {addr}", file.display()))?;
    let pid_path = pid_file(file);
    cardsim::state::write_atomically(&pid_path, std::process::id().to_string().as_bytes())
        .with_context(|| format!("writing {}", pid_path.display()))?;
    println!("inserted {} at {addr}", file.display());
    while !STOP.load(Ordering::SeqCst) && card.is_connected() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let answered = card.apdus_answered();
    let result = if card.is_connected() {
        card.remove()
    } else {
        card.wait()
    };
    let _ = std::fs::remove_file(&pid_path);
    result.context("serving the card")?;
    println!("removed {} after {answered} APDUs", file.display());
    Ok(())
}

fn remove(file: &Path) -> Result<()> {
    let pid_path = pid_file(file);
    let text = std::fs::read_to_string(&pid_path)
        .with_context(|| format!("reading {} (is the card inserted?)", pid_path.display()))?;
    let pid: libc::pid_t = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a process id", pid_path.display()))?;
    // A stale pid file may name a process id that now belongs to another program.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let is_cardsim = String::from_utf8_lossy(&cmdline).contains("cardsim");
    // SAFETY: plain system calls on a process id.
    if !is_cardsim || unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        let _ = std::fs::remove_file(&pid_path);
        bail!("no cardsim process {pid} serves {}", file.display());
    }
    // The serving process deletes its pid file as it exits; a process that died without doing
    // so is gone from the process table.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pid_path.exists() && unsafe { libc::kill(pid, 0) } == 0 {
        if Instant::now() > deadline {
            bail!("cardsim process {pid} did not stop within 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&pid_path);
    println!("removed {}", file.display());
    Ok(())
}

/// What `show` prints about one slot.
#[derive(serde::Serialize)]
struct SlotView {
    slot: String,
    algorithm: Option<&'static str>,
    certificate_subject: Option<String>,
    certificate_not_after: Option<String>,
}

/// What `show` prints about a card.
#[derive(serde::Serialize)]
struct CardView {
    serial: String,
    profile: String,
    pin_tries_left: u8,
    puk_tries_left: u8,
    management_key_algorithm: &'static str,
    slots: Vec<SlotView>,
    objects: Vec<String>,
}

fn show(file: &Path, json: bool) -> Result<()> {
    let card = CardFile::open(file).with_context(|| format!("opening {}", file.display()))?;
    let state = card.state();
    let mut slots: Vec<u8> = state.key_slots();
    for slot in [0x9A, 0x9C, 0x9D, 0x9E].into_iter().chain(0x82..=0x95) {
        if state.certificate(slot).is_some() && !slots.contains(&slot) {
            slots.push(slot);
        }
    }
    slots.sort_unstable();
    let slots = slots
        .into_iter()
        .map(|slot| {
            let cert = state
                .certificate(slot)
                .and_then(|der| Certificate::from_der(&der).ok());
            SlotView {
                slot: format!("{slot:02X}"),
                algorithm: state.key_algorithm(slot).map(algorithm_name),
                certificate_subject: cert.as_ref().map(|c| c.tbs_certificate.subject.to_string()),
                certificate_not_after: cert
                    .as_ref()
                    .map(|c| c.tbs_certificate.validity.not_after.to_string()),
            }
        })
        .collect();
    let view = CardView {
        serial: card.serial().to_string(),
        profile: card.profile().to_string(),
        pin_tries_left: card.pin_tries_left(),
        puk_tries_left: card.puk_tries_left(),
        management_key_algorithm: state
            .management_key()
            .map(|k| algorithm_name(k.algorithm()))
            .unwrap_or("unusable"),
        slots,
        objects: state
            .object_tags()
            .into_iter()
            .map(|t| format!("{t:X}"))
            .collect(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    println!("card      {}", view.serial);
    println!("profile   {}", view.profile);
    println!("PIN tries {}", view.pin_tries_left);
    println!("PUK tries {}", view.puk_tries_left);
    println!("9B        {}", view.management_key_algorithm);
    for s in &view.slots {
        println!(
            "slot {}   {:<9} {}{}",
            s.slot,
            s.algorithm.unwrap_or("no key"),
            s.certificate_subject.as_deref().unwrap_or("no certificate"),
            s.certificate_not_after
                .as_deref()
                .map(|t| format!(" (until {t})"))
                .unwrap_or_default()
        );
    }
    println!("objects   {}", view.objects.join(" "));
    Ok(())
}

fn parse_force_status(text: &str) -> Result<(u8, u16)> {
    let (ins, sw) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("--force-status {text:?}: expected INS:SW in hex"))?;
    let ins = u8::from_str_radix(ins, 16).with_context(|| format!("INS {ins:?} is not hex"))?;
    let sw = u16::from_str_radix(sw, 16).with_context(|| format!("SW {sw:?} is not hex"))?;
    Ok((ins, sw))
}
