//! Pushing back on hostile clients: a token bucket of challenges per client address (checked
//! before the database is read, so a flood is answered cheaply), and the backoff of failed
//! sign-ins per card and client ([`failures`]). Both live in memory only, bounded in size: a
//! restart forgets them, which gives an attacker nothing a restart would not.

pub mod failures;

use crate::policy::Rate;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use failures::{Failure, SignInFailures};

/// The most client addresses a table keeps state for; past it, idle entries are dropped first.
pub(crate) const MAX_TRACKED: usize = 65_536;

/// How often a full table may be swept for idle entries: sweeping is linear in its size.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A client as the limits count it: an IPv4 address, or the /64 network of an IPv6 one (a
/// single host commonly holds a whole /64, so counting its addresses one by one would let it
/// sidestep every limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of a client at `addr`.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(bits.into()))
                }
            },
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        self.at = now;
    }

    /// Takes a token, or says how long until there is one.
    pub(crate) fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if rate.per_second <= 0.0 {
            return Err(Duration::from_secs(3600));
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / rate.per_second,
        ))
    }

    /// Whether the bucket has refilled completely: it is then no different from a new one.
    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * rate.per_second >= f64::from(rate.burst)
    }
}

/// The challenges each client may ask: one token bucket per [`ClientKey`].
///
/// The table is bounded: when it holds [`MAX_TRACKED`] clients, the buckets that have refilled
/// (idle clients, indistinguishable from new ones) are dropped; if it is still full, every
/// further new client shares one overflow bucket until room is made, so many addresses can
/// neither grow memory nor get a fresh burst each.
#[derive(Debug)]
pub struct ChallengeRate {
    rate: Option<Rate>,
    table: Mutex<RateTable>,
}

#[derive(Debug)]
struct RateTable {
    buckets: HashMap<ClientKey, Bucket>,
    overflow: Bucket,
    last_sweep: Option<Instant>,
}

impl ChallengeRate {
    /// Buckets of `rate`; `None` lets every request through.
    pub fn new(rate: Option<Rate>) -> Self {
        let now = Instant::now();
        Self {
            rate,
            table: Mutex::new(RateTable {
                buckets: HashMap::new(),
                overflow: Bucket::full(
                    rate.unwrap_or(Rate {
                        burst: 0,
                        per_second: 0.0,
                    }),
                    now,
                ),
                last_sweep: None,
            }),
        }
    }

    /// Takes one challenge from `client`'s bucket, or says how long it must wait.
    pub fn take(&self, client: ClientKey) -> Result<(), Duration> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let table = &mut *table;
        if let Some(bucket) = table.buckets.get_mut(&client) {
            return bucket.take(rate, now);
        }
        if table.buckets.len() >= MAX_TRACKED
            && table
                .last_sweep
                .is_none_or(|at| now.duration_since(at) >= SWEEP_INTERVAL)
        {
            table.last_sweep = Some(now);
            table.buckets.retain(|_, b| !b.is_full(rate, now));
        }
        if table.buckets.len() >= MAX_TRACKED {
            return table.overflow.take(rate, now);
        }
        let mut bucket = Bucket::full(rate, now);
        let taken = bucket.take(rate, now);
        table.buckets.insert(client, bucket);
        taken
    }

    /// How many clients have a bucket.
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ClientKey {
        ClientKey::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(key("127.0.0.2").to_string(), "127.0.0.2");
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_and_others_are_unaffected() {
        let rate = ChallengeRate::new(Some(Rate {
            burst: 3,
            per_second: 1.0,
        }));
        for _ in 0..3 {
            rate.take(key("10.0.0.1")).unwrap();
        }
        let wait = rate.take(key("10.0.0.1")).unwrap_err();
        assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1));
        rate.take(key("10.0.0.2")).unwrap();
        assert!(ChallengeRate::new(None).take(key("10.0.0.1")).is_ok());
    }

    #[test]
    fn a_full_table_drops_idle_clients_and_shares_an_overflow_bucket() {
        let rate = ChallengeRate::new(Some(Rate {
            burst: 2,
            per_second: 0.001,
        }));
        for i in 0..MAX_TRACKED as u32 {
            rate.take(ClientKey::of(IpAddr::V4(i.into()))).unwrap();
        }
        assert_eq!(rate.tracked(), MAX_TRACKED);
        // None has refilled: newcomers share the overflow bucket, which runs out.
        let newcomer = |i: u32| ClientKey::of(IpAddr::V4((u32::MAX - i).into()));
        assert!(rate.take(newcomer(0)).is_ok());
        assert!(rate.take(newcomer(1)).is_ok());
        assert!(rate.take(newcomer(2)).is_err());
        assert_eq!(rate.tracked(), MAX_TRACKED);
    }
}
