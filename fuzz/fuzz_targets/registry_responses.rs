//! Fuzzes what a registry or the user's files hand the registry client as JSON: token-service
//! answers, registry error bodies, and docker `config.json`. The first byte picks the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refeng::image::registry::{auth, errors};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
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
