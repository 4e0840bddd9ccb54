//! Finding the shims a test's daemon started, so the test can end exactly those (by pid) when it
//! is done or has failed: a shim outlives its daemon by design, and it names the daemon's socket
//! on its command line (`-address SOCK`).

/// The pids of the processes whose program name contains `program` (e.g. `containerd-shim-`)
/// and whose command line has `address` as one of its arguments.
pub fn serving(address: &str, program: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.contains(program)) && args.iter().any(|a| a == address) {
            pids.push(pid);
        }
    }
    pids
}
