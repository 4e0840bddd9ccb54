//! cgroupfs interface files, in the formats the kernel's `Documentation/admin-guide/cgroup-v2.rst`
//! ("Interface Files") names, which cgroup v1's files follow too:
//!
//! - single value: `memory.current`, `pids.max` (`max` for no limit);
//! - value lists, newline or space separated: `cgroup.procs`, `cpuacct.usage_percpu`;
//! - flat keyed, `KEY VALUE` per line: `memory.stat`, `cpu.stat`, `memory.events`;
//! - nested keyed, `KEY SUB_KEY=VALUE ...` per line: `io.stat`, `io.max`, `rdma.max`;
//!
//! and v1 blkio's per-device counters (`8:0 Read 4096` lines and a `Total` line).

use std::collections::BTreeMap;
use std::str::FromStr;

use super::{lines, utf8, Malformed};

/// The value of a number-or-`max` field.
fn number_or_max(word: &str) -> Option<u64> {
    if word == "max" {
        Some(u64::MAX)
    } else {
        word.parse().ok()
    }
}

/// A single-value file: one number, or `max` (no limit), read as `u64::MAX` as runc and
/// containerd's cgroups library report it. Surrounding whitespace is ignored.
///
/// # Errors
/// Empty text, more than one word, or a word that is neither a number nor `max`.
pub fn single_u64(text: &[u8]) -> Result<u64, Malformed> {
    let s = utf8(1, text)?;
    let mut words = s.split_whitespace();
    match (words.next(), words.next()) {
        (Some(word), None) => {
            number_or_max(word).ok_or_else(|| Malformed::new(1, text, "not a number or `max`"))
        }
        (None, _) => Err(Malformed::new(1, text, "empty")),
        (Some(_), Some(_)) => Err(Malformed::new(1, text, "more than one value")),
    }
}

/// A list of values separated by newlines or spaces (`cgroup.procs`, `cpuacct.usage_percpu`).
///
/// # Errors
/// A word that does not parse as `T`.
pub fn list<T: FromStr>(text: &[u8]) -> Result<Vec<T>, Malformed> {
    let mut out = Vec::new();
    for (number, line) in lines(text) {
        for word in utf8(number, line)?.split_whitespace() {
            out.push(
                word.parse()
                    .map_err(|_| Malformed::new(number, line, "a value does not parse"))?,
            );
        }
    }
    Ok(out)
}

/// A flat-keyed file: `KEY VALUE` per line, every value a number or `max`.
///
/// # Errors
/// A line that is not two words, a value that is not a number or `max`, or a key that appears
/// twice.
pub fn flat_keyed(text: &[u8]) -> Result<BTreeMap<String, u64>, Malformed> {
    let mut out = BTreeMap::new();
    for (number, line) in lines(text) {
        let bad = |reason| Malformed::new(number, line, reason);
        let mut words = utf8(number, line)?.split_whitespace();
        let (Some(key), Some(value), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad("expected `KEY VALUE`"));
        };
        let value =
            number_or_max(value).ok_or_else(|| bad("the value is not a number or `max`"))?;
        if out.insert(key.to_owned(), value).is_some() {
            return Err(bad("the key appears twice"));
        }
    }
    Ok(out)
}

/// One line of a nested-keyed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedEntry {
    /// Its 1-based line number (for errors about its values).
    pub line: usize,
    /// The key (`8:0` in `io.stat`).
    pub key: String,
    /// `SUB_KEY=VALUE` pairs in order; empty when the line has only the key.
    pub fields: Vec<(String, String)>,
}

impl NestedEntry {
    /// The value of `sub_key`, as written.
    #[must_use]
    pub fn get(&self, sub_key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == sub_key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `sub_key` as a number (`max` is `u64::MAX`); `None` when absent.
    ///
    /// # Errors
    /// The value is neither a number nor `max`.
    pub fn get_u64(&self, sub_key: &str) -> Result<Option<u64>, Malformed> {
        let Some(value) = self.get(sub_key) else {
            return Ok(None);
        };
        number_or_max(value).map(Some).ok_or_else(|| {
            Malformed::new(
                self.line,
                format!("{} {sub_key}={value}", self.key).as_bytes(),
                "the value is not a number or `max`",
            )
        })
    }
}

/// A nested-keyed file: `KEY SUB_KEY=VALUE ...` per line. Values are kept as text: some files
/// hold decimals (`avg10=0.00` in `cpu.pressure`) or `max`.
///
/// # Errors
/// An empty line, a field without `=`, or a field with an empty sub-key or an empty value.
pub fn nested_keyed(text: &[u8]) -> Result<Vec<NestedEntry>, Malformed> {
    let mut out = Vec::new();
    for (number, line) in lines(text) {
        let bad = |reason| Malformed::new(number, line, reason);
        let mut words = utf8(number, line)?.split_whitespace();
        let key = words.next().ok_or_else(|| bad("empty line"))?;
        let mut fields = Vec::new();
        for word in words {
            let (sub, value) = word
                .split_once('=')
                .ok_or_else(|| bad("a field is not SUB_KEY=VALUE"))?;
            if sub.is_empty() {
                return Err(bad("a field has an empty sub-key"));
            }
            if value.is_empty() {
                return Err(bad("a field has no value"));
            }
            fields.push((sub.to_owned(), value.to_owned()));
        }
        out.push(NestedEntry {
            line: number,
            key: key.to_owned(),
            fields,
        });
    }
    Ok(out)
}

/// One per-device counter of a cgroup v1 blkio file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCounter {
    /// Device major.
    pub major: u64,
    /// Device minor.
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard` or `Total`.
    pub op: String,
    /// The count.
    pub value: u64,
}

/// A cgroup v1 blkio counter file (`blkio.throttle.io_service_bytes_recursive`): `MAJ:MIN OP
/// VALUE` lines and a closing `Total VALUE` line, which is the sum and is dropped.
///
/// # Errors
/// Any other line shape, or a device or value that is not a number.
pub fn blkio_v1_counters(text: &[u8]) -> Result<Vec<DeviceCounter>, Malformed> {
    let mut out = Vec::new();
    for (number, line) in lines(text) {
        let bad = |reason| Malformed::new(number, line, reason);
        let words: Vec<&str> = utf8(number, line)?.split_whitespace().collect();
        match words.as_slice() {
            ["Total", total] => {
                total
                    .parse::<u64>()
                    .map_err(|_| bad("the total is not a number"))?;
            }
            [device, op, value] => {
                let (major, minor) = device
                    .split_once(':')
                    .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                    .ok_or_else(|| bad("the device is not MAJOR:MINOR"))?;
                out.push(DeviceCounter {
                    major,
                    minor,
                    op: (*op).to_owned(),
                    value: value
                        .parse()
                        .map_err(|_| bad("the value is not a number"))?,
                });
            }
            _ => return Err(bad("expected `MAJOR:MINOR OP VALUE` or `Total VALUE`")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_values_take_numbers_and_max() {
        assert_eq!(single_u64(b"4096\n"), Ok(4096));
        assert_eq!(single_u64(b"  7 "), Ok(7));
        assert_eq!(single_u64(b"max\n"), Ok(u64::MAX));
        assert_eq!(
            single_u64(b"9223372036854771712\n"),
            Ok(9_223_372_036_854_771_712)
        );
        for (text, reason) in [
            (&b""[..], "empty"),
            (b"\n", "empty"),
            (b"-1\n", "not a number or `max`"),
            (b"12 34\n", "more than one value"),
            (b"1.5", "not a number or `max`"),
            (b"\xff", "not UTF-8"),
        ] {
            assert_eq!(single_u64(text).unwrap_err().reason, reason, "{text:?}");
        }
    }

    #[test]
    fn lists_split_on_lines_and_spaces() {
        assert_eq!(list::<i32>(b"1\n22\n"), Ok(vec![1, 22]));
        assert_eq!(list::<u64>(b"10 20 30 \n"), Ok(vec![10, 20, 30]));
        assert_eq!(list::<i32>(b""), Ok(vec![]));
        let err = list::<i32>(b"1\nx\n").unwrap_err();
        assert_eq!((err.line, err.content.as_str()), (2, "x"));
    }

    #[test]
    fn flat_keyed_reads_pairs() {
        let kv = flat_keyed(b"cache 4096\nrss 8192\nhierarchical_memory_limit max\n").unwrap();
        assert_eq!(kv.get("cache"), Some(&4096));
        assert_eq!(kv.get("hierarchical_memory_limit"), Some(&u64::MAX));
        assert_eq!(kv.len(), 3);
        assert!(flat_keyed(b"").unwrap().is_empty());
        for (text, line, reason) in [
            ("cache 1\nbad\n", 2, "expected `KEY VALUE`"),
            ("a 1 2\n", 1, "expected `KEY VALUE`"),
            ("a\n", 1, "expected `KEY VALUE`"),
            ("a 1\n\nb 2\n", 2, "expected `KEY VALUE`"),
            ("a -3\n", 1, "the value is not a number or `max`"),
            ("a 1\na 2\n", 2, "the key appears twice"),
        ] {
            let err = flat_keyed(text.as_bytes()).unwrap_err();
            assert_eq!((err.line, err.reason), (line, reason), "{text:?}");
        }
    }

    #[test]
    fn nested_keyed_reads_sub_keys_as_text() {
        let io = nested_keyed(
            b"8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n253:0 \n8:16 rbps=max\n",
        )
        .unwrap();
        assert_eq!(io.len(), 3);
        assert_eq!(io[0].key, "8:0");
        assert_eq!(io[0].get("wbytes"), Some("200"));
        assert_eq!(io[0].get_u64("rios"), Ok(Some(1)));
        assert_eq!(io[0].get_u64("nothing"), Ok(None));
        assert!(
            io[1].fields.is_empty(),
            "a key without values is a line too"
        );
        assert_eq!(io[2].get_u64("rbps"), Ok(Some(u64::MAX)));
        let psi = nested_keyed(b"some avg10=0.00 avg60=1.50 avg300=0.00 total=12\n").unwrap();
        assert_eq!(psi[0].get("avg60"), Some("1.50"));
        let err = psi[0].get_u64("avg60").unwrap_err();
        assert_eq!(err.line, 1);
        assert_eq!(err.content, "some avg60=1.50");
    }

    #[test]
    fn nested_keyed_refuses_fields_without_values() {
        for (text, line, reason) in [
            ("8:0 rbytes=1 wbytes=\n", 1, "a field has no value"),
            (
                "8:0 rbytes=1\n8:16 rbytes\n",
                2,
                "a field is not SUB_KEY=VALUE",
            ),
            ("8:0 =5\n", 1, "a field has an empty sub-key"),
            ("8:0 rbytes=1\n\n", 2, "empty line"),
            ("  \n", 1, "empty line"),
        ] {
            let err = nested_keyed(text.as_bytes()).unwrap_err();
            assert_eq!((err.line, err.reason), (line, reason), "{text:?}");
        }
    }

    #[test]
    fn blkio_counters_drop_the_total() {
        let c = blkio_v1_counters(b"8:0 Read 4096\n8:0 Write 10\n8:0 Total 4106\nTotal 4106\n")
            .unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[1],
            DeviceCounter {
                major: 8,
                minor: 0,
                op: "Write".into(),
                value: 10
            }
        );
        assert_eq!(blkio_v1_counters(b"Total 0\n"), Ok(vec![]));
        for (text, reason) in [
            (
                "8:0 Read\n",
                "expected `MAJOR:MINOR OP VALUE` or `Total VALUE`",
            ),
            ("80 Read 1\n", "the device is not MAJOR:MINOR"),
            ("8:x Read 1\n", "the device is not MAJOR:MINOR"),
            ("8:0 Read many\n", "the value is not a number"),
            ("Total lots\n", "the total is not a number"),
        ] {
            assert_eq!(
                blkio_v1_counters(text.as_bytes()).unwrap_err().reason,
                reason,
                "{text:?}"
            );
        }
    }
}
