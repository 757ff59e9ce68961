//! `cms-bench`: authentications per second and their latency against the real service over
//! HTTPS on loopback, with many concurrent clients whose card keys are software keys (so the
//! card is not what is measured). Prints its figures; it is not a test.
//!
//! `cargo run --release -p cms --bin cms-bench -- --clients 50 --seconds 10`
//!
//! With `--flood`, it measures a challenge flood instead: `--clients` connections from one
//! address (127.0.0.2) ask challenges for one card as fast as they can, under the default
//! limits, while another card's holder asks a challenge from 127.0.0.1 five times a second; it
//! prints the challenges the flooder gets answered and refused per second, and the other card's
//! latency before and during the flood.
//!
//! `cargo run --release -p cms --bin cms-bench -- --flood --clients 50 --seconds 10`
//!
//! With `--hold N` it measures something else: N stalled connections (slow bodies, slow headers,
//! idle kept-alive connections, reopened as the server closes them) are held from attacker
//! loopback addresses, each address within the per-client cap, while a fresh client from
//! 127.0.0.1 asks `GET /v1/health` on a new connection in a loop; it prints how many were held
//! and the fresh client's latency.
//!
//! `cargo run --release -p cms --bin cms-bench -- --hold 992 --seconds 20`

use anyhow::{Context as _, Result};
use clap::{Parser, ValueEnum};
use cms::{dates, server, Cms, DataDir, Policy};
use cms_api::client::CmsClient;
use p256::ecdsa::signature::Signer;
use spki::EncodePublicKey;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "cms-bench/flood.rs"]
mod flood;
#[path = "cms-bench/hold.rs"]
mod hold;
#[path = "../../tests/common/hostile.rs"]
mod hostile;

/// Measures authentications per second and latency percentiles.
#[derive(Debug, Parser)]
struct Args {
    /// Concurrent clients, each with its own card and connection.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// How long to measure, after a one-second warm-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The algorithm of the software card keys.
    #[arg(long, value_enum, default_value = "p256")]
    algorithm: Algorithm,
    /// Measure a challenge flood from one address instead of authentications.
    #[arg(long)]
    flood: bool,
    /// Instead of authentications: hold this many stalled connections and measure a fresh
    /// client's `GET /v1/health` meanwhile.
    #[arg(long)]
    hold: Option<usize>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Algorithm {
    P256,
    Rsa2048,
}

/// A client's card: serial, software key, certificate.
enum CardKey {
    P256(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>),
}

impl CardKey {
    fn new(algorithm: Algorithm) -> Result<Self> {
        Ok(match algorithm {
            Algorithm::P256 => {
                CardKey::P256(p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
            }
            Algorithm::Rsa2048 => {
                let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
                CardKey::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(private)))
            }
        })
    }

    fn spki(&self) -> Result<Vec<u8>> {
        Ok(match self {
            CardKey::P256(k) => k.verifying_key().to_public_key_der()?.into_vec(),
            CardKey::Rsa(k) => rsa::signature::Keypair::verifying_key(k.as_ref())
                .to_public_key_der()?
                .into_vec(),
        })
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            CardKey::P256(k) => {
                let sig: p256::ecdsa::DerSignature = k.sign(message);
                sig.to_bytes().to_vec()
            }
            CardKey::Rsa(k) => rsa::signature::SignatureEncoding::to_vec(&k.sign(message)),
        }
    }
}

struct ClientCard {
    serial: String,
    key: CardKey,
    certificate: Vec<u8>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Registers `count` cards with software keys of `algorithm`, each with its own holder.
fn bench_cards(cms: &Cms, count: usize, algorithm: Algorithm) -> Result<Vec<ClientCard>> {
    let mut cards = Vec::with_capacity(count);
    let now = dates::now();
    for i in 0..count {
        let user = cms.add_user(&format!("Bench User {i}"), None)?;
        cms.add_role_profile(&user.id, "Bench Trust", "Staff Nurse", &["B0360".into()])?;
        let serial = format!("BE0C000000{i:06X}");
        let event = cms::db::AuditEvent {
            actor: "bench",
            action: "card.issue",
            card_serial: Some(&serial),
            detail: String::new(),
        };
        cms.register_card(
            &serial,
            "PIV",
            &user.id,
            now,
            piv::ManagementAlgorithm::Aes128,
            &event,
        )?;
        let key = CardKey::new(algorithm)?;
        let record = cms.certify_card(&serial, &key.spki()?, now - 60, now + 730 * dates::DAY)?;
        cards.push(ClientCard {
            serial,
            key,
            certificate: record.der,
        });
    }
    Ok(cards)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(count) = args.hold {
        return hold::run(count, Duration::from_secs(args.seconds));
    }
    let dir = tempfile::tempdir().context("temporary data directory")?;
    if args.flood {
        return flood::run(dir.path(), args.clients, args.seconds);
    }
    // All the clients share one address: the per-address challenge rate and connection cap
    // would measure themselves, not the service.
    let mut policy = Policy::default();
    policy.throttling.challenge_rate = None;
    let cms = Arc::new(Cms::init(&DataDir::new(dir.path()), &[], policy)?);
    let cards = bench_cards(&cms, args.clients, args.algorithm)?;

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let files = server::TlsFiles::own(&cms.data_dir().ca_files());
        let limits = server::ServerLimits {
            max_connections_per_client: usize::MAX,
            ..server::ServerLimits::default()
        };
        let running =
            server::start_with_tls(cms.clone(), "127.0.0.1:0".parse()?, &files, &limits).await?;
        let url = running.url();
        let ca = cms.ca().certificate_pem().to_owned();
        let warm_up = Instant::now() + Duration::from_secs(1);
        let end = warm_up + Duration::from_secs(args.seconds);
        let mut tasks = Vec::new();
        for card in cards {
            let client = CmsClient::new(&url, &ca)?;
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                loop {
                    let start = Instant::now();
                    if start >= end {
                        break;
                    }
                    let result = client
                        .authenticate(&card.serial, &card.certificate, |m| {
                            Ok::<_, std::convert::Infallible>(card.key.sign(m))
                        })
                        .await;
                    let took = start.elapsed();
                    if start >= warm_up {
                        match result {
                            Ok(_) => latencies.push(took),
                            Err(_) => errors += 1,
                        }
                    }
                }
                (latencies, errors)
            }));
        }
        let mut latencies = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let (l, e) = task.await?;
            latencies.extend(l);
            errors += e;
        }
        running.stop().await;
        latencies.sort();
        let rate = latencies.len() as f64 / args.seconds as f64;
        println!(
            "authentications: {} in {} s with {} concurrent clients ({:?} card keys), {errors} errors",
            latencies.len(),
            args.seconds,
            args.clients,
            args.algorithm
        );
        println!("throughput: {rate:.0} authentications/s (target >= 1000)");
        println!(
            "latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&latencies, 50.0).as_secs_f64() * 1e3,
            percentile(&latencies, 90.0).as_secs_f64() * 1e3,
            percentile(&latencies, 99.0).as_secs_f64() * 1e3,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
        anyhow::Ok(())
    })
}
