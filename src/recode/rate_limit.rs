//! A token bucket shared by every scan segment of a run.
//!
//! Over any stretch of time, at most `rate` items per second plus a burst of
//! one second's worth are let through, whatever the number of segments
//! asking. A poisoned bucket limits nothing rather than stopping the run.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: `rate` items per second, with a burst of at most one
/// second's worth.
pub(super) struct RateLimiter {
    rate: f64,
    /// The tokens available, and when they were counted.
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A bucket of `items_per_second` (at least 1), holding one token.
    pub fn new(items_per_second: u32) -> Self {
        RateLimiter {
            rate: f64::from(items_per_second.max(1)),
            state: Mutex::new((1.0, Instant::now())),
        }
    }

    /// Waits for one token.
    pub async fn acquire(&self) {
        loop {
            let wait = match self.state.lock() {
                Ok(mut state) => {
                    let now = Instant::now();
                    let refill = now.duration_since(state.1).as_secs_f64() * self.rate;
                    state.0 = (state.0 + refill).min(self.rate.max(1.0));
                    state.1 = now;
                    if state.0 >= 1.0 {
                        state.0 -= 1.0;
                        return;
                    }
                    (1.0 - state.0) / self.rate
                }
                // A poisoned limiter limits nothing rather than stopping the run.
                Err(_) => return,
            };
            let wait = Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_millis(1));
            tokio::time::sleep(wait.max(Duration::from_micros(100))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_rate_limiter_paces_items() {
        let limiter = RateLimiter::new(20);
        let started = std::time::Instant::now();
        for _ in 0..11 {
            limiter.acquire().await;
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }
}
