//! The backoff of failed sign-ins: counted per card and client address, per client address and
//! per card, each run of failures doubling a wait from the first backoff up to a cap, forgotten
//! after a quiet spell, and ended by a success.
//!
//! Who is held back, and why an attacker cannot lock a holder out for long:
//! - a (card, address) pair backs off after [`Throttling::pair_failures`] failures: the
//!   attacker's own address, not the holder's;
//! - an address backs off after [`Throttling::client_failures`] failures whatever the card: an
//!   address spraying many cards;
//! - a card backs off after [`Throttling::card_failures`] failures from all addresses together,
//!   but this holds back only the addresses that have themselves failed for the card, so an
//!   attacker with many addresses gets one try per new address, and the holder's address,
//!   which has not failed, signs in as usual;
//! - attempts refused during a backoff are not failures and do not lengthen it, and no backoff
//!   is longer than [`Throttling::backoff_cap`]: a holder sharing an attacker's address (one
//!   NAT) waits at most that long after the attacker's last verified failure;
//! - a success ends the runs of its card and of its address.

use super::{Bucket, ClientKey, MAX_TRACKED, SWEEP_INTERVAL};
use crate::policy::Throttling;
use piv::CardSerial;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A run of failures of one key.
#[derive(Debug, Clone, Copy)]
struct Run {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl Run {
    fn blocked_for(&self, now: Instant) -> Option<Duration> {
        self.blocked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Whether the run is over: no backoff left and no failure for `memory`.
    fn is_over(&self, now: Instant, memory: Duration) -> bool {
        self.blocked_for(now).is_none() && now.saturating_duration_since(self.last) >= memory
    }
}

/// One table of runs, bounded in size.
#[derive(Debug)]
struct Runs<K> {
    runs: HashMap<K, Run>,
    last_sweep: Option<Instant>,
}

impl<K: Eq + Hash + Copy> Runs<K> {
    fn new() -> Self {
        Self {
            runs: HashMap::new(),
            last_sweep: None,
        }
    }

    /// The current run of `key` (a run that is over counts as none).
    fn current(&self, key: &K, now: Instant, memory: Duration) -> Option<&Run> {
        self.runs.get(key).filter(|r| !r.is_over(now, memory))
    }

    /// Counts a failure of `key`; returns the backoff it starts, if any. A full table drops
    /// runs that are over, then runs not backing off; a key that still finds no room is not
    /// counted in this table (the other tables still count it).
    fn fail(
        &mut self,
        key: K,
        now: Instant,
        limits: &Throttling,
        threshold: u32,
    ) -> Option<Duration> {
        if !self.runs.contains_key(&key) && self.runs.len() >= MAX_TRACKED {
            if self
                .last_sweep
                .is_none_or(|at| now.duration_since(at) >= SWEEP_INTERVAL)
            {
                self.last_sweep = Some(now);
                self.runs
                    .retain(|_, r| !r.is_over(now, limits.failure_memory));
                if self.runs.len() >= MAX_TRACKED {
                    self.runs.retain(|_, r| r.blocked_for(now).is_some());
                }
            }
            if self.runs.len() >= MAX_TRACKED {
                return None;
            }
        }
        let run = self.runs.entry(key).or_insert(Run {
            failures: 0,
            last: now,
            blocked_until: None,
        });
        if run.is_over(now, limits.failure_memory) {
            run.failures = 0;
        }
        run.failures = run.failures.saturating_add(1);
        run.last = now;
        if threshold == 0 || run.failures < threshold {
            return None;
        }
        let doublings = (run.failures - threshold).min(20);
        let backoff = limits
            .backoff
            .saturating_mul(1u32 << doublings)
            .min(limits.backoff_cap);
        run.blocked_until = Some(now + backoff);
        Some(backoff)
    }

    fn failures(&self, key: &K) -> u32 {
        self.runs.get(key).map_or(0, |r| r.failures)
    }
}

/// What a failed sign-in counted, for its audit row and log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Failures of this card from this address in the current run, this one included.
    pub in_a_row: u32,
    /// Failures from this address, whatever the card.
    pub from_client: u32,
    /// Failures of this card, whatever the address.
    pub of_card: u32,
    /// The longest backoff this failure started for the address, if any.
    pub backoff: Option<Duration>,
    /// Whether this failure gets its own audit row and log line (the budget of rows allows it).
    pub audited: bool,
    /// Failures before this one left out of the audit while the budget was spent (counted into
    /// this failure's row when it has one).
    pub unaudited: u64,
}

/// The failed sign-ins the service remembers, and the budget of their audit rows.
#[derive(Debug)]
pub struct SignInFailures {
    limits: Throttling,
    table: Mutex<Tables>,
}

#[derive(Debug)]
struct Tables {
    pairs: Runs<(CardSerial, ClientKey)>,
    clients: Runs<ClientKey>,
    cards: Runs<CardSerial>,
    rows: Bucket,
    unaudited: u64,
}

impl SignInFailures {
    /// No failures yet, under `limits`.
    pub fn new(limits: Throttling) -> Self {
        let rows = Bucket::full(limits.failure_rows, Instant::now());
        Self {
            limits,
            table: Mutex::new(Tables {
                pairs: Runs::new(),
                clients: Runs::new(),
                cards: Runs::new(),
                rows,
                unaudited: 0,
            }),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `client` may try to sign in with `card` now, or how long it must wait.
    pub fn check(&self, card: CardSerial, client: ClientKey) -> Result<(), Duration> {
        let now = Instant::now();
        let memory = self.limits.failure_memory;
        let t = self.tables();
        let pair = t.pairs.current(&(card, client), now, memory);
        let mut wait = [
            pair.and_then(|r| r.blocked_for(now)),
            t.clients
                .current(&client, now, memory)
                .and_then(|r| r.blocked_for(now)),
        ];
        // The card's backoff holds back only addresses that have failed for it themselves.
        if pair.is_some_and(|r| r.failures > 0) {
            wait[0] = wait[0].max(
                t.cards
                    .current(&card, now, memory)
                    .and_then(|r| r.blocked_for(now)),
            );
        }
        match wait.into_iter().flatten().max() {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed sign-in of `card` from `client`.
    pub fn failed(&self, card: CardSerial, client: ClientKey) -> Failure {
        let now = Instant::now();
        let limits = &self.limits;
        let mut t = self.tables();
        let backoff = [
            t.pairs
                .fail((card, client), now, limits, limits.pair_failures),
            t.clients.fail(client, now, limits, limits.client_failures),
            t.cards.fail(card, now, limits, limits.card_failures),
        ]
        .into_iter()
        .flatten()
        .max();
        let audited = t.rows.take(limits.failure_rows, now).is_ok();
        let unaudited = if audited {
            std::mem::take(&mut t.unaudited)
        } else {
            t.unaudited += 1;
            0
        };
        Failure {
            in_a_row: t.pairs.failures(&(card, client)),
            from_client: t.clients.failures(&client),
            of_card: t.cards.failures(&card),
            backoff,
            audited,
            unaudited,
        }
    }

    /// A sign-in of `card` from `client` succeeded: the runs of this card and of this address
    /// end. Ending the address's run too keeps the occasional honest failure of many holders
    /// behind one NAT address (a stale challenge, an old certificate) from adding up to a
    /// backoff of them all; an attacker behind the same address is still held back per card.
    pub fn succeeded(&self, card: CardSerial, client: ClientKey) {
        let mut t = self.tables();
        t.pairs.runs.remove(&(card, client));
        t.cards.runs.remove(&card);
        t.clients.runs.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ClientKey {
        ClientKey::of(s.parse().unwrap())
    }

    fn limits() -> Throttling {
        Throttling {
            pair_failures: 3,
            client_failures: 100,
            card_failures: 6,
            backoff: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(4),
            ..Throttling::default()
        }
    }

    #[test]
    fn a_pair_backs_off_doubling_to_the_cap_and_a_success_ends_it() {
        let f = SignInFailures::new(limits());
        let card = CardSerial([1; 8]);
        let attacker = key("10.0.0.66");
        assert_eq!(f.failed(card, attacker).backoff, None);
        assert_eq!(f.failed(card, attacker).backoff, None);
        let third = f.failed(card, attacker);
        assert_eq!(third.in_a_row, 3);
        assert_eq!(third.backoff, Some(Duration::from_secs(1)));
        assert!(f.check(card, attacker).is_err());
        assert_eq!(
            f.failed(card, attacker).backoff,
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            f.failed(card, attacker).backoff,
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            f.failed(card, attacker).backoff,
            Some(Duration::from_secs(4))
        );
        // The holder's address has not failed: the card's backoff does not hold it back.
        assert!(f.check(card, key("10.0.0.1")).is_ok());
        // Another card from the attacker's address is not held back by the pair.
        assert!(f.check(CardSerial([2; 8]), attacker).is_ok());
        f.succeeded(card, attacker);
        assert!(f.check(card, attacker).is_ok());
    }

    #[test]
    fn the_cards_backoff_holds_back_only_addresses_that_failed_for_it() {
        let f = SignInFailures::new(limits());
        let card = CardSerial([1; 8]);
        for i in 0..6 {
            f.failed(card, key(&format!("10.0.1.{i}")));
        }
        // Six addresses, one failure each: the card backs off for them.
        assert!(f.check(card, key("10.0.1.0")).is_err());
        assert!(f.check(card, key("10.0.1.5")).is_err());
        assert!(f.check(card, key("10.0.0.1")).is_ok());
    }

    #[test]
    fn an_address_spraying_cards_backs_off() {
        let f = SignInFailures::new(Throttling {
            client_failures: 4,
            ..limits()
        });
        let attacker = key("2001:db8::66");
        for i in 0..4u8 {
            f.failed(CardSerial([i; 8]), key("2001:db8::1234"));
        }
        assert!(f.check(CardSerial([9; 8]), attacker).is_err());
        assert!(f.check(CardSerial([9; 8]), key("2001:db9::1")).is_ok());
    }

    #[test]
    fn audit_rows_have_a_budget_and_count_what_they_leave_out() {
        let f = SignInFailures::new(Throttling {
            failure_rows: crate::policy::Rate {
                burst: 2,
                per_second: 0.001,
            },
            ..limits()
        });
        let card = CardSerial([1; 8]);
        let audited: Vec<bool> = (0..5)
            .map(|i| f.failed(card, key(&format!("10.0.2.{i}"))).audited)
            .collect();
        assert_eq!(audited, [true, true, false, false, false]);
    }

    #[test]
    fn backoffs_run_out() {
        let f = SignInFailures::new(Throttling {
            pair_failures: 1,
            backoff: Duration::from_millis(20),
            backoff_cap: Duration::from_millis(20),
            ..limits()
        });
        let card = CardSerial([1; 8]);
        let attacker = key("10.0.0.66");
        f.failed(card, attacker);
        assert!(f.check(card, attacker).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(f.check(card, attacker).is_ok());
    }
}
