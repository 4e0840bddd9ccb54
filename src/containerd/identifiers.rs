//! containerd's identifier rules (pkg/identifiers): the names of namespaces, containers,
//! leases and snapshots-by-id are one or more alphanumeric labels joined by `.`, `_` or `-`,
//! at most 76 characters.

use super::error::Error;

/// The longest identifier containerd accepts.
pub const MAX_LENGTH: usize = 76;

/// Checks `s` against containerd's identifier grammar
/// `^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$`.
///
/// # Errors
/// `InvalidArgument` naming the identifier and the rule it breaks.
pub fn validate(s: &str) -> Result<(), Error> {
    if s.is_empty() {
        return Err(Error::InvalidArgument(
            "identifier must not be empty".into(),
        ));
    }
    if s.len() > MAX_LENGTH {
        return Err(Error::InvalidArgument(format!(
            "identifier {s:?} greater than maximum length ({MAX_LENGTH} characters)"
        )));
    }
    let mut after_separator = true;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            after_separator = false;
        } else if matches!(c, '.' | '_' | '-') && !after_separator {
            after_separator = true;
        } else {
            return Err(invalid(s));
        }
    }
    if after_separator {
        return Err(invalid(s));
    }
    Ok(())
}

fn invalid(s: &str) -> Error {
    Error::InvalidArgument(format!(
        "identifier {s:?} must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$"
    ))
}

/// The most bytes a label's key and value may have together (containerd's labels.Validate).
pub const MAX_LABEL_SIZE: usize = 4096;

/// Checks every label as containerd does.
///
/// # Errors
/// `InvalidArgument` naming the first label whose key and value together exceed 4096 bytes.
pub fn validate_labels<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), Error> {
    for (k, v) in labels {
        if k.len() + v.len() > MAX_LABEL_SIZE {
            return Err(Error::InvalidArgument(format!(
                "label key and value greater than maximum size ({MAX_LABEL_SIZE} bytes), key: {}",
                k.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_containerd_identifiers_and_refuses_the_rest() {
        for ok in ["default", "k8s.io", "a", "my_ctr-1", "A.b_c-d"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a/b", "a b", "ü", &"x".repeat(77)] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
