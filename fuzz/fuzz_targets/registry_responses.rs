//! Fuzzes what a registry or the user's files hand the registry client as JSON: token-service
//! answers, registry error bodies, docker `config.json`, and tag list pages with their `Link`
//! header (the header up to the first newline, the body after it). The first byte picks the
//! parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refeng::image::registry::{auth, errors, tags, Reference};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok((token, _life)) = auth::TokenResponse::parse(rest) {
                assert!(!token.is_empty() && !token.contains(' '));
            }
        }
        1 => {
            let entries = errors::parse_error_body(rest);
            let text = errors::describe(400, &entries);
            assert!(!text.chars().any(char::is_control));
        }
        3 => {
            let (head, body) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (&rest[..0], rest),
            };
            if let Some(link) = std::str::from_utf8(head).ok().and_then(tags::next_link) {
                let base = "http://127.0.0.1:5000";
                if let Some(t) = tags::resolve_link(base, "/v2/a/tags/list?n=2", link) {
                    assert!(t.starts_with('/'), "{t:?}");
                }
            }
            if let Ok(list) = tags::parse_tag_list(body) {
                for t in list {
                    assert!(Reference::parse(&format!("a:{t}")).is_ok(), "{t:?}");
                }
            }
        }
        _ => {
            if let Ok(c) = auth::DockerConfig::parse(rest, std::path::Path::new("config.json")) {
                // Never run credential helpers from fuzz input.
                if c.creds_store.is_none() && c.cred_helpers.is_empty() {
                    for k in c.auths.keys() {
                        let _ = c.lookup(k);
                    }
                }
            }
        }
    }
});
