//! What one client of the bridge may take: the caps, and a token bucket per connection.

use std::time::{Duration, Instant};

/// The largest request body, and the largest WebSocket message, in bytes (the socket API's
/// line cap).
pub const MAX_BODY_BYTES: usize = agent_ipc::MAX_MESSAGE_BYTES;
/// A client has this long to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A client has this long to send a request's body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A WebSocket has this long after the upgrade to say `hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests a connection may make: `burst` at once, then `rate` a second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    filled: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens (at least one), refilled at `rate` a second (at least
    /// one).
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            burst,
            rate: f64::from(rate.max(1)),
            filled: now,
        }
    }

    /// Takes a token: `Ok` when there was one, else how long until there is.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.filled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.filled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// The `Retry-After` for a wait: whole seconds, at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, start);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        let wait = bucket.take(start).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // A tenth of a second later, one more.
        let later = start + Duration::from_millis(100);
        assert_eq!(bucket.take(later), Ok(()));
        assert!(bucket.take(later).is_err());
        // A long pause refills no more than the burst.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(much_later), Ok(()));
        }
        assert!(bucket.take(much_later).is_err());
    }

    #[test]
    fn zero_settings_still_serve_one_a_second() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(0, 0, start);
        assert_eq!(bucket.take(start), Ok(()));
        assert!(bucket.take(start).is_err());
        assert_eq!(bucket.take(start + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(50)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }
}
