//! The service's policy: lifetimes of challenges, sessions and certificates, card capacity,
//! the limits on challenges and failed sign-ins, and which identity agent versions may self-renew (the national service blocks incompatible agents).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// An identity agent version: dot-separated numbers (`0.1.0`, `2.1.2.16`), compared number by
/// number with missing numbers as zero.
#[derive(Debug, Clone, Eq)]
pub struct AgentVersion(Vec<u64>);

/// A version string that is not dot-separated numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a version (numbers separated by dots, such as 1.2.0)")]
pub struct BadVersion(pub String);

impl FromStr for AgentVersion {
    type Err = BadVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        // Build metadata and pre-release tags do not take part in the comparison.
        let core = s.split(['-', '+']).next().unwrap_or_default();
        let parts: Result<Vec<u64>, _> = core.split('.').map(str::parse).collect();
        match parts {
            Ok(parts) if !parts.is_empty() && parts.len() <= 6 => Ok(Self(parts)),
            _ => Err(BadVersion(s.to_owned())),
        }
    }
}

impl fmt::Display for AgentVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

impl Ord for AgentVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.0.len().max(other.0.len());
        (0..len)
            .map(|i| {
                let a = self.0.get(i).copied().unwrap_or(0);
                let b = other.0.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for AgentVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for AgentVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

/// The rules the service applies.
#[derive(Debug, Clone)]
pub struct Policy {
    /// How long an authentication challenge can be answered.
    pub challenge_ttl: Duration,
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// How long a card certificate is valid, in days (two years by default, as the national service issues them).
    pub certificate_days: i64,
    /// How many self-renewals a card takes before it is full and needs an RA repair.
    pub card_capacity: u32,
    /// The lowest agent version allowed to self-renew.
    pub minimum_agent_version: AgentVersion,
    /// Versions refused even though they are not below the minimum.
    pub blocked_agent_versions: Vec<AgentVersion>,
    /// Management-key exchanges one operation may relay.
    pub max_relays_per_operation: u32,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a renewal must have gone without a step before it counts as left open, which
    /// makes a card that is neither expired nor full repairable (10 minutes by default): a
    /// renewal the holder has just started does not open the card to a repair and its PUK.
    pub stalled_renewal_age: Duration,
    /// How hard the service pushes back on clients that ask too many challenges or fail to
    /// sign in (`cms/API.md`, "Limits").
    pub throttling: Throttling,
}

/// A token bucket's shape: `burst` requests at once, then `per_second` on average.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// How many requests a client that has been quiet may make at once.
    pub burst: u32,
    /// How many requests a second the bucket refills.
    pub per_second: f64,
}

/// The limits on challenges and failed sign-ins. The defaults let a holder sign in as often as a
/// person can while one client cannot fill the service's memory, block another card, or try
/// forged answers faster than once per backoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Throttling {
    /// Challenges one client address (an IPv6 /64) may ask, whatever the card; `None` for no
    /// limit (benchmarks). 30 at once, then 10 a second, by default: an office behind one NAT
    /// address signs in many holders a second, a flood is answered `rate_limited` before the
    /// database is read.
    pub challenge_rate: Option<Rate>,
    /// Challenges outstanding for one card (4 by default; a card needs one or two at a time).
    /// Past it a new challenge replaces the oldest outstanding one that the same client asked
    /// for this card, or else the card's oldest: a card is never refused a challenge.
    pub challenges_per_card: usize,
    /// Failed sign-ins of one card from one client address before that pair backs off (5).
    pub pair_failures: u32,
    /// Failed sign-ins from one client address, whatever the card, before it backs off (20).
    pub client_failures: u32,
    /// Failed sign-ins of one card, whatever the address, before the card backs off (10). The
    /// card's backoff holds back only addresses that have themselves failed for this card, so
    /// an attacker cannot lock out the holder's own address with it.
    pub card_failures: u32,
    /// The first backoff; each further failure doubles it (1 s).
    pub backoff: Duration,
    /// The longest backoff (5 minutes): no failure blocks anyone for longer than this.
    pub backoff_cap: Duration,
    /// How long a run of failures is remembered after the last one (15 minutes).
    pub failure_memory: Duration,
    /// Audit rows (and warning log lines) for failed sign-ins, across all clients: 60 at once,
    /// then one a second. Failures past it are counted into the next row written.
    pub failure_rows: Rate,
}

impl Default for Throttling {
    fn default() -> Self {
        Self {
            challenge_rate: Some(Rate {
                burst: 30,
                per_second: 10.0,
            }),
            challenges_per_card: 4,
            pair_failures: 5,
            client_failures: 20,
            card_failures: 10,
            backoff: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(5 * 60),
            failure_memory: Duration::from_secs(15 * 60),
            failure_rows: Rate {
                burst: 60,
                per_second: 1.0,
            },
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            challenge_ttl: Duration::from_secs(60),
            session_ttl: Duration::from_secs(12 * 3600),
            certificate_days: 730,
            card_capacity: 10,
            minimum_agent_version: AgentVersion(vec![0, 1, 0]),
            blocked_agent_versions: Vec::new(),
            max_relays_per_operation: 32,
            max_body_bytes: 64 * 1024,
            stalled_renewal_age: Duration::from_secs(10 * 60),
            throttling: Throttling::default(),
        }
    }
}

impl Policy {
    /// Whether `version` may self-renew.
    pub fn allows_agent(&self, version: &AgentVersion) -> bool {
        *version >= self.minimum_agent_version && !self.blocked_agent_versions.contains(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> AgentVersion {
        s.parse().unwrap()
    }

    #[test]
    fn versions_compare_number_by_number() {
        assert!(v("2.1.2.16") > v("2.1.2.9"));
        assert!(v("2.1") < v("2.1.2.16"));
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("v1.2.3-beta+7"), v("1.2.3"));
        assert_eq!(v("2.1.2.16").to_string(), "2.1.2.16");
        for bad in ["", "1..2", "abc", "1.x", "1.2.3.4.5.6.7"] {
            assert!(bad.parse::<AgentVersion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn policy_blocks_old_and_listed_versions() {
        let policy = Policy {
            minimum_agent_version: v("1.0"),
            blocked_agent_versions: vec![v("1.2.0")],
            ..Policy::default()
        };
        assert!(policy.allows_agent(&v("1.0.0")));
        assert!(policy.allows_agent(&v("1.3")));
        assert!(!policy.allows_agent(&v("0.9.9")));
        assert!(!policy.allows_agent(&v("1.2")));
    }
}
