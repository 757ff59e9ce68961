//! `cms-bench --hold N`: a fresh client's latency while N stalled connections are held.

use super::hostile::{self, Stall};
use super::percentile;
use anyhow::{bail, Context as _, Result};
use cms::server::{self, ServerLimits, TlsFiles};
use cms::{Cms, DataDir, Policy};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_rustls::TlsConnector;

/// The kinds of stall the held connections take, in turn. An HTTP/2 preface is closed at once,
/// so it holds nothing and is left out.
const STALLS: [Stall; 3] = [Stall::SlowBody, Stall::SlowHeader, Stall::Idle];

/// Holds `count` stalled connections, with the default server limits, and measures a fresh
/// client's `GET /v1/health` for `seconds`; prints the figures.
pub fn run(count: usize, seconds: Duration) -> Result<()> {
    let limits = ServerLimits::default();
    let per_address = limits.max_connections_per_client;
    if count + 1 > limits.max_connections {
        bail!(
            "--hold {count} leaves the fresh client no slot (the server holds {})",
            limits.max_connections
        );
    }
    let addresses = count.div_ceil(per_address);
    if addresses > 250 {
        bail!("--hold {count} needs more than 250 attacker addresses");
    }
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let cms = Arc::new(Cms::init(
        &DataDir::new(dir.path()),
        &[],
        Policy::default(),
    )?);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let files = TlsFiles::own(&cms.data_dir().ca_files());
        let running =
            server::start_with_tls(cms.clone(), "127.0.0.1:0".parse()?, &files, &limits).await?;
        let addr = running.addr;
        let tls = hostile::connector(cms.ca().certificate_pem());
        let held = Arc::new(AtomicUsize::new(0));
        let reopened = Arc::new(AtomicUsize::new(0));
        let setup_end = Instant::now() + Duration::from_secs(30);
        let end = setup_end + seconds + Duration::from_secs(60);
        let mut holders = Vec::with_capacity(count);
        for i in 0..count {
            // 127.0.0.2, 127.0.0.3, …: each address within the per-client cap.
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i / per_address) as u8));
            let stall = STALLS[i % STALLS.len()];
            holders.push(tokio::spawn(keep_stalled(
                tls.clone(),
                from,
                addr,
                stall,
                held.clone(),
                reopened.clone(),
                end,
            )));
        }
        // Wait until they are all held (or 30 s have passed).
        while held.load(Ordering::SeqCst) < count && Instant::now() < setup_end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let fresh = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let stop = Instant::now() + seconds;
        let mut latencies = Vec::new();
        let mut samples = Vec::new();
        let mut errors = 0u64;
        let reopened_before = reopened.load(Ordering::SeqCst);
        while Instant::now() < stop {
            samples.push(held.load(Ordering::SeqCst));
            match hostile::health_from(&tls, fresh, addr).await {
                Ok((200, took)) => latencies.push(took),
                _ => errors += 1,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reopened = reopened.load(Ordering::SeqCst) - reopened_before;
        for holder in &holders {
            holder.abort();
        }
        running.stop().await;
        latencies.sort();
        let least = samples.iter().copied().min().unwrap_or(0);
        let mean = samples.iter().sum::<usize>() as f64 / samples.len().max(1) as f64;
        println!(
            "held: {count} stalled connections wanted from {addresses} addresses (at most \
             {per_address} each, of {} in all); during the run {least} to {} held, {mean:.0} \
             on average; {reopened} reopened after the server closed them",
            limits.max_connections,
            samples.iter().copied().max().unwrap_or(0),
        );
        println!(
            "fresh client: {} GET /v1/health on new connections in {} s, {errors} errors",
            latencies.len(),
            seconds.as_secs()
        );
        println!(
            "fresh client latency (TLS handshake included): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&latencies, 50.0).as_secs_f64() * 1e3,
            percentile(&latencies, 99.0).as_secs_f64() * 1e3,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
        if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
            println!("load average: {}", load.trim());
        }
        anyhow::Ok(())
    })
}

/// Keeps one connection from `from` stalled as `stall` until `end`: opens it, counts it as held
/// until the server closes it, then opens another.
async fn keep_stalled(
    tls: TlsConnector,
    from: IpAddr,
    server: SocketAddr,
    stall: Stall,
    held: Arc<AtomicUsize>,
    reopened: Arc<AtomicUsize>,
    end: Instant,
) {
    let mut first = true;
    while Instant::now() < end {
        match hostile::stall(&tls, from, server, stall).await {
            Ok(mut stream) => {
                if !first {
                    reopened.fetch_add(1, Ordering::SeqCst);
                }
                first = false;
                held.fetch_add(1, Ordering::SeqCst);
                let _ = hostile::until_closed(&mut stream).await;
                held.fetch_sub(1, Ordering::SeqCst);
            }
            // Over the address's cap for a moment (its closed slot not yet given back): retry.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
