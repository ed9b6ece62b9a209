//! What a cluster API answer's status code means for the caller (`pkg/zero/cluster/client.go`,
//! `internal/zero/apierror` upstream), and the retry backoff.

use std::time::Duration;

/// The longest wait between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// The first wait.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);

/// What to do after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx (and 304 for downloads): use the answer.
    Success,
    /// 401: the id token is no longer accepted: drop it, exchange the cluster token again, retry.
    Reexchange,
    /// 400: the request itself is refused and will stay refused. From `exchangeToken` or
    /// `bootstrap` it means the cluster token was rotated or revoked: the replica exits.
    Terminal,
    /// Anything else (5xx, 404, 429, ...): retry with backoff.
    Retry,
}

impl Outcome {
    pub fn of(status: u16) -> Self {
        match status {
            200..=299 | 304 => Self::Success,
            401 => Self::Reexchange,
            400 => Self::Terminal,
            _ => Self::Retry,
        }
    }
}

/// The message a replica exits with when the control plane refuses its cluster token.
pub const TOKEN_REFUSED: &str = "the cluster token was rotated or revoked (the control plane answered 400): \
     get the cluster's current token from the console (Manage Clusters) and restart pomerium with it \
     in POMERIUM_ZERO_TOKEN";

/// Exponential backoff from [`INITIAL_BACKOFF`], doubling to at most a cap, with up to 20 %
/// jitter taken off (from the caller's randomness, so that this stays deterministic to test).
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(MAX_BACKOFF)
    }
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self { next: INITIAL_BACKOFF.min(max), max }
    }

    /// The next wait; `jitter` in [0, 1) takes up to 20 % off it.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay.mul_f64(1.0 - 0.2 * jitter.clamp(0.0, 1.0))
    }

    /// After a success: start again from the first wait.
    pub fn reset(&mut self) {
        self.next = INITIAL_BACKOFF.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        assert_eq!(Outcome::of(200), Outcome::Success);
        assert_eq!(Outcome::of(204), Outcome::Success);
        assert_eq!(Outcome::of(304), Outcome::Success);
        assert_eq!(Outcome::of(401), Outcome::Reexchange);
        assert_eq!(Outcome::of(400), Outcome::Terminal);
        for status in [403, 404, 429, 500, 502, 503] {
            assert_eq!(Outcome::of(status), Outcome::Retry, "{status}");
        }
    }

    #[test]
    fn backoff_doubles_to_five_minutes_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..20).map(|_| backoff.next_delay(0.0)).collect();
        assert_eq!(delays.first(), Some(&INITIAL_BACKOFF));
        assert_eq!(delays.get(1), Some(&(INITIAL_BACKOFF * 2)));
        assert!(delays.windows(2).all(|w| matches!(w, [a, b] if a <= b)));
        assert_eq!(delays.last(), Some(&MAX_BACKOFF));
        assert!(backoff.next_delay(0.999) >= MAX_BACKOFF.mul_f64(0.8));
        backoff.reset();
        assert_eq!(backoff.next_delay(0.0), INITIAL_BACKOFF);
    }
}
