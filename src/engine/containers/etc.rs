//! The user lookup in the container's own
//! `/etc/passwd` and `/etc/group` (`User` and `GroupAdd`), as moby's `user` package reads them.

use super::super::error::ApiError;

/// Who the process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary groups: the primary group, then the groups that list the user, then
    /// `GroupAdd`.
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn passwd_entries(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn group_entries(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `user` (`name|uid[:group|gid]`, "" for root) against the container's `passwd` and
/// `group` files (absent files read as empty), then `group_add`.
///
/// # Errors
/// `BadRequest` with moby's messages when a name is not found or an id is out of range.
pub fn resolve_user(
    user: &str,
    passwd: &str,
    group: &str,
    group_add: &[String],
) -> Result<ExecUser, ApiError> {
    let users = passwd_entries(passwd);
    let groups = group_entries(group);
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let found = users
        .iter()
        .find(|e| e.name == u || u.parse::<u32>().ok() == Some(e.uid));
    let (uid, mut gid, name) = match (found, u.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name.clone())),
        (None, Ok(n)) => (n, 0, None),
        (None, Err(_)) => {
            return Err(ApiError::BadRequest(format!(
                "unable to find user {u}: no matching entries in passwd file"
            )))
        }
    };
    let find_group = |g: &str| -> Result<u32, ApiError> {
        if let Some(e) = groups.iter().find(|e| e.name == g) {
            return Ok(e.gid);
        }
        g.parse::<u32>().map_err(|_| {
            ApiError::BadRequest(format!(
                "unable to find group {g}: no matching entries in group file"
            ))
        })
    };
    let mut additional = Vec::new();
    match g {
        Some(g) if !g.is_empty() => {
            gid = find_group(g)?;
            additional.push(gid);
        }
        _ => {
            additional.push(gid);
            if let Some(n) = &name {
                for e in &groups {
                    if e.members.iter().any(|m| m == n) && !additional.contains(&e.gid) {
                        additional.push(e.gid);
                    }
                }
            }
        }
    }
    for g in group_add {
        let id = find_group(g)?;
        if !additional.contains(&id) {
            additional.push(id);
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root\ntty:x:5:\nuser:x:1000:\n";

    #[test]
    fn users_resolve_as_moby_resolves_them() {
        // What dockerd put in the spec for busybox with no User: [0, 10].
        let root = resolve_user("", PASSWD, GROUP, &[]).unwrap();
        assert_eq!(
            (root.uid, root.gid, root.additional_gids),
            (0, 0, vec![0, 10])
        );
        let u = resolve_user("user", PASSWD, GROUP, &["tty".into()]).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids),
            (1000, 1000, vec![1000, 5])
        );
        let u = resolve_user("1234:tty", PASSWD, GROUP, &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (1234, 5, vec![5]));
        let e = resolve_user("nobody", PASSWD, GROUP, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert!(resolve_user("user:nogroup", PASSWD, GROUP, &[]).is_err());
    }
}
