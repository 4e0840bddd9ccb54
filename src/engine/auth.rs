//! The `X-Registry-Auth` header of pull and push (and the body of `POST /auth`): base64url of a
//! JSON `AuthConfig` (`username`/`password`, `auth` as base64 `user:pass`, `identitytoken`).

use base64::Engine as _;
use serde::Deserialize;

use super::error::ApiError;
use crate::image::registry::auth::Credentials;

/// The fields of dockerd's `registry.AuthConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    /// Deprecated and unused by registries; clients still send it.
    #[serde(default)]
    #[allow(dead_code)]
    email: String,
    /// The registry the client meant: what `POST /auth` checks; for pull and push the
    /// reference decides which registry is asked.
    #[serde(default)]
    serveraddress: String,
    #[serde(default)]
    identitytoken: String,
    #[serde(default)]
    registrytoken: String,
}

/// Decodes the header's value; an absent, empty or `{}` header is no credentials.
///
/// # Errors
/// `BadRequest` for text that is not base64 of an AuthConfig JSON object, or one that asks for
/// something refengd does not do (a bearer `registrytoken`).
pub fn decode(header: &str) -> Result<Option<Credentials>, ApiError> {
    let header = header.trim();
    if header.is_empty() {
        return Ok(None);
    }
    let bad = |why: String| ApiError::BadRequest(format!("invalid X-Registry-Auth header: {why}"));
    let trimmed = header.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|e| bad(e.to_string()))?;
    let cfg: AuthConfig = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    credentials_of(cfg, &bad)
}

/// A login request (`POST /auth`): the registry the client names (`serveraddress`, the host
/// part of it; Docker Hub's `https://index.docker.io/v1/` is `docker.io`) and the credentials.
///
/// # Errors
/// `BadRequest` for a body that is not an AuthConfig JSON object, one without credentials or
/// server address, or one asking for what refengd does not do (a `registrytoken`).
pub fn decode_login(body: &[u8]) -> Result<(String, Credentials), ApiError> {
    let bad = |why: String| ApiError::BadRequest(format!("invalid login request: {why}"));
    let cfg: AuthConfig = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let registry = registry_of(&cfg.serveraddress);
    match credentials_of(cfg, &bad)? {
        Some(c) => Ok((registry, c)),
        None => Err(bad("no username and password or identity token".into())),
    }
}

/// The registry host a server address names (Docker Hub's addresses are `docker.io`).
fn registry_of(address: &str) -> String {
    let address = address.trim();
    let host = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
        .unwrap_or(address)
        .split('/')
        .next()
        .unwrap_or("");
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

/// Decodes `X-Registry-Config` (what `docker build` sends): base64url of a JSON object of
/// AuthConfigs keyed by server address. The credentials by registry host.
///
/// # Errors
/// `BadRequest` for text that is not base64 of such an object.
pub fn decode_config(header: &str) -> Result<Vec<(String, Credentials)>, ApiError> {
    let header = header.trim();
    if header.is_empty() {
        return Ok(Vec::new());
    }
    let bad =
        |why: String| ApiError::BadRequest(format!("invalid X-Registry-Config header: {why}"));
    let trimmed = header.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|e| bad(e.to_string()))?;
    let all: std::collections::BTreeMap<String, AuthConfig> =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for (address, cfg) in all {
        if let Some(c) = credentials_of(cfg, &bad)? {
            out.push((registry_of(&address), c));
        }
    }
    Ok(out)
}

fn credentials_of(
    cfg: AuthConfig,
    bad: &dyn Fn(String) -> ApiError,
) -> Result<Option<Credentials>, ApiError> {
    if !cfg.registrytoken.is_empty() {
        return Err(bad(
            "registrytoken is not supported (use identitytoken or a password)".into(),
        ));
    }
    if !cfg.identitytoken.is_empty() {
        return Ok(Some(Credentials::IdentityToken(cfg.identitytoken)));
    }
    let (username, password) = if !cfg.auth.is_empty() {
        let plain = base64::engine::general_purpose::STANDARD
            .decode(cfg.auth.trim())
            .map_err(|e| bad(format!("auth: {e}")))?;
        let plain = String::from_utf8(plain).map_err(|_| bad("auth: not UTF-8".into()))?;
        let (u, p) = plain
            .split_once(':')
            .ok_or_else(|| bad("auth: not user:password".into()))?;
        (u.to_string(), p.to_string())
    } else {
        (cfg.username, cfg.password)
    };
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::Basic { username, password }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(json: &str) -> String {
        base64::engine::general_purpose::URL_SAFE.encode(json)
    }

    #[test]
    fn the_forms_clients_send() {
        assert_eq!(decode("").unwrap(), None);
        assert_eq!(decode(&enc("{}")).unwrap(), None);
        let basic = Credentials::Basic {
            username: "alice".into(),
            password: "s3cret".into(),
        };
        let c = decode(&enc(
            r#"{"username":"alice","password":"s3cret","serveraddress":"r:5000"}"#,
        ));
        assert_eq!(c.unwrap(), Some(basic.clone()));
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let c = decode(&enc(&format!(r#"{{"auth":"{auth}"}}"#)));
        assert_eq!(c.unwrap(), Some(basic));
        let c = decode(&enc(r#"{"identitytoken":"tok"}"#)).unwrap();
        assert_eq!(c, Some(Credentials::IdentityToken("tok".into())));
    }

    #[test]
    fn login_bodies_name_the_registry() {
        let (r, c) = decode_login(
            br#"{"username":"alice","password":"pw","serveraddress":"127.0.0.1:5000"}"#,
        )
        .unwrap();
        assert_eq!(r, "127.0.0.1:5000");
        assert_eq!(
            c,
            Credentials::Basic {
                username: "alice".into(),
                password: "pw".into()
            }
        );
        let (r, _) = decode_login(
            br#"{"username":"a","password":"b","serveraddress":"https://index.docker.io/v1/"}"#,
        )
        .unwrap();
        assert_eq!(r, "docker.io");
        for bad in [&b"{}"[..], b"[]", br#"{"username":"a","nosuch":1}"#] {
            assert_eq!(
                decode_login(bad).unwrap_err().status(),
                http::StatusCode::BAD_REQUEST
            );
        }
    }

    #[test]
    fn bad_headers_are_400s() {
        for h in [
            "%%%".to_string(),
            enc("[1]"),
            enc(r#"{"username":1}"#),
            enc(r#"{"bogus":"x"}"#),
            enc(r#"{"registrytoken":"t"}"#),
            enc(r#"{"auth":"bm9jb2xvbg=="}"#),
        ] {
            let e = decode(&h).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST, "{h}");
        }
    }

    #[test]
    fn registry_config_decodes_by_host() {
        use base64::Engine as _;
        let json = r#"{"https://index.docker.io/v1/":{"username":"u","password":"p"},
            "127.0.0.1:5000":{"auth":"YTpi"},"empty.example":{}}"#;
        let h = base64::engine::general_purpose::URL_SAFE.encode(json);
        let got = decode_config(&h).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "127.0.0.1:5000");
        assert_eq!(got[1].0, "docker.io");
        assert!(decode_config("").unwrap().is_empty());
        assert!(decode_config("!!").is_err());
    }
}
