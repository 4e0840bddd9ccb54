//! `login` and `logout`: the daemon checks the credentials (`POST /auth`), the CLI keeps them
//! in config.json's `auths`, or in the credential helper `credHelpers`/`credsStore` names.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::client::Body;
use super::{CliError, Ctx};

/// The key docker keeps Docker Hub's credentials under.
const HUB: &str = "https://index.docker.io/v1/";

/// `refeng login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Password or Personal Access Token (PAT)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the Password or Personal Access Token (PAT) from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// The registry (Docker Hub when left out)
    pub server: Option<String>,
}

/// `refeng logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// The registry (Docker Hub when left out)
    pub server: Option<String>,
}

fn fail(message: impl Into<String>) -> CliError {
    CliError::Status {
        code: 1,
        message: message.into(),
    }
}

/// The config.json key of `server`: Docker Hub's URL for the hub, else the host as given.
fn server_key(server: Option<&str>) -> String {
    match server {
        None | Some("docker.io" | "index.docker.io" | "registry-1.docker.io") => HUB.to_owned(),
        Some(s) => s.trim_end_matches('/').to_owned(),
    }
}

fn load(path: &Path) -> Result<Value, CliError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| fail(format!("loading config file {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(CliError::io(format!("reading {}", path.display()))(e)),
    }
}

fn save(path: &Path, config: &Value) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(CliError::io(format!("creating {}", dir.display())))?;
    let text = serde_json::to_string_pretty(config).unwrap_or_else(|_| "{}".into());
    // Written beside and renamed, so a reader never sees half a file.
    let tmp = dir.join(".config.json.refeng-tmp");
    std::fs::write(&tmp, text.as_bytes())
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        })
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(CliError::io(format!("writing {}", path.display())))
}

/// The credential helper for `key`: its own in `credHelpers`, else `credsStore`.
fn helper(config: &Value, key: &str) -> Option<String> {
    config["credHelpers"][key]
        .as_str()
        .or_else(|| config["credsStore"].as_str())
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
}

/// Runs `docker-credential-<helper> <verb>` with `input` on its stdin.
fn run_helper(helper: &str, verb: &str, input: &str) -> Result<(), CliError> {
    if helper.contains('/') {
        return Err(fail(format!("invalid credential helper name {helper:?}")));
    }
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(CliError::io(format!("running {program}")))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(input.as_bytes())
            .map_err(CliError::io(format!("writing to {program}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(CliError::io(format!("running {program}")))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        return Err(fail(format!(
            "error storing credentials - err: {}, out: `{}`",
            out.status,
            text.trim()
        )));
    }
    Ok(())
}

/// Keeps `username`/`secret` for `key`: in the helper when there is one (config.json then
/// only records the key), else base64 in `auths`.
///
/// # Errors
/// The helper's; config.json that cannot be read or written.
pub fn store(path: &Path, key: &str, username: &str, secret: &str) -> Result<bool, CliError> {
    use base64::Engine as _;
    let mut config = load(path)?;
    if !config.is_object() {
        config = json!({});
    }
    let helped = helper(&config, key);
    let entry = match &helped {
        Some(h) => {
            let input = json!({"ServerURL": key, "Username": username, "Secret": secret});
            run_helper(h, "store", &input.to_string())?;
            json!({})
        }
        None => json!({
            "auth": base64::engine::general_purpose::STANDARD.encode(format!("{username}:{secret}"))
        }),
    };
    if !config["auths"].is_object() {
        config["auths"] = json!({});
    }
    config["auths"][key] = entry;
    save(path, &config)?;
    Ok(helped.is_none())
}

/// Forgets the credentials of `key`; whether config.json or a helper had any.
///
/// # Errors
/// config.json that cannot be read or written.
pub fn erase(path: &Path, key: &str) -> Result<bool, CliError> {
    let mut config = load(path)?;
    let known = config["auths"].get(key).is_some();
    if let Some(h) = helper(&config, key) {
        // A helper that has nothing for the key is no error, as with docker.
        let _ = run_helper(&h, "erase", key);
    }
    if let Some(a) = config["auths"].as_object_mut() {
        a.shift_remove(key);
    }
    if known {
        save(path, &config)?;
    }
    Ok(known)
}

/// `login`: checks the credentials with the daemon, then keeps them.
///
/// # Errors
/// Missing credentials on a non-terminal; the daemon's; the helper's.
pub fn login(ctx: &Ctx, a: LoginArgs) -> Result<(), CliError> {
    let mut err = std::io::stderr().lock();
    let password = if a.password_stdin {
        if a.password.is_some() {
            return Err(fail(
                "conflicting options: cannot specify both --password and --password-stdin",
            ));
        }
        if a.username.is_none() {
            return Err(fail(
                "the --password-stdin option requires --username to be set",
            ));
        }
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(CliError::io("stdin"))?;
        Some(line.trim_end_matches(['\n', '\r']).to_owned())
    } else {
        if a.password.is_some() {
            let _ = writeln!(
                err,
                "WARNING! Using --password via the CLI is insecure. Use --password-stdin."
            );
        }
        a.password.clone()
    };
    let key = server_key(a.server.as_deref());
    let path = ctx.config_dir.join("config.json");
    let username = a
        .username
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    let password = password.filter(|p| !p.trim().is_empty());
    let (username, password) = match (username, password) {
        (Some(u), Some(p)) => (u, p),
        (username, password) => prompt_credentials(&path, &key, username, password)?,
    };
    let body = json!({"username": username, "password": password, "serveraddress": key});
    let v: Value = ctx
        .client
        .request("POST", "/auth", &[], Body::json(&body))?
        .ok()?
        .json()?;
    let secret = v["IdentityToken"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map_or(password.as_str(), |t| t);
    if store(&path, &key, &username, secret)? {
        let _ = write!(
            err,
            "WARNING! Your credentials are stored unencrypted in '{}'.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n\n",
            path.display()
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", v["Status"].as_str().unwrap_or("Login Succeeded"))
        .map_err(CliError::io("stdout"))
}

/// The username config.json keeps for `key` (base64 `user:secret` in `auths`), offered as the
/// prompt's default.
fn stored_username(path: &Path, key: &str) -> Option<String> {
    use base64::Engine as _;
    let config = load(path).ok()?;
    let auth = config["auths"][key]["auth"].as_str()?;
    let text = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let text = String::from_utf8(text).ok()?;
    let user = text.split_once(':')?.0.trim();
    (!user.is_empty()).then(|| user.to_owned())
}

/// docker's `ReadInput`: `message` on stdout, a line from stdin, trimmed.
fn read_input(message: &str) -> Result<String, CliError> {
    let mut out = std::io::stdout().lock();
    write!(out, "{message}")
        .and_then(|()| out.flush())
        .map_err(CliError::io("stdout"))?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(CliError::io("stdin"))?;
    Ok(line.trim().to_owned())
}

/// The terminal's echo, off while it lives (a password is typed unseen).
struct EchoOff(Option<nix::sys::termios::Termios>);

impl EchoOff {
    fn new() -> EchoOff {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            return EchoOff(None);
        };
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        if tcsetattr(&stdin, SetArg::TCSANOW, &quiet).is_err() {
            return EchoOff(None);
        }
        EchoOff(Some(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let stdin = std::io::stdin();
            if nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, saved)
                .is_err()
            {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(
                    err,
                    "Error: failed to restore terminal state to echo input: run stty echo"
                );
            }
        }
    }
}

/// docker's `PromptUserForCredentials`: what the flags left out asked on the terminal,
/// `Username (stored): ` offering the stored name, the password typed without echo.
fn prompt_credentials(
    path: &Path,
    key: &str,
    username: Option<String>,
    password: Option<String>,
) -> Result<(String, String), CliError> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(fail(
            "Error: Cannot perform an interactive login from a non TTY device",
        ));
    }
    if key == HUB && username.is_none() && password.is_none() {
        // docker 28 signs in to Docker Hub through a browser (a device code) here.
        return Err(fail(
            "refeng login: Docker Hub's web-based (device code) login is not supported: \
             give the username with -u/--username",
        ));
    }
    let username = match username {
        Some(u) => u,
        None => {
            let stored = stored_username(path, key);
            let message = match &stored {
                Some(d) => format!("Username ({d}): "),
                None => "Username: ".to_owned(),
            };
            let mut u = read_input(&message)?;
            if u.is_empty() {
                u = stored.unwrap_or_default();
            }
            if u.is_empty() {
                return Err(fail("Error: Non-null Username Required"));
            }
            u
        }
    };
    let password = match password {
        Some(p) => p,
        None => {
            let echo = EchoOff::new();
            let p = read_input("Password: ");
            drop(echo);
            let mut out = std::io::stdout().lock();
            writeln!(out).map_err(CliError::io("stdout"))?;
            let p = p?;
            if p.is_empty() {
                return Err(fail("Error: Password Required"));
            }
            p
        }
    };
    Ok((username, password))
}

/// `logout`: forgets the credentials of the registry under each key docker may have kept
/// them (`host`, `http://host`, `https://host`); no daemon involved.
///
/// # Errors
/// config.json that cannot be read or written.
pub fn logout(ctx: &Ctx, a: LogoutArgs) -> Result<(), CliError> {
    let key = server_key(a.server.as_deref());
    let host = if a.server.is_none() || key == HUB {
        key.clone()
    } else {
        let h = key
            .strip_prefix("https://")
            .or_else(|| key.strip_prefix("http://"))
            .unwrap_or(&key);
        h.split('/').next().unwrap_or(h).to_owned()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "Removing login credentials for {host}").map_err(CliError::io("stdout"))?;
    let path = ctx.config_dir.join("config.json");
    let mut keys = vec![key.clone()];
    if key != HUB {
        keys.extend([
            host.clone(),
            format!("http://{host}"),
            format!("https://{host}"),
        ]);
    }
    keys.dedup();
    for k in keys {
        erase(&path, &k)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keeps_other_keys_and_erase_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"psFormat":"x","auths":{"other:1":{"auth":"eA=="}}}"#,
        )
        .unwrap();
        assert!(store(&path, "127.0.0.1:5000", "u", "p:w").unwrap());
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "x");
        assert_eq!(v["auths"]["other:1"]["auth"], "eA==");
        assert_eq!(v["auths"]["127.0.0.1:5000"]["auth"], "dTpwOnc=");
        assert!(erase(&path, "127.0.0.1:5000").unwrap());
        assert!(!erase(&path, "127.0.0.1:5000").unwrap());
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(v["auths"].get("127.0.0.1:5000").is_none());
        assert_eq!(v["auths"]["other:1"]["auth"], "eA==");
    }

    #[test]
    fn a_helper_gets_the_secret_and_config_json_only_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"credHelpers":{"reg:1":"nosuchhelper-refeng-test"}}"#,
        )
        .unwrap();
        // The helper does not exist: nothing is written, the error says which program.
        let e = store(&path, "reg:1", "u", "p").unwrap_err();
        assert!(
            e.to_string()
                .contains("docker-credential-nosuchhelper-refeng-test"),
            "{e}"
        );
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(v.get("auths").is_none());
        assert_eq!(server_key(None), HUB);
        assert_eq!(server_key(Some("docker.io")), HUB);
        assert_eq!(server_key(Some("localhost:5000/")), "localhost:5000");
    }
}
