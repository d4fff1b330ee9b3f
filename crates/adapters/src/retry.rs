//! One retry policy for every port: exponential backoff with full jitter (a uniform
//! fraction of the ceiling, so retrying callers spread out), a cap, a number of attempts
//! and, where the caller has one, a deadline. It sits on top of the SDK's own retries
//! (configured once in [`crate::load_config`]) and is for what those do not cover:
//! per-entry failures answered with HTTP 200 (Firehose, DynamoDB's unprocessed keys)
//! and calls a function must finish within its invocation.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::AwsError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The first ceiling; it doubles with every attempt.
    pub base: Duration,
    pub cap: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// A backoff for one operation; with a deadline, no wait runs past it.
    pub fn backoff(self, deadline: Option<Instant>) -> Backoff {
        Backoff {
            policy: self,
            attempt: 1,
            deadline,
        }
    }
}

/// The waits between the attempts of one operation.
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
    deadline: Option<Instant>,
}

impl Backoff {
    /// Waits before the next attempt. `false` (without waiting) when the attempts are
    /// used up or the wait would end past the deadline: give up now.
    pub async fn wait(&mut self) -> bool {
        if self.attempt >= self.policy.max_attempts {
            return false;
        }
        let ceiling = self
            .policy
            .cap
            .min(self.policy.base.saturating_mul(1 << self.attempt.min(16)));
        let sleep = ceiling.mul_f64(fastrand::f64());
        if self
            .deadline
            .is_some_and(|d| sleep >= d.saturating_duration_since(Instant::now()))
        {
            return false;
        }
        tokio::time::sleep(sleep).await;
        self.attempt += 1;
        true
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Runs `op` until it succeeds, fails with an error not worth retrying, or the
/// backoff gives up (then the last error is returned).
pub async fn with_retries<T, F, Fut>(
    policy: RetryPolicy,
    deadline: Option<Instant>,
    mut op: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let mut backoff = policy.backoff(deadline);
    loop {
        match op().await {
            Err(e) if e.retryable && backoff.wait().await => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_and_permanent_ones_are_not() {
        let calls = AtomicU32::new(0);
        let out = with_retries(RetryPolicy::default(), None, || async {
            match calls.fetch_add(1, Ordering::Relaxed) {
                0 | 1 => Err(AwsError::transient("op", "throttled")),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!((out.unwrap(), calls.load(Ordering::Relaxed)), (7, 3));
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = with_retries(RetryPolicy::default(), None, || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(AwsError::permanent("op", "access denied"))
        })
        .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_and_deadlines_bound_the_retries() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_attempts: 4,
            ..RetryPolicy::default()
        };
        let out: Result<(), _> = with_retries(policy, None, || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(AwsError::transient("op", "unavailable"))
        })
        .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        let mut b = RetryPolicy::default().backoff(Some(deadline));
        while b.wait().await {}
        assert!(Instant::now() <= deadline, "no wait runs past the deadline");
    }
}
