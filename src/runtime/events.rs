//! `events`: the container's resource usage and OOM kills as JSON lines (runc's format:
//! `{"type":"stats","id":...,"data":{...}}` and `{"type":"oom","id":...}`). `--stats` prints one
//! stats event; otherwise stats are printed every interval and OOM kills as they are seen, until
//! the container stops.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::runtime::cgroups::stats::Stats;
use crate::runtime::cgroups::CgroupError;
use crate::runtime::container::report;
use crate::runtime::state::{StateError, StateRoot, Status};

/// How often OOM counters are looked at between two stats events.
const OOM_POLL: Duration = Duration::from_millis(100);

/// Errors of `events`.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// the container cannot be found
    #[error(transparent)]
    State(#[from] StateError),
    /// the container is stopped
    #[error("cannot read events of container {0}: it is stopped")]
    Stopped(String),
    /// the cgroup could not be read
    #[error("container {id}: cannot read its cgroup")]
    Cgroup {
        /// Container id.
        id: String,
        /// The error.
        #[source]
        source: Box<CgroupError>,
    },
    /// the interval did not parse
    #[error("interval {0:?} is not a duration (like 5s, 500ms, 1m)")]
    Interval(String),
    /// stdout is gone
    #[error("cannot write events")]
    Write(#[source] std::io::Error),
}

/// One event line.
#[derive(Debug, Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Stats>,
}

/// Parses `5s`, `500ms`, `2m`, `1h` or plain seconds.
///
/// # Errors
/// [`EventsError::Interval`].
pub fn parse_interval(text: &str) -> Result<Duration, EventsError> {
    let err = || EventsError::Interval(text.to_string());
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((t, "s"), |i| t.split_at(i));
    let n: f64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(err()),
    };
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn emit(
    out: &mut impl Write,
    kind: &'static str,
    id: &str,
    data: Option<&Stats>,
) -> Result<(), EventsError> {
    let line = serde_json::to_string(&Event { kind, id, data }).unwrap_or_default();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(EventsError::Write)
}

/// Runs `events` for container `id`, writing to `out`.
///
/// # Errors
/// An unknown or stopped container, an unreadable cgroup, or a closed output.
pub fn events(
    root: &StateRoot,
    id: &str,
    stats_once: bool,
    interval: Duration,
    out: &mut impl Write,
) -> Result<(), EventsError> {
    let state = root
        .peek(id)?
        .ok_or_else(|| refeng_spec::oci::OpError::NotFound { id: id.to_string() })
        .map_err(StateError::from)?;
    if report(root, id)?.status == Status::Stopped {
        return Err(EventsError::Stopped(id.to_string()));
    }
    let read = || {
        state.cgroup.stats().map_err(|source| EventsError::Cgroup {
            id: id.to_string(),
            source: Box::new(source),
        })
    };
    let first = read()?;
    if stats_once {
        return emit(out, "stats", id, Some(&first));
    }
    let mut oom_kills = first.memory.oom_kills;
    let mut next_stats = Instant::now();
    loop {
        let alive = report(root, id).is_ok_and(|r| r.status != Status::Stopped);
        let Ok(stats) = read() else { return Ok(()) };
        if stats.memory.oom_kills > oom_kills {
            oom_kills = stats.memory.oom_kills;
            emit(out, "oom", id, None)?;
        }
        if !alive {
            return Ok(());
        }
        if Instant::now() >= next_stats {
            emit(out, "stats", id, Some(&stats))?;
            next_stats = Instant::now() + interval;
        }
        std::thread::sleep(OOM_POLL.min(interval));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_interval("3").unwrap(), Duration::from_secs(3));
        for bad in ["", "0s", "-1s", "5x", "abc", "1e400s"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
