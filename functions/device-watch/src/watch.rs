//! The sweep, generic over its ports: heartbeats in; silences declared, paged, recovered.
//!
//! Each transition is a conditional write on the device's item followed by a publish
//! from what was written, then a second write that records the publish. A crash or an
//! SNS failure in between leaves the item saying "not yet paged", and the next sweep
//! publishes again with the same alert id: a page may repeat under failure, never vanish.

use pulselake_adapters::{AlertPublisher, AwsError, CachedRegistry, Heartbeats, RegistryLookup};
use pulselake_domain::alerting::{Alert, SilenceRule};
use pulselake_domain::silence::{
    Heartbeat, Silent, Step, next_step, recovery_alert, silence_alert,
};
use serde::Serialize;

/// Everything the sweep needs, built once per cold start.
pub struct DeviceWatch<R, H, P> {
    pub registry: CachedRegistry<R>,
    pub heartbeats: H,
    pub publisher: P,
    /// `None` when the rules document has no `device_silence` section: nothing to do.
    pub rule: Option<SilenceRule>,
}

/// What a sweep did (the function's result, and its metrics).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct WatchStats {
    pub devices: usize,
    /// Devices in a declared silence after the sweep.
    pub silent: usize,
    pub silence_pages: usize,
    pub recovery_pages: usize,
    /// Transitions that lost a race or failed; the next sweep takes them up again.
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("heartbeats unavailable: {0}")]
    Heartbeats(AwsError),
    #[error("device registry unavailable: {0}")]
    Registry(AwsError),
}

impl<R: RegistryLookup, H: Heartbeats, P: AlertPublisher> DeviceWatch<R, H, P> {
    pub async fn sweep(&self, now: i64) -> Result<WatchStats, WatchError> {
        let Some(rule) = self.rule else {
            return Ok(WatchStats::default());
        };
        let beats = self
            .heartbeats
            .all()
            .await
            .map_err(WatchError::Heartbeats)?;
        let mut stats = WatchStats {
            devices: beats.len(),
            ..WatchStats::default()
        };
        let steps: Vec<(String, Heartbeat, Step)> = beats
            .into_iter()
            .map(|(d, hb)| {
                let step = next_step(&hb, &rule, now);
                (d, hb, step)
            })
            .collect();
        // Only devices about to be declared silent need the registry (are they assigned?).
        let candidates: Vec<&str> = steps
            .iter()
            .filter(|(_, _, s)| *s == Step::Declare)
            .map(|(d, _, _)| d.as_str())
            .collect();
        let devices = self
            .registry
            .resolve(candidates.iter().copied())
            .await
            .map_err(WatchError::Registry)?;
        for (device, hb, step) in &steps {
            let result = match step {
                Step::Nothing => Ok(()),
                Step::Declare => {
                    let subject = devices
                        .get(device.as_str())
                        .and_then(|r| r.as_ref())
                        .and_then(|r| r.subject_at(now))
                        .map(str::to_owned);
                    match subject {
                        // Unassigned or unregistered: a silent device with nobody on it is no page.
                        None => Ok(()),
                        Some(subject) => {
                            self.declare(device, hb, subject, &rule, now, &mut stats)
                                .await
                        }
                    }
                }
                Step::PageSilence => match &hb.silent {
                    Some(s) => {
                        self.page_silence(device, hb, s, &rule, now, &mut stats)
                            .await
                    }
                    None => Ok(()),
                },
                Step::Recover => match &hb.silent {
                    Some(s) => self.recover(device, hb, s, &rule, now, &mut stats).await,
                    None => Ok(()),
                },
                Step::Clear => self.set(device, hb, None).await,
            };
            if let Err(e) = result {
                stats.failed += 1;
                tracing::warn!(error = %e, "a silence transition failed; the next sweep retries it");
            }
        }
        let after = self
            .heartbeats
            .all()
            .await
            .map_err(WatchError::Heartbeats)?;
        stats.silent = after.iter().filter(|(_, hb)| hb.silent.is_some()).count();
        Ok(stats)
    }

    async fn declare(
        &self,
        device: &str,
        hb: &Heartbeat,
        subject: String,
        rule: &SilenceRule,
        now: i64,
        stats: &mut WatchStats,
    ) -> Result<(), AwsError> {
        let silent = Silent {
            seen: hb.last_seen,
            subject,
            paged: false,
            recovering: false,
        };
        if !self
            .heartbeats
            .set_silence(device, hb, Some(&silent))
            .await?
        {
            return Err(lost_race());
        }
        let declared = Heartbeat {
            last_seen: hb.last_seen,
            silent: Some(silent.clone()),
        };
        self.page_silence(device, &declared, &silent, rule, now, stats)
            .await
    }

    async fn page_silence(
        &self,
        device: &str,
        hb: &Heartbeat,
        s: &Silent,
        rule: &SilenceRule,
        now: i64,
        stats: &mut WatchStats,
    ) -> Result<(), AwsError> {
        self.publish(&silence_alert(rule, s, now)).await?;
        stats.silence_pages += 1;
        let paged = Silent {
            paged: true,
            ..s.clone()
        };
        self.set(device, hb, Some(&paged)).await
    }

    async fn recover(
        &self,
        device: &str,
        hb: &Heartbeat,
        s: &Silent,
        rule: &SilenceRule,
        now: i64,
        stats: &mut WatchStats,
    ) -> Result<(), AwsError> {
        if !s.recovering {
            let recovering = Silent {
                recovering: true,
                ..s.clone()
            };
            self.set(device, hb, Some(&recovering)).await?;
        }
        self.publish(&recovery_alert(rule, s, hb.last_seen, now))
            .await?;
        stats.recovery_pages += 1;
        self.set(device, hb, None).await
    }

    async fn set(
        &self,
        device: &str,
        hb: &Heartbeat,
        new: Option<&Silent>,
    ) -> Result<(), AwsError> {
        if self.heartbeats.set_silence(device, hb, new).await? {
            Ok(())
        } else {
            Err(lost_race())
        }
    }

    async fn publish(&self, alert: &Alert) -> Result<(), AwsError> {
        self.publisher.publish(alert).await?;
        tracing::info!(alert_id = %alert.alert_id, rule = %alert.rule, "silence alert published");
        Ok(())
    }
}

fn lost_race() -> AwsError {
    AwsError::transient(
        "dynamodb:UpdateItem",
        "the device's heartbeat changed during the sweep",
    )
}
