//! The shim's log: one line per `tracing` event (and per `log` record, which is how ttrpc logs),
//! written to stderr for `start`/`delete` and to the bundle's `log` FIFO for the serving shim.
//!
//! The lines are those tracing-subscriber's `fmt` wrote with ANSI and targets off
//! (`2026-11-29T12:45:45.249899Z  INFO create{id=c1}: runtime binary="refeng-runc"`). It is
//! written here rather than taken from tracing-subscriber because the shim is one process per
//! container and its resident memory is its whole binary: `fmt` with its registry and log bridge
//! made the shim's text 80 kB larger than this module does (benches/shim_rss.sh).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Where the lines go.
#[derive(Debug)]
pub enum Sink {
    /// The process's stderr.
    Stderr,
    /// A file (the serving shim's non-blocking log FIFO). A line that does not fit is dropped:
    /// the shim never waits on the reader.
    File(std::fs::File),
    /// Nowhere (the serving shim without a log FIFO).
    Discard,
}

impl Sink {
    fn write_line(&mut self, line: &str) {
        // Errors are dropped: there is nowhere left to report them.
        let _ = match self {
            Sink::Stderr => std::io::stderr().write_all(line.as_bytes()),
            Sink::File(file) => file.write_all(line.as_bytes()),
            Sink::Discard => Ok(()),
        };
    }
}

/// Installs the shim's logger for `tracing` and `log` at `max` (DEBUG with `-debug`, else INFO).
/// Does nothing when a logger is already installed.
pub fn init(max: Level, sink: Sink) {
    let logger = Arc::new(ShimLog {
        max,
        sink: Mutex::new(sink),
        spans: Mutex::new(Vec::new()),
        next_span: AtomicU64::new(1),
    });
    if tracing::subscriber::set_global_default(Arc::clone(&logger)).is_ok()
        && log::set_boxed_logger(Box::new(logger)).is_ok()
    {
        log::set_max_level(log_filter(max));
    }
}

/// The `log` crate's filter that lets through what `max` lets through.
fn log_filter(max: Level) -> log::LevelFilter {
    match max {
        Level::ERROR => log::LevelFilter::Error,
        Level::WARN => log::LevelFilter::Warn,
        Level::INFO => log::LevelFilter::Info,
        Level::DEBUG => log::LevelFilter::Debug,
        Level::TRACE => log::LevelFilter::Trace,
    }
}

/// The subscriber and logger; lives for the whole process.
#[derive(Debug)]
struct ShimLog {
    max: Level,
    sink: Mutex<Sink>,
    /// Open spans by id: their `name{fields}` text and how many handles refer to them. A list:
    /// a shim has a span open per request in flight, a handful at most.
    spans: Mutex<Vec<(u64, SpanText)>>,
    next_span: AtomicU64,
}

#[derive(Debug)]
struct SpanText {
    text: String,
    refs: usize,
}

thread_local! {
    /// The spans this thread has entered, outermost first.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// An event's (or a span's) fields as `fmt` prints them: the message, then `name=value` for the
/// others, values in their Debug form (strings quoted); `%value` fields print with Display.
#[derive(Debug, Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.rest.is_empty() {
                self.rest.push(' ');
            }
            let _ = write!(self.rest, "{}={value:?}", field.name());
        }
    }
}

impl Fields {
    /// `message name=value ...`, without separators where a part is empty.
    fn joined(&self) -> String {
        match (self.message.is_empty(), self.rest.is_empty()) {
            (_, true) => self.message.clone(),
            (true, false) => self.rest.clone(),
            (false, false) => format!("{} {}", self.message, self.rest),
        }
    }
}

impl ShimLog {
    fn lock_spans(&self) -> std::sync::MutexGuard<'_, Vec<(u64, SpanText)>> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the open span `id`, if it is open.
    fn with_span<T>(&self, id: u64, f: impl FnOnce(&mut SpanText) -> T) -> Option<T> {
        self.lock_spans()
            .iter_mut()
            .find(|(open, _)| *open == id)
            .map(|(_, span)| f(span))
    }

    /// Writes one line at `level` with the current thread's spans and `text`.
    fn line(&self, level: Level, text: &str) {
        let mut line = String::with_capacity(96);
        timestamp(&mut line, SystemTime::now());
        let _ = write!(line, " {:>5} ", level.as_str());
        ENTERED.with(|entered| {
            let entered = entered.borrow();
            if entered.is_empty() {
                return;
            }
            let spans = self.lock_spans();
            for id in entered.iter() {
                if let Some((_, span)) = spans.iter().find(|(open, _)| open == id) {
                    line.push_str(&span.text);
                    line.push(':');
                }
            }
            line.push(' ');
        });
        line.push_str(text);
        line.push('\n');
        self.sink
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_line(&line);
    }
}

impl Subscriber for ShimLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::from_level(self.max))
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields::default();
        span.record(&mut fields);
        let name = span.metadata().name();
        let joined = fields.joined();
        let text = if joined.is_empty() {
            name.to_string()
        } else {
            format!("{name}{{{joined}}}")
        };
        let id = self.next_span.fetch_add(1, Ordering::Relaxed);
        self.lock_spans().push((id, SpanText { text, refs: 1 }));
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        let added = fields.joined();
        if added.is_empty() {
            return;
        }
        self.with_span(span.into_u64(), |span| {
            span.text = match span.text.strip_suffix('}') {
                Some(open) => format!("{open} {added}}}"),
                None => format!("{}{{{added}}}", span.text),
            }
        });
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.line(*event.metadata().level(), &fields.joined());
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        let id = span.into_u64();
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered.iter().rposition(|e| *e == id) {
                entered.remove(at);
            }
        });
    }

    fn clone_span(&self, span: &Id) -> Id {
        self.with_span(span.into_u64(), |open| open.refs += 1);
        span.clone()
    }

    fn try_close(&self, span: Id) -> bool {
        let mut spans = self.lock_spans();
        let id = span.into_u64();
        let Some(at) = spans.iter().position(|(open, _)| *open == id) else {
            return false;
        };
        spans[at].1.refs -= 1;
        if spans[at].1.refs > 0 {
            return false;
        }
        spans.swap_remove(at);
        true
    }
}

impl log::Log for ShimLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log_filter(self.max)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !log::Log::enabled(self, record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => Level::ERROR,
            log::Level::Warn => Level::WARN,
            log::Level::Info => Level::INFO,
            log::Level::Debug => Level::DEBUG,
            log::Level::Trace => Level::TRACE,
        };
        self.line(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Appends `at` as RFC 3339 UTC with microseconds (`2026-11-29T12:45:45.249899Z`).
fn timestamp(out: &mut String, at: SystemTime) {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_micros()
    );
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Duration;

    fn shim_log(max: Level) -> (ShimLog, std::fs::File) {
        let file = tempfile::tempfile().unwrap();
        let log = ShimLog {
            max,
            sink: Mutex::new(Sink::File(file.try_clone().unwrap())),
            spans: Mutex::new(Vec::new()),
            next_span: AtomicU64::new(1),
        };
        (log, file)
    }

    /// The lines written, each without its timestamp.
    fn lines(mut file: std::fs::File) -> Vec<String> {
        use std::io::Seek;
        let mut text = String::new();
        file.rewind().unwrap();
        file.read_to_string(&mut text).unwrap();
        text.lines()
            .map(|l| l.split_once(' ').unwrap().1.to_string())
            .collect()
    }

    #[test]
    fn lines_read_like_tracing_subscriber_fmt() {
        let (log, file) = shim_log(Level::INFO);
        let log = Arc::new(log);
        tracing::subscriber::with_default(Arc::clone(&log), || {
            let id = "c1";
            tracing::info!(id = %id, pid = 7, "serving");
            {
                let span = tracing::info_span!("start", id = %id, exec_id = %"");
                let _entered = span.enter();
                tracing::info!(binary = "refeng-runc", "runtime");
                tracing::debug!("not at info");
                let inner = tracing::info_span!("kill", signal = 9);
                inner.in_scope(|| tracing::warn!(error = %"gone", "failed"));
            }
            tracing::info!("shutdown");
        });
        assert_eq!(
            lines(file),
            [
                " INFO serving id=c1 pid=7",
                " INFO start{id=c1 exec_id=}: runtime binary=\"refeng-runc\"",
                " WARN start{id=c1 exec_id=}:kill{signal=9}: failed error=gone",
                " INFO shutdown",
            ]
        );
        assert!(log.lock_spans().is_empty(), "closed spans are forgotten");
    }

    #[test]
    fn log_records_get_the_same_lines() {
        let (log, file) = shim_log(Level::INFO);
        for (level, text) in [
            (log::Level::Info, "server started"),
            (log::Level::Debug, "hidden"),
        ] {
            log::Log::log(
                &log,
                &log::Record::builder()
                    .level(level)
                    .args(format_args!("{text}"))
                    .build(),
            );
        }
        assert_eq!(lines(file), [" INFO server started"]);
    }

    #[test]
    fn timestamps_match_chrono() {
        for secs in [0, 951_782_400, 1_709_164_800, 4_107_542_399, 1_796_000_000] {
            let at = SystemTime::UNIX_EPOCH + Duration::new(secs, 249_899_123);
            let mut ours = String::new();
            timestamp(&mut ours, at);
            let chrono = chrono::DateTime::<chrono::Utc>::from(at)
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(ours, chrono, "at {secs}");
        }
    }
}
