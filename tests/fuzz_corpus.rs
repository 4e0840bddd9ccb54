//! Every committed fuzz seed runs through its parser in plain `cargo test`, so a seed that once
//! crashed stays fixed without a fuzzing toolchain: the check is the fuzz target's own (an error
//! or a value that survives its round trip, never a panic).

use std::path::Path;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

#[test]
fn config_json_seeds_parse_or_fail_cleanly() {
    let mut accepted = 0;
    for (name, bytes) in seeds("config_json") {
        if let Ok(spec) = refeng::oci::config::parse_config(&bytes) {
            accepted += 1;
            let again = serde_json::to_vec(&spec).unwrap();
            assert!(
                refeng::oci::config::parse_config(&again).is_ok(),
                "{name}: accepted, but not after a round trip"
            );
        }
    }
    // The corpus holds real configs (runc's default, Docker's) as well as broken ones.
    assert!(accepted >= 2, "only {accepted} seeds were accepted");
}

#[test]
fn registry_reference_seeds_normalise_idempotently_or_fail() {
    use refeng::image::registry::Reference;
    let mut accepted = 0;
    for (name, bytes) in seeds("registry_reference") {
        let Ok(s) = std::str::from_utf8(&bytes) else {
            continue;
        };
        if let Ok(r) = Reference::parse(s) {
            accepted += 1;
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r, "{name}");
        }
    }
    assert!(accepted >= 4, "only {accepted} references were accepted");
}

#[test]
fn registry_challenge_seeds_parse_or_fail_cleanly() {
    use refeng::image::registry::auth::parse_challenges;
    let mut accepted = 0;
    for (name, bytes) in seeds("registry_www_authenticate") {
        if let Ok(cs) = parse_challenges(&String::from_utf8_lossy(&bytes)) {
            accepted += 1;
            assert!(cs.iter().all(|c| !c.scheme.is_empty()), "{name}");
        }
    }
    assert!(accepted >= 3, "only {accepted} challenges parsed");
}

#[test]
fn registry_response_seeds_parse_or_fail_cleanly() {
    use refeng::image::registry::{auth, errors, tags};
    let (mut links, mut tag_lists) = (0, 0);
    for (name, bytes) in seeds("registry_responses") {
        let Some((&which, rest)) = bytes.split_first() else {
            continue;
        };
        match which % 4 {
            0 => {
                if let Ok((t, _)) = auth::TokenResponse::parse(rest) {
                    assert!(!t.is_empty(), "{name}");
                }
            }
            1 => {
                let text = errors::describe(400, &errors::parse_error_body(rest));
                assert!(!text.chars().any(char::is_control), "{name}");
            }
            3 => {
                let (head, body) = match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => (&rest[..i], &rest[i + 1..]),
                    None => (&rest[..0], rest),
                };
                if let Some(link) = std::str::from_utf8(head).ok().and_then(tags::next_link) {
                    let t = tags::resolve_link("http://127.0.0.1:5000", "/v2/a/tags/list", link);
                    assert!(t.is_none_or(|t| t.starts_with('/')), "{name}");
                    links += 1;
                }
                if let Ok(list) = tags::parse_tag_list(body) {
                    for t in &list {
                        assert!(
                            refeng::image::registry::Reference::parse(&format!("a:{t}")).is_ok(),
                            "{name}: {t:?}"
                        );
                    }
                    tag_lists += 1;
                }
            }
            _ => {
                if let Ok(c) = auth::DockerConfig::parse(rest, Path::new("config.json")) {
                    assert!(
                        c.creds_store.is_none(),
                        "{name}: seeds must not run helpers"
                    );
                    for k in c.auths.keys() {
                        let _ = c.lookup(k);
                    }
                }
            }
        }
    }
    // The tag list seeds hold pages with a next link and pages that parse.
    assert!(
        links >= 1 && tag_lists >= 2,
        "{links} links, {tag_lists} tag lists"
    );
}

#[test]
fn kernel_file_seeds_parse_or_name_the_bad_line() {
    use refeng::sys::kernel_files::{cgroup_file, mountinfo, proc_cgroup::ProcCgroup, Malformed};
    let line_exists = |name: &str, text: &[u8], e: &Malformed| {
        let lines = text.split(|b| *b == b'\n').count().max(1);
        assert!(e.line >= 1 && e.line <= lines, "{name}: {e}");
    };
    let (mut accepted, mut refused) = (0, 0);
    for (name, bytes) in seeds("kernel_files") {
        let Some((&which, text)) = bytes.split_first() else {
            continue;
        };
        let result: Result<(), Malformed> = match which % 6 {
            0 => ProcCgroup::parse(text).map(|p| {
                assert!(p.memberships.iter().all(|m| m.path.is_absolute()), "{name}");
            }),
            1 => mountinfo::parse(text).map(|m| assert!(!m.is_empty(), "{name}")),
            2 => cgroup_file::flat_keyed(text).map(drop),
            3 => cgroup_file::nested_keyed(text).map(drop),
            4 => cgroup_file::single_u64(text)
                .map(drop)
                .or_else(|_| cgroup_file::list::<i32>(text).map(drop)),
            _ => cgroup_file::blkio_v1_counters(text).map(drop),
        };
        match result {
            Ok(()) => accepted += 1,
            Err(e) => {
                line_exists(&name, text, &e);
                refused += 1;
            }
        }
    }
    // Real files of this kind of host are accepted, the broken seeds refused.
    assert!(accepted >= 10, "only {accepted} seeds were accepted");
    assert!(refused >= 5, "only {refused} seeds were refused");
}

#[test]
fn containerd_request_seeds_are_checked_or_refused_cleanly() {
    use refeng::containerd::requests::{check, METHODS};
    let mut accepted = 0;
    let mut refused = 0;
    for (name, bytes) in seeds("containerd_requests") {
        let Some((&which, body)) = bytes.split_first() else {
            continue;
        };
        match check(METHODS[usize::from(which) % METHODS.len()], body) {
            Ok(()) => {
                assert!(
                    !name.contains("bad") && name != "garbage",
                    "{name}: accepted"
                );
                accepted += 1;
            }
            Err(e) => {
                assert!(!name.ends_with("_ok"), "{name}: refused: {e}");
                assert!(
                    !e.to_string().is_empty(),
                    "{name}: an error without a message"
                );
                refused += 1;
            }
        }
    }
    // The corpus holds well-formed requests of every method as well as broken ones.
    assert!(accepted >= 12, "only {accepted} requests were accepted");
    assert!(refused >= 10, "only {refused} requests were refused");
}

#[test]
fn containerd_task_input_seeds_are_accepted_or_refused_as_named() {
    use refeng::containerd::tasks::input::{check, INPUTS};
    let (mut accepted, mut refused) = (0, 0);
    for (name, bytes) in seeds("containerd_task_inputs") {
        let Some((&which, body)) = bytes.split_first() else {
            continue;
        };
        match check(INPUTS[usize::from(which) % INPUTS.len()], body) {
            Ok(()) => {
                assert!(
                    !name.contains("bad") && name != "garbage",
                    "{name}: accepted"
                );
                accepted += 1;
            }
            Err(e) => {
                assert!(!name.ends_with("_ok"), "{name}: refused: {e}");
                assert!(
                    !e.to_string().is_empty(),
                    "{name}: an error without a message"
                );
                refused += 1;
            }
        }
    }
    assert!(accepted >= 10, "only {accepted} inputs were accepted");
    assert!(refused >= 12, "only {refused} inputs were refused");
}

#[test]
fn engine_request_seeds_parse_or_are_refused_with_a_400() {
    let mut accepted = 0;
    let mut refused = 0;
    for (name, bytes) in seeds("engine_requests") {
        let kind = String::from_utf8_lossy(&bytes);
        let kind = kind.split('\n').next().unwrap_or("");
        assert!(
            refeng::engine::requests::KINDS.contains(&kind),
            "{name}: unknown kind {kind:?}"
        );
        if refeng::engine::requests::check(&bytes) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // The corpus holds what clients send and what they must not.
    assert!(
        accepted >= 12 && refused >= 10,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn dockerfile_seeds_parse_or_are_refused_with_their_line() {
    let (mut accepted, mut refused) = (0, 0);
    for (_, bytes) in seeds("dockerfile_parse") {
        if refeng::engine::build::check_dockerfile(&bytes) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // The corpus holds Dockerfiles dockerd builds and ones it refuses at parse time.
    assert!(
        accepted >= 10 && refused >= 8,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn build_context_seeds_read_or_are_refused() {
    let (mut accepted, mut refused) = (0, 0);
    for (_, bytes) in seeds("build_context") {
        if refeng::engine::build::check_build_context(&bytes) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        accepted >= 3 && refused >= 2,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn dockerignore_seeds_match_or_are_refused() {
    let (mut accepted, mut refused) = (0, 0);
    for (_, bytes) in seeds("dockerignore") {
        if refeng::engine::build::check_dockerignore(&bytes) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        accepted >= 8 && refused >= 3,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn engine_dns_seeds_parse_or_fail_cleanly() {
    let (mut accepted, mut refused) = (0, 0);
    for (_name, bytes) in seeds("engine_dns") {
        if refeng::engine::network::dns::check(&bytes) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // Queries and responses containers send, and broken messages.
    assert!(
        accepted >= 7 && refused >= 8,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn engine_network_request_seeds_parse_or_are_refused_with_a_400() {
    let (mut accepted, mut refused) = (0, 0);
    for (name, bytes) in seeds("engine_network_requests") {
        let text = String::from_utf8_lossy(&bytes);
        let kind = text.split('\n').next().unwrap_or("");
        assert!(
            refeng::engine::network::api::FUZZ_KINDS.contains(&kind),
            "{name}: unknown kind {kind:?}"
        );
        if refeng::engine::network::api::check(&bytes) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // What the CLI, compose and docker-py send, and what must be refused.
    assert!(
        accepted >= 11 && refused >= 14,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn cli_input_seeds_parse_or_are_refused() {
    let (mut accepted, mut refused) = (0, 0);
    for (_, bytes) in seeds("cli_inputs") {
        if refeng::cli::specs::check_inputs(&bytes) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        accepted >= 18 && refused >= 8,
        "{accepted} accepted, {refused} refused"
    );
}
