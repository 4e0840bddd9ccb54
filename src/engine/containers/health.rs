//! Health checks as dockerd runs them: from each start, a probe (the HEALTHCHECK's command as an
//! exec in the container) every interval (every start interval during the start period), cut
//! off after the timeout; its exit code folded into the status by `refeng_spec::health`; the
//! last five results kept with their output; `health_status: ...` events on each change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::super::Engine;
use super::body::{Config, HealthConfig};
use super::io::{now_rfc3339, Chunk};
use refeng_spec::engine::Status;
use refeng_spec::health::{Health, HealthStatus};

/// dockerd's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: u32 = 3;
/// Results kept.
const MAX_LOG_ENTRIES: usize = 5;
/// Output kept of each probe.
const MAX_OUTPUT_LEN: usize = 4096;

/// One probe's result, as inspect's `State.Health.Log` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    /// When it started.
    pub start: String,
    /// When it ended.
    pub end: String,
    /// Its exit code (-1 when it could not run or timed out).
    pub exit_code: i64,
    /// Its output, cut at 4096 bytes.
    pub output: String,
}

/// The persisted health of a container with a health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    /// Status and failing streak.
    pub health: Health,
    /// The last results, oldest first.
    pub log: Vec<Probe>,
}

impl HealthRecord {
    /// `State.Health` in inspect.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "Status": self.health.status.as_str(),
            "FailingStreak": self.health.failing_streak,
            "Log": self.log,
        })
    }
}

/// The check in force: `None` without one or with `NONE`.
#[must_use]
pub fn active(config: &Config) -> Option<&HealthConfig> {
    config.healthcheck.as_ref().filter(|h| {
        h.test
            .as_deref()
            .and_then(|t| t.first())
            .is_some_and(|k| k != "NONE")
    })
}

/// The probe's argv: `CMD args...` as is, `CMD-SHELL cmd` through the container's shell.
#[must_use]
pub fn probe_argv(check: &HealthConfig, config: &Config) -> Vec<String> {
    let test = check.test.clone().unwrap_or_default();
    let rest: Vec<String> = test.iter().skip(1).cloned().collect();
    if test.first().map(String::as_str) == Some("CMD-SHELL") {
        let mut shell = config
            .shell
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        shell.extend(rest);
        shell
    } else {
        rest
    }
}

fn duration(ns: i64, default: Duration) -> Duration {
    u64::try_from(ns)
        .ok()
        .filter(|n| *n > 0)
        .map_or(default, Duration::from_nanos)
}

/// A duration as Go's `time.Duration.String` prints it (`30s`, `1.5s`, `500ms`, `1m30s`).
#[must_use]
pub fn go_duration(d: Duration) -> String {
    refeng_spec::build::go_text::format_duration(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Within the start period of the run that started at `started_at`.
fn in_start_period(started_at: &str, period: Duration) -> bool {
    if period.is_zero() {
        return false;
    }
    chrono::DateTime::parse_from_rfc3339(started_at).is_ok_and(|t| {
        let since = chrono::Utc::now().signed_duration_since(t);
        since.to_std().is_ok_and(|s| s < period)
    })
}

/// The health a run starts with (`fresh`: a new start; else live restore, which keeps what was
/// recorded): `starting` with the earlier results kept, none without a health check.
pub fn mark_started(config: &Config, state: &mut super::RunState, fresh: bool) {
    if active(config).is_none() {
        state.health = None;
    } else if fresh || state.health.is_none() {
        let log = state.health.take().map(|h| h.log).unwrap_or_default();
        state.health = Some(HealthRecord {
            health: Health::starting(),
            log,
        });
    }
}

impl Engine {
    /// Runs probes while the current run of `id` (its `started_at`) lasts; nothing without a
    /// health check. The status was set with the start ([`mark_started`]).
    pub(super) fn health_monitor_spawn(self: &Arc<Self>, id: &str) {
        let (check, started_at) = {
            let map = self.containers.lock();
            let Some(e) = map.get(id) else { return };
            let Some(check) = active(&e.stored.config).cloned() else {
                return;
            };
            (check, e.stored.state.started_at.clone().unwrap_or_default())
        };
        let me = Arc::clone(self);
        let id = id.to_string();
        tokio::spawn(async move { me.health_monitor(&id, &check, &started_at).await });
    }

    async fn health_monitor(self: Arc<Self>, id: &str, check: &HealthConfig, run: &str) {
        let interval = duration(check.interval, DEFAULT_INTERVAL);
        let timeout = duration(check.timeout, DEFAULT_TIMEOUT);
        let start_period = duration(check.start_period, Duration::ZERO);
        let start_interval = duration(check.start_interval, DEFAULT_START_INTERVAL);
        let retries = u32::try_from(check.retries)
            .ok()
            .filter(|r| *r > 0)
            .unwrap_or(DEFAULT_RETRIES);
        loop {
            let starting = self
                .health_of(id)
                .is_some_and(|h| h.status == HealthStatus::Starting);
            let wait = if starting && in_start_period(run, start_period) {
                start_interval.min(interval)
            } else {
                interval
            };
            tokio::time::sleep(wait).await;
            let (status, config) = {
                let map = self.containers.lock();
                let Some(e) = map.get(id) else { return };
                if e.stored.state.started_at.as_deref() != Some(run) {
                    return;
                }
                (e.lc.status(), e.stored.config.clone())
            };
            match status {
                Status::Running => {}
                Status::Paused => continue,
                _ => return,
            }
            let counted_in_period = in_start_period(run, start_period);
            let start = now_rfc3339();
            let (exit_code, output) =
                match self.probe(id, &probe_argv(check, &config), timeout).await {
                    Ok(r) => r,
                    Err(msg) => (-1, msg),
                };
            let result = Probe {
                start,
                end: now_rfc3339(),
                exit_code,
                output,
            };
            let changed = self.update(id, |e| {
                if e.stored.state.started_at.as_deref() != Some(run) {
                    return None;
                }
                let rec = e.stored.state.health.get_or_insert_with(|| HealthRecord {
                    health: Health::starting(),
                    log: Vec::new(),
                });
                let before = rec.health.status;
                rec.health =
                    rec.health
                        .after_probe(result.exit_code == 0, counted_in_period, retries);
                rec.log.push(result);
                let excess = rec.log.len().saturating_sub(MAX_LOG_ENTRIES);
                rec.log.drain(..excess);
                (before != rec.health.status).then_some(rec.health.status)
            });
            match changed {
                Ok(Some(now)) => {
                    self.container_event(
                        id,
                        &format!("health_status: {}", now.as_str()),
                        BTreeMap::new(),
                    );
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
    }

    fn health_of(&self, id: &str) -> Option<Health> {
        self.containers
            .lock()
            .get(id)
            .and_then(|e| e.stored.state.health.as_ref().map(|h| h.health))
    }

    /// Runs one probe as an exec: its exit code and combined output, or why it could not run
    /// (dockerd's wording for a timeout). The exec instance is forgotten afterwards.
    async fn probe(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<(i64, String), String> {
        let body = json!({"Cmd": argv, "AttachStdout": true, "AttachStderr": true});
        let created = self
            .exec_create(id, body.to_string().as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let exec_id = created["Id"].as_str().unwrap_or_default().to_string();
        let result = self.probe_exec(id, &exec_id, timeout).await;
        self.exec_forget(id, &exec_id);
        result
    }

    async fn probe_exec(
        &self,
        id: &str,
        exec_id: &str,
        timeout: Duration,
    ) -> Result<(i64, String), String> {
        let mut done = self
            .exec_get(exec_id)
            .map_err(|e| e.to_string())?
            .done
            .subscribe();
        let (mut rx, _pio, _tty) = self.exec_start(exec_id).await.map_err(|e| e.to_string())?;
        let mut output: Vec<u8> = Vec::new();
        let run = async {
            loop {
                match rx.recv().await {
                    Ok(Chunk::Out(_, b)) => {
                        let room = MAX_OUTPUT_LEN.saturating_sub(output.len());
                        output.extend_from_slice(&b[..b.len().min(room)]);
                    }
                    Ok(Chunk::End) | Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                }
            }
            while !*done.borrow_and_update() {
                if done.changed().await.is_err() {
                    break;
                }
            }
        };
        if tokio::time::timeout(timeout, run).await.is_err() {
            let _ = self.containers.ctd.kill(id, exec_id, 9, false).await;
            return Err(format!(
                "Health check exceeded timeout ({})",
                go_duration(timeout)
            ));
        }
        let code = self
            .exec_get(exec_id)
            .ok()
            .and_then(|x| x.exit_code)
            .map_or(-1, i64::from);
        Ok((code, String::from_utf8_lossy(&output).into_owned()))
    }

    /// Drops a finished probe's exec record (probes would otherwise pile up).
    fn exec_forget(&self, id: &str, exec_id: &str) {
        self.containers
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(exec_id);
        if let Some(e) = self.containers.lock().get_mut(id) {
            e.execs.retain(|x| x != exec_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
    }

    #[test]
    fn probes_run_through_the_shell_or_as_given() {
        let mut config = Config::default();
        let check = HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), "test -f /ok".into()]),
            ..HealthConfig::default()
        };
        assert_eq!(
            probe_argv(&check, &config),
            ["/bin/sh", "-c", "test -f /ok"]
        );
        config.shell = Some(vec!["/bin/ash".into(), "-ec".into()]);
        assert_eq!(
            probe_argv(&check, &config),
            ["/bin/ash", "-ec", "test -f /ok"]
        );
        let check = HealthConfig {
            test: Some(vec!["CMD".into(), "true".into()]),
            ..HealthConfig::default()
        };
        assert_eq!(probe_argv(&check, &config), ["true"]);
        assert!(active(&config).is_none());
        config.healthcheck = Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..HealthConfig::default()
        });
        assert!(active(&config).is_none());
        config.healthcheck = Some(check);
        assert!(active(&config).is_some());
    }

    #[test]
    fn start_period_is_judged_from_the_start() {
        let now = now_rfc3339();
        assert!(in_start_period(&now, Duration::from_secs(60)));
        assert!(!in_start_period(&now, Duration::ZERO));
        assert!(!in_start_period(
            "2000-01-01T00:00:00Z",
            Duration::from_secs(60)
        ));
    }
}
