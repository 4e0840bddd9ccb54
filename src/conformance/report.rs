//! Output formats of a run: TAP (streamed line by line), JSON (the whole [`Report`]) and a
//! markdown table, plus the comparison of two runs that CI asserts on.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::conformance::{CaseResult, Report, Verdict};

/// The TAP line of one result; `number` counts from 1.
#[must_use]
pub fn tap_line(number: usize, result: &CaseResult) -> String {
    let detail = result.verdict.detail().replace('\n', " ");
    match &result.verdict {
        Verdict::Pass(_) => format!("ok {number} - {}", result.name),
        Verdict::Fail(_) => format!("not ok {number} - {}\n  # {detail}", result.name),
        Verdict::Skip(_) => format!("ok {number} - {} # SKIP {detail}", result.name),
    }
}

/// `pass/fail/skip` counts.
#[must_use]
pub fn counts(report: &Report) -> (usize, usize, usize) {
    report
        .cases
        .iter()
        .fold((0, 0, 0), |(pass, fail, skip), case| match case.verdict {
            Verdict::Pass(_) => (pass + 1, fail, skip),
            Verdict::Fail(_) => (pass, fail + 1, skip),
            Verdict::Skip(_) => (pass, fail, skip + 1),
        })
}

/// A markdown table of the report: case, verdict, statements, detail.
#[must_use]
pub fn table(report: &Report) -> String {
    let (pass, fail, skip) = counts(report);
    let mut out = format!(
        "runtime `{}`: {pass} pass, {fail} fail, {skip} skip\n\n| case | verdict | statements | detail |\n|---|---|---|---|\n",
        report.runtime
    );
    for case in &report.cases {
        let detail: String = case
            .verdict
            .detail()
            .replace('|', "\\|")
            .replace('\n', " ")
            .chars()
            .take(400)
            .collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {detail} |",
            case.name,
            case.verdict.word(),
            case.statements.join(", ")
        );
    }
    out
}

/// The cases `reference` passes that `candidate` does not (failed, skipped or missing), with the
/// candidate's verdict: what CI forbids.
#[must_use]
pub fn regressions<'a>(reference: &'a Report, candidate: &'a Report) -> Vec<(&'a str, String)> {
    let by_name: BTreeMap<&str, &CaseResult> = candidate
        .cases
        .iter()
        .map(|case| (case.name.as_str(), case))
        .collect();
    reference
        .cases
        .iter()
        .filter(|case| matches!(case.verdict, Verdict::Pass(_)))
        .filter_map(|case| match by_name.get(case.name.as_str()) {
            Some(other) if matches!(other.verdict, Verdict::Pass(_)) => None,
            Some(other) => Some((
                case.name.as_str(),
                format!("{}: {}", other.verdict.word(), other.verdict.detail()),
            )),
            None => Some((case.name.as_str(), "not run".to_owned())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(verdicts: &[(&str, Verdict)]) -> Report {
        Report {
            runtime: "r".into(),
            cases: verdicts
                .iter()
                .map(|(name, verdict)| CaseResult {
                    name: (*name).to_owned(),
                    statements: vec![],
                    verdict: verdict.clone(),
                    millis: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn a_case_the_reference_passes_must_pass() {
        let reference = report(&[
            ("a", Verdict::Pass(String::new())),
            ("b", Verdict::Pass(String::new())),
            ("c", Verdict::Fail("x".into())),
            ("d", Verdict::Pass(String::new())),
        ]);
        let candidate = report(&[
            ("a", Verdict::Pass(String::new())),
            ("b", Verdict::Fail("broken".into())),
            ("c", Verdict::Pass(String::new())),
        ]);
        let found = regressions(&reference, &candidate);
        assert_eq!(
            found,
            vec![
                ("b", "fail: broken".to_owned()),
                ("d", "not run".to_owned())
            ]
        );
    }

    #[test]
    fn tap_marks_skips_and_failures() {
        let result = CaseResult {
            name: "x/y".into(),
            statements: vec![],
            verdict: Verdict::Skip("no freezer".into()),
            millis: 0,
        };
        assert_eq!(tap_line(3, &result), "ok 3 - x/y # SKIP no freezer");
        let failed = CaseResult {
            verdict: Verdict::Fail("bad\nthing".into()),
            ..result
        };
        assert_eq!(tap_line(4, &failed), "not ok 4 - x/y\n  # bad thing");
    }
}
