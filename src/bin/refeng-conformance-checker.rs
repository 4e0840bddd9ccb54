//! refeng-conformance-checker: runs inside the container under test, checks the process's view
//! against the config bind-mounted at `/conformance/config.json` and prints one JSON report line.
//! Exit status: 0 all checks held, 1 some failed, 2 the config could not be read.

use std::io::Write;
use std::path::Path;

use refeng::conformance::checker::{check, CONFIG_PATH};

fn main() {
    let code = match check(Path::new(CONFIG_PATH)) {
        Ok(report) => {
            let line = serde_json::to_string(&report).unwrap_or_default();
            let _ = writeln!(std::io::stdout(), "{line}");
            i32::from(!report.failures().is_empty())
        }
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "refeng-conformance-checker: {message}");
            2
        }
    };
    std::process::exit(code);
}
