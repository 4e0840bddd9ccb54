//! The engine's event log and `GET /events`: every event the engine emits (its own, and those it
//! derives from refeng-containerd's Events.Subscribe) goes into one bounded in-memory log, as in
//! dockerd (the last 256), and out to every subscriber; `since` replays from the log, `until`
//! ends the stream, and `filters` select with dockerd's rules.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::filters::Filters;

/// How many past events `since` can reach (dockerd's `eventsLimit`).
pub const LOG_LIMIT: usize = 256;

/// The filter keys `/events` accepts (dockerd's list).
pub const FILTER_KEYS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// The object types an event can be about.
const TYPES: &[&str] = &[
    "builder",
    "config",
    "container",
    "daemon",
    "image",
    "network",
    "node",
    "plugin",
    "secret",
    "service",
    "volume",
];

/// Who an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// The object's id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its name, image, labels, exit code, ...
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// One event, in the Engine API's `events.Message` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Deprecated copy of `Action` for container and image events (API < 1.52 still has it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Deprecated copy of `Actor.ID` for container and image events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Deprecated: a container event's image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// container, image, daemon, ...
    #[serde(rename = "Type")]
    pub kind: String,
    /// create, start, die, pull, tag, reload, ...
    #[serde(rename = "Action")]
    pub action: String,
    /// Who.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Always `local` here (no swarm).
    pub scope: String,
    /// Seconds since the epoch.
    pub time: i64,
    /// Nanoseconds since the epoch.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Event {
    /// An event of `kind`/`action` about `id`, now.
    pub fn new(kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) -> Event {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let legacy = matches!(kind, "container" | "image");
        Event {
            status: legacy.then(|| action.to_string()),
            id: legacy.then(|| id.to_string()),
            from: if kind == "container" {
                attributes.get("image").cloned()
            } else {
                None
            },
            kind: kind.into(),
            action: action.into(),
            actor: Actor {
                id: id.into(),
                attributes,
            },
            scope: "local".into(),
            time: nanos / 1_000_000_000,
            time_nano: nanos,
        }
    }

    /// Whether the event passes `filters` (validated by [`validate_filters`]), by dockerd's
    /// rules (`daemon/events/filter.go`): every given key must match.
    pub fn matches(&self, f: &Filters) -> bool {
        let a = &self.actor;
        let name = a.attributes.get("name").map(String::as_str);
        let action_base = self.action.split(':').next().unwrap_or("");
        let of_kind = |kind: &str, key: &str| {
            !f.contains(key)
                || (self.kind == kind
                    && f.get(key).any(|v| {
                        v == a.id || Some(v) == name || (v.len() >= 12 && a.id.starts_with(v))
                    }))
        };
        let image_ok = !f.contains("image") || {
            let image = match self.kind.as_str() {
                "image" => Some(a.id.as_str()),
                "container" => a.attributes.get("image").map(String::as_str),
                _ => None,
            };
            image.is_some_and(|img| {
                f.get("image").any(|v| {
                    v == img
                        || img.split('@').next() == Some(v)
                        || img.rsplit_once(':').map(|(r, _)| r) == Some(v)
                        || name == Some(v)
                })
            })
        };
        f.exact_match("type", &self.kind)
            && (!f.contains("event")
                || f.get("event").any(|e| e == self.action || e == action_base))
            && f.exact_match("scope", &self.scope)
            && of_kind("container", "container")
            && of_kind("daemon", "daemon")
            && of_kind("network", "network")
            && of_kind("volume", "volume")
            && of_kind("plugin", "plugin")
            && image_ok
            && f.match_labels("label", &a.attributes)
            && !f.contains("node")
            && !f.contains("service")
            && !f.contains("secret")
            && !f.contains("config")
    }
}

/// Checks `/events` filters: known keys, known types and scopes.
///
/// # Errors
/// `BadRequest` naming the key or value.
pub fn validate_filters(f: &Filters) -> Result<(), ApiError> {
    f.validate(FILTER_KEYS)?;
    if let Some(t) = f.get("type").find(|t| !TYPES.contains(t)) {
        return Err(ApiError::BadRequest(format!("invalid filter 'type={t}'")));
    }
    if let Some(s) = f.get("scope").find(|s| *s != "local" && *s != "swarm") {
        return Err(ApiError::BadRequest(format!("invalid filter 'scope={s}'")));
    }
    Ok(())
}

/// An event with its place in the log.
pub type Numbered = (u64, Event);

/// How many events an `/events` client may fall behind before it misses some.
const LIVE_BACKLOG: usize = 1024;

/// The log and the live feed.
///
/// Each `/events` client has its own bounded queue, which takes memory only for what it holds
/// (a broadcast ring would hold all its slots from the daemon's start, listened to or not).
#[derive(Debug, Default)]
pub struct EventLog {
    log: Mutex<VecDeque<(u64, Event)>>,
    /// The last sequence number given, and the live queues: one lock, so that every queue
    /// sees the log's order and a new one misses nothing.
    live: Mutex<(u64, Vec<mpsc::Sender<Numbered>>)>,
}

impl EventLog {
    /// Records `event` and sends it to every subscriber.
    pub fn emit(&self, event: Event) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.0 += 1;
        let n = live.0;
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() == LOG_LIMIT {
                log.pop_front();
            }
            log.push_back((n, event.clone()));
        }
        live.1.retain(|tx| match tx.try_send((n, event.clone())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(action = %event.action, "an /events client fell behind: event dropped");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// How many `/events` streams are open.
    pub fn listeners(&self) -> usize {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.1.iter().filter(|tx| !tx.is_closed()).count()
    }

    /// A live subscription and a copy of the log taken after it started, so that nothing falls
    /// between the two (the sequence numbers tell the overlap).
    pub fn subscribe(&self) -> (mpsc::Receiver<Numbered>, Vec<Numbered>) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, rx) = mpsc::channel(LIVE_BACKLOG);
        live.1.retain(|tx| !tx.is_closed());
        live.1.push(tx);
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        (rx, log.iter().cloned().collect())
    }
}

/// Parses a `since`/`until` value as dockerd's `timetypes.GetTimestamp` does: Unix seconds with
/// an optional fraction (`1700000000.5`), an RFC 3339 time or date, or a Go duration (`10m`,
/// `1h30m`) meaning that long before `now`.
///
/// # Errors
/// `BadRequest` naming the value.
pub fn parse_timestamp(value: &str, now: SystemTime) -> Result<SystemTime, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "failed to parse value as time or duration: {value:?}"
        ))
    };
    if value.is_empty() {
        return Err(bad());
    }
    if let Some(d) = parse_go_duration(value) {
        return now.checked_sub(d).ok_or_else(bad);
    }
    if value
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && !value.contains('-')
    {
        let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
        let secs: u64 = secs.parse().map_err(|_| bad())?;
        let mut nanos = 0u32;
        if !frac.is_empty() {
            if frac.len() > 9 {
                return Err(bad());
            }
            let padded = format!("{frac:0<9}");
            nanos = padded.parse().map_err(|_| bad())?;
        }
        return UNIX_EPOCH
            .checked_add(Duration::new(secs, nanos))
            .ok_or_else(bad);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(t.into());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc();
        return Ok(t.into());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(t.and_utc().into());
    }
    Err(bad())
}

/// A Go duration string (`300ms`, `1.5h`, `2h45m`), or `None` when it is not one.
fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() || rest == "0" {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The nanoseconds since the epoch of `t` (0 before it).
pub fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event::new(
            kind,
            action,
            id,
            attrs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        )
    }

    #[test]
    fn filters_follow_dockerds_rules() {
        let c = ev(
            "container",
            "exec_create: sh",
            "0123456789abcdef0123",
            &[("name", "web"), ("image", "busybox:latest"), ("a", "b")],
        );
        let yes = |j: &str| c.matches(&Filters::parse(j).unwrap());
        assert!(yes(r#"{"type":["container"]}"#));
        assert!(!yes(r#"{"type":["image"]}"#));
        assert!(yes(r#"{"event":["exec_create"]}"#));
        assert!(yes(r#"{"container":["web"]}"#));
        assert!(yes(r#"{"container":["0123456789ab"]}"#));
        assert!(!yes(r#"{"container":["other"]}"#));
        assert!(yes(r#"{"image":["busybox"]}"#));
        assert!(yes(r#"{"label":["a=b"]}"#));
        assert!(!yes(r#"{"label":["a=c"]}"#));
        assert!(!yes(r#"{"daemon":["x"]}"#));
        let d = ev("daemon", "reload", "ID", &[("name", "host")]);
        assert!(d.matches(&Filters::parse(r#"{"daemon":["host"]}"#).unwrap()));
        assert!(validate_filters(&Filters::parse(r#"{"type":["bogus"]}"#).unwrap()).is_err());
        assert!(validate_filters(&Filters::parse(r#"{"bogus":["x"]}"#).unwrap()).is_err());
    }

    #[test]
    fn the_log_keeps_the_last_256_and_a_subscription_sees_no_gap() {
        let log = EventLog::default();
        for i in 0..300 {
            log.emit(ev("daemon", "reload", &i.to_string(), &[]));
        }
        let (mut rx, past) = log.subscribe();
        assert_eq!(past.len(), LOG_LIMIT);
        assert_eq!(past[0].1.actor.id, "44");
        log.emit(ev("daemon", "reload", "next", &[]));
        let (n, e) = rx.try_recv().unwrap();
        assert_eq!(n, 301);
        assert_eq!(e.actor.id, "next");
    }

    #[test]
    fn timestamps_in_dockerds_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = |v: &str| parse_timestamp(v, now).map(unix_nanos);
        assert_eq!(s("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(s("1700000000.5").unwrap(), 1_700_000_000_500_000_000);
        assert_eq!(s("10m").unwrap(), (1_000_000 - 600) * 1_000_000_000);
        assert_eq!(s("1h30m").unwrap(), (1_000_000 - 5400) * 1_000_000_000);
        assert_eq!(s("1970-01-02").unwrap(), 86_400 * 1_000_000_000);
        assert_eq!(s("1970-01-01T00:00:10Z").unwrap(), 10_000_000_000);
        for bad in ["", "x", "1.2.3", "10q", "1.0000000001"] {
            assert!(s(bad).is_err(), "{bad}");
        }
    }
}
