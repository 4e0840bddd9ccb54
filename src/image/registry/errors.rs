//! The registry's JSON error bodies (distribution-spec: "Error Codes") and their meaning in
//! plain words, so that a user reads "repository not found", not `NAME_UNKNOWN`.

/// Largest error body read.
pub const MAX_ERROR_BODY: u64 = 64 << 10;

/// One entry of a registry's `{"errors": [...]}` body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ErrorEntry {
    /// The code, e.g. `MANIFEST_UNKNOWN`.
    #[serde(default)]
    pub code: String,
    /// The registry's message.
    #[serde(default)]
    pub message: String,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

/// Parses an error body; a body that is not the spec's JSON gives no entries (the HTTP status
/// still tells what happened).
#[must_use]
pub fn parse_error_body(bytes: &[u8]) -> Vec<ErrorEntry> {
    let mut entries = serde_json::from_slice::<ErrorBody>(bytes)
        .map(|b| b.errors)
        .unwrap_or_default();
    entries.truncate(8);
    for e in &mut entries {
        // Codes are upper-case words with underscores (distribution-spec); anything else in
        // them is dropped rather than printed.
        e.code = e
            .code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        // Messages end up in terminals: keep them short and free of control characters.
        e.message = e
            .message
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
    }
    entries
}

/// What a registry error code means, in words a user understands.
#[must_use]
pub fn plain_words(code: &str) -> &'static str {
    match code {
        "BLOB_UNKNOWN" => "the registry does not have this blob",
        "BLOB_UPLOAD_INVALID" => "the registry refused the upload as invalid",
        "BLOB_UPLOAD_UNKNOWN" => {
            "the upload session is unknown to the registry (expired or cancelled)"
        }
        "DIGEST_INVALID" => "the content does not match its digest",
        "MANIFEST_BLOB_UNKNOWN" => "the manifest refers to blobs the registry does not have",
        "MANIFEST_INVALID" => "the registry refused the manifest as invalid",
        "MANIFEST_UNKNOWN" => {
            "no such manifest: the tag or digest does not exist in this repository"
        }
        "MANIFEST_UNVERIFIED" => "the manifest signature did not verify",
        "NAME_INVALID" => "the repository name is not valid for this registry",
        "NAME_UNKNOWN" => "repository not found (it does not exist or you may not read it)",
        "SIZE_INVALID" => "the content length does not match the declared size",
        "TAG_INVALID" => "the tag does not match the manifest",
        "UNAUTHORIZED" => "authentication required",
        "DENIED" => "access to the resource is denied",
        "UNSUPPORTED" => "the registry does not support this operation",
        "TOOMANYREQUESTS" => "too many requests: the registry's rate limit was reached, try later",
        _ => "the registry refused the request",
    }
}

/// What an HTTP status alone means when the body says nothing.
#[must_use]
pub fn status_words(status: u16) -> &'static str {
    match status {
        401 => "authentication required",
        403 => "access to the resource is denied",
        404 => "not found",
        405 => "the registry does not allow this operation (read-only or disabled)",
        413 => "the registry refused the content as too large",
        416 => "the registry refused the requested byte range",
        429 => "too many requests: the registry's rate limit was reached, try later",
        500..=599 => "the registry failed internally",
        _ => "unexpected answer from the registry",
    }
}

/// Renders entries as `plain words (CODE: message; ...)`; `status` is used when there are none.
#[must_use]
pub fn describe(status: u16, entries: &[ErrorEntry]) -> String {
    match entries.first() {
        None => format!("{} (HTTP {status})", status_words(status)),
        Some(first) => {
            let details = entries
                .iter()
                .map(|e| {
                    if e.message.is_empty() {
                        e.code.clone()
                    } else {
                        format!("{}: {}", e.code, e.message)
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
            format!("{} (HTTP {status}, {details})", plain_words(&first.code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_spec_errors() {
        let e = parse_error_body(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#,
        );
        assert_eq!(e.len(), 1);
        assert_eq!(
            describe(404, &e),
            "no such manifest: the tag or digest does not exist in this repository (HTTP 404, MANIFEST_UNKNOWN: manifest unknown)"
        );
        assert_eq!(
            describe(502, &parse_error_body(b"<html>")),
            "the registry failed internally (HTTP 502)"
        );
        let e =
            parse_error_body(br#"{"errors":[{"code":"X\u007f\u00e9Y","message":"a\u001b[31mb"}]}"#);
        assert_eq!(e[0].message, "a[31mb");
        assert_eq!(e[0].code, "XY");
    }
}
