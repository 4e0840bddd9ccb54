//! A container's health, as dockerd keeps it: `starting` from each start, `healthy` after a
//! probe that passes, `unhealthy` after `retries` failures in a row; failures while still
//! `starting` inside the start period do not count. A pure fold of probe results.

use serde::{Deserialize, Serialize};

/// dockerd's health statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// No probe has passed since the start.
    Starting,
    /// The last probe passed.
    Healthy,
    /// `retries` probes in a row failed.
    Unhealthy,
}

impl HealthStatus {
    /// The API's name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// The status and the failing streak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Its status.
    pub status: HealthStatus,
    /// Failed probes in a row (that counted).
    pub failing_streak: u32,
}

impl Health {
    /// At a start.
    #[must_use]
    pub fn starting() -> Health {
        Health {
            status: HealthStatus::Starting,
            failing_streak: 0,
        }
    }

    /// When the container stops: unhealthy, as dockerd marks a stopped container (the streak
    /// stays as it was).
    #[must_use]
    pub fn stopped(self) -> Health {
        Health {
            status: HealthStatus::Unhealthy,
            ..self
        }
    }

    /// After a probe: `passed` (exit code 0), `in_start_period` (the probe started within
    /// the start period after the container's start), `retries` (at least 1).
    #[must_use]
    pub fn after_probe(self, passed: bool, in_start_period: bool, retries: u32) -> Health {
        if passed {
            return Health {
                status: HealthStatus::Healthy,
                failing_streak: 0,
            };
        }
        if self.status == HealthStatus::Starting && in_start_period {
            return self;
        }
        let failing_streak = self.failing_streak.saturating_add(1);
        Health {
            status: if failing_streak >= retries.max(1) {
                HealthStatus::Unhealthy
            } else {
                self.status
            },
            failing_streak,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_and_failures_fold_as_dockerd() {
        let h = Health::starting();
        let h = h.after_probe(false, true, 3);
        assert_eq!(
            h,
            Health::starting(),
            "inside the start period nothing counts"
        );
        let h = h.after_probe(false, false, 3);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 1));
        let h = h.after_probe(false, false, 3).after_probe(false, false, 3);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 3));
        let h = h.after_probe(true, false, 3);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        // Once healthy, the start period no longer shelters a failure.
        let h = h.after_probe(false, true, 1);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 1));
        assert_eq!(h.status.as_str(), "unhealthy");
        let h = Health::starting().after_probe(true, false, 3).stopped();
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unhealthy, 0));
    }

    #[test]
    fn zero_retries_act_as_one() {
        let h = Health::starting().after_probe(false, false, 0);
        assert_eq!(h.status, HealthStatus::Unhealthy);
    }
}
