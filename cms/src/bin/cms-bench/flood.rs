//! `cms-bench --flood`: how many challenges one client address can force out of the service
//! under the default limits, and what another card's holder sees meanwhile.

use super::{bench_cards, percentile, Algorithm};
use anyhow::Result;
use cms::{server, Cms, DataDir, Policy};
use cms_api::client::CmsClient;
use cms_api::ErrorCode;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The flooder's address (loopback, as all of 127.0.0.0/8 is on Linux).
const FLOODER: [u8; 4] = [127, 0, 0, 2];
/// How often the other card's holder asks a challenge.
const HOLDER_PACE: Duration = Duration::from_millis(200);

/// Measures a flood of `connections` connections for `seconds`, after a second of the holder
/// alone (the baseline).
pub fn run(dir: &Path, connections: usize, seconds: u64) -> Result<()> {
    let cms = Arc::new(Cms::init(&DataDir::new(dir), &[], Policy::default())?);
    let cards = bench_cards(&cms, 2, Algorithm::P256)?;
    let flooded = cards[0].serial.clone();
    let other = cards[1].serial.clone();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let running = server::start(cms.clone(), "127.0.0.1:0".parse()?).await?;
        let url = running.url();
        let ca = cms.ca().certificate_pem().to_owned();
        let holder = CmsClient::new(&url, &ca)?;

        let baseline =
            holder_latencies(&holder, &other, Instant::now() + Duration::from_secs(1)).await?;

        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        let mut flood = Vec::new();
        for _ in 0..connections.max(1) {
            let client = CmsClient::from_address(&url, &ca, Some(IpAddr::from(FLOODER)))?;
            let serial = flooded.clone();
            flood.push(tokio::spawn(async move {
                let (mut answered, mut refused, mut other_errors) = (0u64, 0u64, 0u64);
                let mut refusal_time = Duration::ZERO;
                while Instant::now() < end {
                    let asked = Instant::now();
                    match client.challenge(&serial).await {
                        Ok(_) => answered += 1,
                        Err(e) if e.code() == Some(ErrorCode::RateLimited) => {
                            refused += 1;
                            refusal_time += asked.elapsed();
                        }
                        Err(_) => other_errors += 1,
                    }
                }
                (answered, refused, other_errors, refusal_time)
            }));
        }
        let during = holder_latencies(&holder, &other, end).await?;
        let (mut answered, mut refused, mut other_errors) = (0, 0, 0);
        let mut refusal_time = Duration::ZERO;
        for task in flood {
            let (a, r, o, t) = task.await?;
            answered += a;
            refused += r;
            other_errors += o;
            refusal_time += t;
        }
        let elapsed = start.elapsed().as_secs_f64();
        running.stop().await;

        let rate = Policy::default().throttling.challenge_rate;
        println!(
            "flood: {connections} connections from 127.0.0.2 for {seconds} s, one card, \
             limits {rate:?}"
        );
        println!(
            "flooder: {answered} challenges answered ({:.1}/s), {refused} refused rate_limited \
             ({:.0}/s), {other_errors} other errors",
            answered as f64 / elapsed,
            refused as f64 / elapsed,
        );
        if refused > 0 {
            println!(
                "refusal latency seen by the flooder: mean {:.2} ms",
                refusal_time.as_secs_f64() * 1e3 / refused as f64
            );
        }
        for (what, (latencies, errors)) in [("before", baseline), ("during", during)] {
            println!(
                "other card's challenge from 127.0.0.1 {what} the flood: {} asked, {errors} \
                 refused, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                latencies.len(),
                percentile(&latencies, 50.0).as_secs_f64() * 1e3,
                percentile(&latencies, 99.0).as_secs_f64() * 1e3,
                latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            );
        }
        anyhow::Ok(())
    })
}

/// Asks a challenge for `serial` every [`HOLDER_PACE`] until `end`: the sorted latencies of the
/// answered ones, and how many were refused.
async fn holder_latencies(
    holder: &CmsClient,
    serial: &str,
    end: Instant,
) -> Result<(Vec<Duration>, u64)> {
    let mut latencies = Vec::new();
    let mut errors = 0;
    while Instant::now() < end {
        let asked = Instant::now();
        match holder.challenge(serial).await {
            Ok(_) => latencies.push(asked.elapsed()),
            Err(_) => errors += 1,
        }
        tokio::time::sleep(HOLDER_PACE.saturating_sub(asked.elapsed())).await;
    }
    latencies.sort();
    Ok((latencies, errors))
}
