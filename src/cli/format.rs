//! Output as the docker CLI prints it: `--format` Go templates (gotmpl, a port of Go's
//! text/template, with docker's template functions and its `table` and `json` forms), tables
//! aligned as Go's tabwriter aligns them, and docker's human units for sizes and durations.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use gotmpl::parse::{Expr, ListNode, Node, Parser, PipeNode};
use gotmpl::{Template, TemplateError, Value};

/// A `--format` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// the template does not parse
    #[error("template parsing error: {0}")]
    Parse(String),
    /// the template fails on a value
    #[error("template: {0}")]
    Execute(String),
    /// the output cannot be written
    #[error("write error: {0}")]
    Write(#[from] std::io::Error),
}

/// A parsed `--format`: docker's `table` prefix, the `json` shorthand, or a template.
pub struct Format {
    table: bool,
    template: Template,
}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Format")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Format {
    /// Parses `text` as `--format` takes it; `json` means `{{json .}}`, `table` alone the
    /// command's default table.
    ///
    /// # Errors
    /// [`FormatError::Parse`] with the template's error.
    pub fn parse(text: &str, default_table: &str) -> Result<Format, FormatError> {
        let (table, body) = if text == "table" || text.is_empty() {
            (true, default_table.to_owned())
        } else if let Some(rest) = text.strip_prefix("table") {
            (true, rest.trim_start().to_owned())
        } else if text == "json" {
            (false, "{{json .}}".to_owned())
        } else {
            (false, text.to_owned())
        };
        // Escapes as the docker CLI expands them, so shells need not pass real tabs.
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let template = add_funcs(Template::new(""))
            .parse(&body)
            .map_err(|e| FormatError::Parse(e.to_string()))?;
        check_functions(&body)?;
        Ok(Format { table, template })
    }

    /// Whether this prints a table (with a header line).
    pub fn is_table(&self) -> bool {
        self.table
    }

    /// Renders one value.
    ///
    /// # Errors
    /// [`FormatError::Execute`] when the template fails on it.
    pub fn render(&self, v: &Value) -> Result<String, FormatError> {
        self.template
            .execute_to_string(v)
            .map_err(|e| FormatError::Execute(e.to_string()))
    }

    /// Prints `rows` (and, for a table, the header rendered from `header`), one line each,
    /// aligned as docker aligns its tables.
    ///
    /// # Errors
    /// Template and write errors.
    pub fn print(
        &self,
        out: &mut impl Write,
        header: &BTreeMap<&str, &str>,
        rows: &[Value],
    ) -> Result<(), FormatError> {
        let mut text = String::new();
        if self.table {
            let h: BTreeMap<Arc<str>, Value> = header
                .iter()
                .map(|(k, v)| (Arc::from(*k), Value::from(*v)))
                .collect();
            text.push_str(&self.render(&Value::from(h))?);
            text.push('\n');
        }
        for r in rows {
            text.push_str(&self.render(r)?);
            text.push('\n');
        }
        if self.table {
            out.write_all(tabwrite(&text, 10, 3).as_bytes())?;
        } else {
            out.write_all(text.as_bytes())?;
        }
        Ok(())
    }
}

/// Refuses a call of a function that does not exist, as Go's parser does (`function "x" not
/// defined`): gotmpl finds out only when it makes the call, which a list with no rows never
/// does.
fn check_functions(body: &str) -> Result<(), FormatError> {
    let parse_error = |e: TemplateError| FormatError::Parse(e.to_string());
    let (tree, defines) = Parser::new(body, "{{", "}}")
        .and_then(Parser::parse)
        .map_err(parse_error)?;
    let mut calls = Vec::new();
    for list in std::iter::once(&tree).chain(defines.iter().map(|d| &d.body)) {
        list_calls(list, &mut calls);
    }
    for (line, name) in calls {
        // Asked of gotmpl itself, so its builtins need no list of their own here.
        let probe = add_funcs(Template::new(""))
            .parse(&format!("{{{{{name}}}}}"))
            .map_err(parse_error)?;
        if let Err(TemplateError::UndefinedFunction(_)) = probe.execute_to_string(&Value::Nil) {
            return Err(FormatError::Parse(format!(
                "template: :{line}: function {name:?} not defined"
            )));
        }
    }
    Ok(())
}

/// The functions a template calls, with their lines, in the order Go's parser meets them.
fn list_calls<'a>(list: &'a ListNode, calls: &mut Vec<(usize, &'a str)>) {
    for node in &list.nodes {
        match node {
            Node::List(l) => list_calls(l, calls),
            Node::Action(a) => pipe_calls(&a.pipe, calls),
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                pipe_calls(&b.pipe, calls);
                list_calls(&b.body, calls);
                if let Some(e) = &b.else_body {
                    list_calls(e, calls);
                }
            }
            Node::Template(t) => {
                if let Some(p) = &t.pipe {
                    pipe_calls(p, calls);
                }
            }
            Node::Define(d) => list_calls(&d.body, calls),
            Node::Text(_) | Node::Break(_) | Node::Continue(_) => {}
        }
    }
}

fn pipe_calls<'a>(pipe: &'a PipeNode, calls: &mut Vec<(usize, &'a str)>) {
    for c in &pipe.commands {
        for e in &c.args {
            expr_calls(e, calls);
        }
    }
}

fn expr_calls<'a>(e: &'a Expr, calls: &mut Vec<(usize, &'a str)>) {
    match e {
        Expr::Identifier(pos, name) => calls.push((pos.line, name.as_str())),
        Expr::Pipe(_, p) => pipe_calls(p, calls),
        Expr::Chain(_, inner, _) => expr_calls(inner, calls),
        Expr::Dot(_)
        | Expr::Field(..)
        | Expr::Variable(..)
        | Expr::String(..)
        | Expr::Number(..)
        | Expr::Bool(..)
        | Expr::Nil(_) => {}
    }
}

/// A row of string fields (what docker's list formatters expose) as a template value.
pub fn row(fields: &[(&str, String)]) -> Value {
    Value::from(
        fields
            .iter()
            .map(|(k, v)| (Arc::from(*k), Value::from(v.as_str())))
            .collect::<BTreeMap<Arc<str>, Value>>(),
    )
}

/// A JSON document (an inspect answer) as a template value. The template's maps are kept in
/// key order (Go ranges over a map so); an object whose keys came in another order (a Go
/// struct's fields, as the daemon encoded them) has that order remembered for `{{json}}`.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::Uint(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(from_json).collect::<Vec<_>>()),
        serde_json::Value::Object(o) => {
            let map = Arc::new(
                o.iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), from_json(v)))
                    .collect::<BTreeMap<Arc<str>, Value>>(),
            );
            if !o.keys().is_sorted() {
                key_order::remember(&map, o.keys().map(|k| Arc::from(k.as_str())).collect());
            }
            Value::Map(map)
        }
    }
}

/// A template value back as JSON: a map in the key order its JSON object had (a struct's
/// field order, as docker's CLI encodes a struct), else sorted, as Go's encoder sorts a map's.
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Uint(u) => serde_json::Value::from(*u),
        Value::Float(f) => serde_json::Value::from(*f),
        Value::String(s) => serde_json::Value::String(s.to_string()),
        Value::List(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Map(o) => match key_order::of(o) {
            Some(keys) => serde_json::Value::Object(
                keys.iter()
                    .filter_map(|k| o.get(k).map(|v| (k.to_string(), to_json(v))))
                    .collect(),
            ),
            None => serde_json::Value::Object(
                o.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect(),
            ),
        },
    }
}

/// The original key order of maps made from JSON objects, by the map's identity: template
/// values share their maps (`.State` is the same map as in the document), so the map `json`
/// gets is the one [`from_json`] made. Entries hold the map weakly and go with it.
mod key_order {
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Weak};

    use gotmpl::Value;

    type Map = BTreeMap<Arc<str>, Value>;

    pub(super) struct Table {
        pub(super) by_address: HashMap<usize, (Weak<Map>, Vec<Arc<str>>)>,
        /// The size after the last sweep of dead entries.
        swept: usize,
    }

    thread_local! {
        pub(super) static TABLE: RefCell<Table> = RefCell::new(Table { by_address: HashMap::new(), swept: 0 });
    }

    /// Remembers `keys` as the order of `map`.
    pub(super) fn remember(map: &Arc<Map>, keys: Vec<Arc<str>>) {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            // A long stream (events, stats) makes maps without end: the dead go now and then.
            if t.by_address.len() > 2 * t.swept + 256 {
                t.by_address.retain(|_, (w, _)| w.strong_count() > 0);
                t.swept = t.by_address.len();
            }
            t.by_address
                .insert(Arc::as_ptr(map) as usize, (Arc::downgrade(map), keys));
        });
    }

    /// The remembered order of `map`, when it is that map's (same allocation, same keys).
    pub(super) fn of(map: &Arc<Map>) -> Option<Vec<Arc<str>>> {
        TABLE.with(|t| {
            let t = t.borrow();
            let (weak, keys) = t.by_address.get(&(Arc::as_ptr(map) as usize))?;
            let alive = weak.upgrade()?;
            (Arc::ptr_eq(&alive, map)
                && keys.len() == map.len()
                && keys.iter().all(|k| map.contains_key(k)))
            .then(|| keys.clone())
        })
    }
}

/// An argument as the string docker's functions take; a missing one is an error.
fn arg_str(args: &[Value], i: usize) -> Result<String, TemplateError> {
    match args.get(i) {
        Some(Value::Nil) => Ok(String::new()),
        Some(other) => Ok(other.to_string()),
        None => Err(TemplateError::Exec(format!("missing argument {}", i + 1))),
    }
}

fn f_json(args: &[Value]) -> Result<Value, TemplateError> {
    let v = args.first().map_or(serde_json::Value::Null, to_json);
    Ok(Value::from(go_json_escape(&v.to_string())))
}

fn f_join(args: &[Value]) -> Result<Value, TemplateError> {
    let sep = arg_str(args, 1)?;
    match args.first() {
        Some(Value::List(a)) => {
            let parts: Result<Vec<String>, TemplateError> =
                (0..a.len()).map(|i| arg_str(a, i)).collect();
            Ok(Value::from(parts?.join(&sep)))
        }
        _ => Ok(Value::from(arg_str(args, 0)?)),
    }
}

fn f_split(args: &[Value]) -> Result<Value, TemplateError> {
    let s = arg_str(args, 0)?;
    let sep = arg_str(args, 1)?;
    Ok(Value::from(
        s.split(sep.as_str()).map(Value::from).collect::<Vec<_>>(),
    ))
}

fn f_lower(args: &[Value]) -> Result<Value, TemplateError> {
    Ok(Value::from(arg_str(args, 0)?.to_lowercase()))
}

fn f_upper(args: &[Value]) -> Result<Value, TemplateError> {
    Ok(Value::from(arg_str(args, 0)?.to_uppercase()))
}

fn f_title(args: &[Value]) -> Result<Value, TemplateError> {
    let s = arg_str(args, 0)?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    Ok(Value::from(out))
}

fn f_truncate(args: &[Value]) -> Result<Value, TemplateError> {
    let s = arg_str(args, 0)?;
    let n: usize = arg_str(args, 1)?
        .parse()
        .map_err(|_| TemplateError::Exec("truncate: length is not a number".into()))?;
    Ok(Value::from(s.chars().take(n).collect::<String>()))
}

fn f_pad(args: &[Value]) -> Result<Value, TemplateError> {
    let s = arg_str(args, 0)?;
    let num = |i| -> Result<usize, TemplateError> {
        arg_str(args, i)?
            .parse()
            .map_err(|_| TemplateError::Exec("pad: not a number".into()))
    };
    Ok(Value::from(format!(
        "{}{s}{}",
        " ".repeat(num(1)?),
        " ".repeat(num(2)?)
    )))
}

/// Go's `json.Marshal` escapes `<`, `>` and `&` (HTML-safe output); docker's `json`
/// template function keeps that.
fn go_json_escape(s: &str) -> String {
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The functions docker adds to its templates (text/template's own, `println` and the rest,
/// come with gotmpl).
fn add_funcs(t: Template) -> Template {
    t.func("json", f_json)
        .func("join", f_join)
        .func("split", f_split)
        .func("lower", f_lower)
        .func("upper", f_upper)
        .func("title", f_title)
        .func("truncate", f_truncate)
        .func("pad", f_pad)
}

/// Aligns tab-separated cells as Go's `text/tabwriter` does with docker's settings
/// (`minwidth`, padding with spaces): a column is as wide as its widest cell plus `padding`
/// within a block of consecutive lines that have that column; the last cell of a line is not
/// part of a column.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_inclusive('\n')
        .map(|l| l.strip_suffix('\n').unwrap_or(l).split('\t').collect())
        .collect();
    let mut out = String::with_capacity(text.len() * 2);
    let mut widths = Vec::new();
    format_block(
        &lines,
        0,
        lines.len(),
        0,
        minwidth,
        padding,
        &mut widths,
        &mut out,
    );
    out
}

#[allow(clippy::too_many_arguments)]
fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    column: usize,
    minwidth: usize,
    padding: usize,
    widths: &mut Vec<usize>,
    out: &mut String,
) {
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        let mut width = minwidth;
        let mut end = this;
        while end < line1 && column + 1 < lines[end].len() {
            width = width.max(lines[end][column].chars().count() + padding);
            end += 1;
        }
        widths.push(width);
        format_block(lines, this, end, column + 1, minwidth, padding, widths, out);
        widths.pop();
        line0 = end;
        this = end;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() {
                let w = widths.get(j).copied().unwrap_or(0);
                let n = cell.chars().count();
                out.extend(std::iter::repeat_n(' ', w.saturating_sub(n)));
            }
        }
        out.push('\n');
    }
}

/// docker's `units.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let s = secs;
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let minutes = s / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (s as f64 / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", s / 3600 / 24 / 365)
}

/// How long ago a unix time was, as docker's lists say it (`5 minutes ago`).
pub fn ago(unix: i64) -> String {
    format!(
        "{} ago",
        human_duration(chrono::Utc::now().timestamp() - unix)
    )
}

/// Go's `%.<prec>g`.
pub fn go_g(v: f64, prec: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let e = format!("{:.*e}", prec.saturating_sub(1), v);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s.to_owned()
        }
    };
    if exp < -4 || exp >= prec as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mant), exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    }
}

/// docker's `units.HumanSizeWithPrecision` (decimal units).
pub fn human_size(bytes: f64, prec: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g(size, prec), UNITS[i])
}

/// docker's `units.BytesSize` (binary units, `%.4g`), as `stats` and `info` print memory.
pub fn bytes_size(bytes: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = bytes;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", go_g(size, 4), UNITS[i])
}

/// A unix time as Go's `time.Time.String()` prints it in local time.
pub fn go_time(unix: i64) -> String {
    use chrono::{Local, TimeZone};
    let Some(t) = Local.timestamp_opt(unix, 0).single() else {
        return unix.to_string();
    };
    let off = t.offset().local_minus_utc();
    let zone = if off == 0 {
        "UTC".to_owned()
    } else {
        t.format("%z").to_string()
    };
    format!("{} {zone}", t.format("%Y-%m-%d %H:%M:%S %z"))
}

/// docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// An id without its algorithm, cut to 12 characters unless `no_trunc`.
pub fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        return id.to_owned();
    }
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_a_documents_key_order_and_ranges_sort() {
        let doc: serde_json::Value = serde_json::from_str(
            r#"{"State": {"Status": "exited", "Running": false, "ExitCode": 3},
                "Config": {"Labels": {"a": "1", "b": "2"}}}"#,
        )
        .unwrap();
        let v = from_json(&doc);
        let f = Format::parse("{{json .State}} {{json .Config.Labels}}", "").unwrap();
        assert_eq!(
            f.render(&v).unwrap(),
            r#"{"Status":"exited","Running":false,"ExitCode":3} {"a":"1","b":"2"}"#
        );
        let f = Format::parse("{{range $k, $v := .State}}{{$k}} {{end}}", "").unwrap();
        assert_eq!(f.render(&v).unwrap(), "ExitCode Running Status ");
        // A map made otherwise (a row) has no remembered order: sorted, as Go encodes a map.
        let f = Format::parse("{{json .}}", "").unwrap();
        let row = Value::from(
            [("z", 1i64), ("a", 2)]
                .iter()
                .map(|(k, n)| (Arc::from(*k), Value::Int(*n)))
                .collect::<BTreeMap<Arc<str>, Value>>(),
        );
        assert_eq!(f.render(&row).unwrap(), r#"{"a":2,"z":1}"#);
    }

    #[test]
    fn remembered_orders_go_with_their_maps() {
        for i in 0..2000 {
            let doc = serde_json::json!({"z": i, "a": {"y": 1, "b": 2}});
            let v = from_json(&doc);
            assert_eq!(
                to_json(&v).to_string(),
                format!(r#"{{"z":{i},"a":{{"y":1,"b":2}}}}"#)
            );
        }
        // The dead ones were swept on the way: the table stays small.
        let live = key_order::TABLE.with(|t| t.borrow().by_address.len());
        assert!(live < 1000, "{live} entries kept");
    }

    #[test]
    fn tables_align_as_tabwriter() {
        let t = tabwrite("A\tBB\tC\nxxxxxxxxxxxxxx\ty\tz\n", 10, 3);
        // Column 0: 14 + 3 padding; column 1: the minimum width 10.
        let want = format!(
            "A{}BB{}C\nxxxxxxxxxxxxxx{}y{}z\n",
            " ".repeat(16),
            " ".repeat(8),
            " ".repeat(3),
            " ".repeat(9)
        );
        assert_eq!(t, want);
        // A shorter line ends the block of the columns it lacks.
        let t = tabwrite("a\tb\nc\n", 4, 1);
        assert_eq!(t, "a   b\nc\n");
    }

    #[test]
    fn human_units_match_docker() {
        assert_eq!(human_size(0.0, 3), "0B");
        assert_eq!(human_size(4_261_000.0, 3), "4.26MB");
        assert_eq!(human_size(999.0, 3), "999B");
        assert_eq!(human_size(1_000_000.0, 3), "1MB");
        assert_eq!(human_size(12_345.0, 3), "12.3kB");
        assert_eq!(bytes_size(1024.0 * 1024.0 * 1.5), "1.5MiB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(5 * 86400), "5 days");
        assert_eq!(
            ellipsis("abcdefghijklmnopqrstuvwxyz", 20),
            "abcdefghijklmnopqrs…"
        );
    }

    /// Go's text/template walks a map in key order and `fmt` prints one sorted; the keys here
    /// are written out of order (serde_json keeps insertion order), so neither hash order nor
    /// insertion order passes.
    #[test]
    fn maps_range_and_print_in_key_order() {
        let doc = from_json(&serde_json::json!({
            "Labels": {"zeta": "6", "b": "2", "B": "0", "c.d": "3", "a": "1", "mid": "4"},
            "Nested": {"z": {"y": "1", "x": "2"}, "m": {"k": "v"}},
            "List": ["x", "y"],
        }));
        let render = |t: &str| Format::parse(t, "").unwrap().render(&doc).unwrap();
        assert_eq!(
            render("{{range $k,$v := .Labels}}{{$k}}={{$v}};{{end}}"),
            "B=0;a=1;b=2;c.d=3;mid=4;zeta=6;"
        );
        assert_eq!(render("{{range .Labels}}{{.}},{{end}}"), "0,1,2,3,4,6,");
        assert_eq!(
            render("{{range $k, $v := .Nested}}{{$k}}:{{range $i, $w := $v}}{{$i}}={{$w}} {{end}}|{{end}}"),
            "m:k=v |z:x=2 y=1 |"
        );
        assert_eq!(
            render(r#"{{index .Labels "a"}} {{index .Nested "z" "x"}}"#),
            "1 2"
        );
        assert_eq!(render("{{.Labels}}"), "map[B:0 a:1 b:2 c.d:3 mid:4 zeta:6]");
        assert_eq!(render("{{.Nested}}"), "map[m:map[k:v] z:map[x:2 y:1]]");
        assert_eq!(render("{{.List}}"), "[x y]");
        // Through `json`, the document's own order: a daemon sends a map's keys sorted (Go's
        // encoder sorts them) and a struct's in field order, which docker's CLI encodes again.
        assert_eq!(
            render("{{json .Nested}}"),
            r#"{"z":{"y":"1","x":"2"},"m":{"k":"v"}}"#
        );
    }

    /// The functions docker adds, and text/template's own next to them.
    #[test]
    fn docker_functions() {
        let doc = from_json(&serde_json::json!({"S": "a-b c", "L": ["x", "y"], "H": "<&>"}));
        let render = |t: &str| Format::parse(t, "").unwrap().render(&doc).unwrap();
        assert_eq!(
            render(r#"{{join .L ","}}|{{split .S "-"}}|{{lower "AbC"}}|{{upper .S}}|{{title .S}}"#),
            "x,y|[a b c]|abc|A-B C|A-B C"
        );
        assert_eq!(
            render(r#"[{{pad .S 1 2}}]{{truncate .S 3}}|{{json .H}}|{{len .L}}"#),
            r#"[ a-b c  ]a-b|"\u003c\u0026\u003e"|2"#
        );
        assert_eq!(
            render(r#"{{println "a" 1}}{{printf "%05d" 42}}"#),
            "a 1\n00042"
        );
        // Go's parser refuses an unknown function, even where it would never be called.
        let e = Format::parse("{{if false}}\n{{.S | nope}}{{end}}", "").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"template parsing error: template: :2: function "nope" not defined"#
        );
    }

    #[test]
    fn templates_render_docker_forms() {
        let v = row(&[("ID", "abc".into()), ("Names", "x".into())]);
        let f = Format::parse("{{.ID}}:{{.Names}}", "").unwrap();
        assert_eq!(f.render(&v).unwrap(), "abc:x");
        let f = Format::parse("json", "").unwrap();
        assert_eq!(f.render(&v).unwrap(), r#"{"ID":"abc","Names":"x"}"#);
        let doc = from_json(
            &serde_json::json!({"Config": {"Labels": {"a.b": "1"}, "Env": ["A=1", "B=2"]}}),
        );
        let f = Format::parse(r#"{{index .Config.Labels "a.b"}} {{range .Config.Env}}[{{.}}]{{end}} {{join .Config.Env ","}}"#, "").unwrap();
        assert_eq!(f.render(&doc).unwrap(), "1 [A=1][B=2] A=1,B=2");
        let f = Format::parse("table {{.ID}}\t{{.Names}}", "").unwrap();
        let mut out = Vec::new();
        let header = BTreeMap::from([("ID", "CONTAINER ID"), ("Names", "NAMES")]);
        f.print(&mut out, &header, &[v]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CONTAINER ID   NAMES\nabc            x\n"
        );
        assert!(Format::parse("{{.ID", "").is_err());
        let doc =
            from_json(&serde_json::json!({"L": {"b": "2", "a": "1"}, "T": ["x", "y"], "N": null}));
        let f = Format::parse(
            "{{.L}} {{.T}} {{- .N -}} {{$x := .T}}{{range $x}}<{{.}}>{{end}} {{\"}}\"}}",
            "",
        )
        .unwrap();
        assert_eq!(
            f.render(&doc).unwrap(),
            "map[a:1 b:2] [x y]<no value><x><y> }}"
        );
    }
}
