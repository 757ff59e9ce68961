//! The challenges the service hands out for a card to sign: single-use, short-lived, bound to
//! the card, a few per card at most, and kept in memory only.

use crate::error::{CmsError, CmsResult};
use crate::throttle::ClientKey;
use piv::CardSerial;
use rand::RngCore;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most challenges outstanding at once; beyond it the service answers `busy`. A backstop:
/// the per-card limit and the per-client rate keep the store far below it.
const MAX_OUTSTANDING: usize = 100_000;

/// Outstanding challenges, in memory: a restart forgets them, which only makes clients ask
/// again.
///
/// A card has at most `per_card` challenges outstanding. Past it, a new challenge replaces the
/// oldest one the same client asked for that card, or, when that client has none, the card's
/// oldest: a card is never refused a challenge, so nobody can block a card by asking for it, and
/// an attacker asking from its own address replaces only its own challenges.
#[derive(Debug)]
pub struct ChallengeStore {
    ttl: Duration,
    per_card: usize,
    table: Mutex<Table>,
}

/// One outstanding challenge.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    serial: CardSerial,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Table {
    outstanding: HashMap<[u8; 32], Outstanding>,
    /// Each card's outstanding challenges, oldest first, with the client that asked.
    by_card: HashMap<CardSerial, VecDeque<([u8; 32], ClientKey)>>,
}

impl Table {
    fn forget(&mut self, challenge: &[u8; 32], serial: CardSerial) {
        if let Some(queue) = self.by_card.get_mut(&serial) {
            queue.retain(|(c, _)| c != challenge);
            if queue.is_empty() {
                self.by_card.remove(&serial);
            }
        }
    }

    fn drop_expired(&mut self, now: Instant) {
        self.outstanding.retain(|_, o| o.expires > now);
        let outstanding = &self.outstanding;
        self.by_card.retain(|_, queue| {
            queue.retain(|(c, _)| outstanding.contains_key(c));
            !queue.is_empty()
        });
    }
}

impl ChallengeStore {
    /// A store whose challenges live `ttl`, at most `per_card` outstanding for one card (at
    /// least one).
    pub fn new(ttl: Duration, per_card: usize) -> Self {
        Self {
            ttl,
            per_card: per_card.max(1),
            table: Mutex::new(Table::default()),
        }
    }

    /// A new challenge for `serial`, asked by `client`.
    pub fn issue(&self, serial: CardSerial, client: ClientKey) -> CmsResult<[u8; 32]> {
        let mut challenge = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut challenge);
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let table = &mut *table;
        let queue = table.by_card.entry(serial).or_default();
        let outstanding = &mut table.outstanding;
        queue.retain(|(c, _)| {
            let live = outstanding.get(c).is_some_and(|o| o.expires > now);
            if !live {
                outstanding.remove(c);
            }
            live
        });
        while queue.len() >= self.per_card {
            let oldest = queue
                .iter()
                .position(|(_, asker)| *asker == client)
                .unwrap_or(0);
            if let Some((replaced, _)) = queue.remove(oldest) {
                outstanding.remove(&replaced);
            }
        }
        queue.push_back((challenge, client));
        if outstanding.len() >= MAX_OUTSTANDING {
            table.drop_expired(now);
            if table.outstanding.len() >= MAX_OUTSTANDING {
                table.forget(&challenge, serial);
                return Err(CmsError::Busy);
            }
        }
        table.outstanding.insert(
            challenge,
            Outstanding {
                serial,
                expires: now + self.ttl,
            },
        );
        Ok(challenge)
    }

    /// How many challenges are outstanding for `serial`.
    pub fn outstanding_for(&self, serial: CardSerial) -> usize {
        let now = Instant::now();
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.by_card.get(&serial).map_or(0, |queue| {
            queue
                .iter()
                .filter(|(c, _)| table.outstanding.get(c).is_some_and(|o| o.expires > now))
                .count()
        })
    }

    /// Takes `challenge` out of the store (it can never be used again) and checks it was
    /// issued for `serial` and is still fresh.
    pub fn redeem(&self, challenge: &[u8], serial: CardSerial) -> CmsResult<()> {
        let key: [u8; 32] = challenge
            .try_into()
            .map_err(|_| CmsError::UnknownChallenge)?;
        let entry = {
            let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            let entry = table.outstanding.remove(&key);
            if let Some(o) = entry {
                table.forget(&key, o.serial);
            }
            entry
        };
        let Outstanding {
            serial: issued_for,
            expires,
        } = entry.ok_or(CmsError::UnknownChallenge)?;
        if Instant::now() >= expires {
            return Err(CmsError::ChallengeExpired);
        }
        if issued_for != serial {
            return Err(CmsError::ChallengeMismatch {
                issued_for: issued_for.to_string(),
                presented: serial.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> ClientKey {
        ClientKey::of([10, 0, 0, 1].into())
    }

    #[test]
    fn a_card_keeps_a_few_challenges_and_a_flood_replaces_only_the_flooders_own() {
        let card = CardSerial([1; 8]);
        let attacker = ClientKey::of([10, 0, 0, 66].into());
        let store = ChallengeStore::new(Duration::from_secs(60), 4);
        let holders = store.issue(card, me()).unwrap();
        for _ in 0..1000 {
            store.issue(card, attacker).unwrap();
        }
        assert_eq!(store.outstanding_for(card), 4);
        store.redeem(&holders, card).unwrap();
        assert_eq!(store.outstanding_for(card), 3);
        // A newcomer when the card is full of others' challenges replaces the oldest.
        for _ in 0..4 {
            store.issue(card, attacker).unwrap();
        }
        store.issue(card, me()).unwrap();
        assert_eq!(store.outstanding_for(card), 4);
        assert_eq!(store.table.lock().unwrap().outstanding.len(), 4);
    }

    #[test]
    fn challenges_are_single_use_short_lived_and_bound_to_a_card() {
        let a = CardSerial([1; 8]);
        let b = CardSerial([2; 8]);
        let store = ChallengeStore::new(Duration::from_secs(60), 4);
        let c = store.issue(a, me()).unwrap();
        assert!(matches!(
            store.redeem(&c, b),
            Err(CmsError::ChallengeMismatch { .. })
        ));
        let c = store.issue(a, me()).unwrap();
        store.redeem(&c, a).unwrap();
        assert!(matches!(
            store.redeem(&c, a),
            Err(CmsError::UnknownChallenge)
        ));
        assert!(matches!(
            store.redeem(&[0; 5], a),
            Err(CmsError::UnknownChallenge)
        ));

        let short = ChallengeStore::new(Duration::from_millis(1), 4);
        let c = short.issue(a, me()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(
            short.redeem(&c, a),
            Err(CmsError::ChallengeExpired)
        ));
    }
}
