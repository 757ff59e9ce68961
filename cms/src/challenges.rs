//! The challenges the service hands out for a card to sign: single-use, short-lived, bound to
//! the card, and kept in memory only.

use crate::error::{CmsError, CmsResult};
use piv::CardSerial;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most challenges outstanding at once; beyond it the service answers `busy`.
const MAX_OUTSTANDING: usize = 100_000;

/// Outstanding challenges, in memory: a restart forgets them, which only makes clients ask
/// again.
#[derive(Debug)]
pub struct ChallengeStore {
    ttl: Duration,
    outstanding: Mutex<HashMap<[u8; 32], (CardSerial, Instant)>>,
}

impl ChallengeStore {
    /// A store whose challenges live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            outstanding: Mutex::new(HashMap::new()),
        }
    }

    /// A new challenge for `serial`.
    pub fn issue(&self, serial: CardSerial) -> CmsResult<[u8; 32]> {
        let mut challenge = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut challenge);
        let now = Instant::now();
        let mut map = self.outstanding.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_OUTSTANDING {
            map.retain(|_, (_, expires)| *expires > now);
            if map.len() >= MAX_OUTSTANDING {
                return Err(CmsError::Busy);
            }
        }
        map.insert(challenge, (serial, now + self.ttl));
        Ok(challenge)
    }

    /// Takes `challenge` out of the store (it can never be used again) and checks it was
    /// issued for `serial` and is still fresh.
    pub fn redeem(&self, challenge: &[u8], serial: CardSerial) -> CmsResult<()> {
        let key: [u8; 32] = challenge
            .try_into()
            .map_err(|_| CmsError::UnknownChallenge)?;
        let entry = self
            .outstanding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        let (issued_for, expires) = entry.ok_or(CmsError::UnknownChallenge)?;
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

    #[test]
    fn challenges_are_single_use_short_lived_and_bound_to_a_card() {
        let a = CardSerial([1; 8]);
        let b = CardSerial([2; 8]);
        let store = ChallengeStore::new(Duration::from_secs(60));
        let c = store.issue(a).unwrap();
        assert!(matches!(
            store.redeem(&c, b),
            Err(CmsError::ChallengeMismatch { .. })
        ));
        let c = store.issue(a).unwrap();
        store.redeem(&c, a).unwrap();
        assert!(matches!(
            store.redeem(&c, a),
            Err(CmsError::UnknownChallenge)
        ));
        assert!(matches!(
            store.redeem(&[0; 5], a),
            Err(CmsError::UnknownChallenge)
        ));

        let short = ChallengeStore::new(Duration::from_millis(1));
        let c = short.issue(a).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(
            short.redeem(&c, a),
            Err(CmsError::ChallengeExpired)
        ));
    }
}
