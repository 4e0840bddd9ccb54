//! Tag listing (distribution-spec: "Listing Tags"): `GET /v2/<name>/tags/list` page by page,
//! following `Link: <…>; rel="next"` (RFC 8288), or asking again with `last` when pages of `n`
//! come without links, with the same authentication as manifest fetches.

use std::collections::HashSet;

use ureq::http::{self, Method, StatusCode};

use super::client::{pull_scopes, with_query, Req};
use super::reference::valid_tag;
use super::{Client, Reference, RegistryError};

/// Largest tag list page read.
pub const MAX_TAG_PAGE: u64 = 4 << 20;
/// Most tags one listing gathers (the largest public repositories hold tens of thousands).
pub const MAX_TAGS: usize = 100_000;
/// Most pages one listing asks for.
pub const MAX_TAG_PAGES: usize = 1_000;

/// Why a tag list page was refused.
#[derive(Debug, thiserror::Error)]
pub enum TagListError {
    /// the page is not the spec's JSON
    #[error("the tag list is not JSON of the form {{\"name\": …, \"tags\": […]}}")]
    NotJson(#[source] serde_json::Error),
    /// a listed tag breaks the tag grammar
    #[error("the tag list names {tag:?}, which is not a valid tag")]
    BadTag {
        /// the tag, cut to 128 characters
        tag: String,
    },
}

#[derive(serde::Deserialize)]
struct Page {
    /// `null` for a repository whose tags were all deleted (docker-registry 2.8).
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The tags of one page of `GET /v2/<name>/tags/list`, in the registry's order (a missing or
/// `null` list is empty).
///
/// # Errors
/// [`TagListError::NotJson`] for a body that is not the spec's object,
/// [`TagListError::BadTag`] for a tag outside the grammar (it could not be pulled by name).
pub fn parse_tag_list(bytes: &[u8]) -> Result<Vec<String>, TagListError> {
    let page: Page = serde_json::from_slice(bytes).map_err(TagListError::NotJson)?;
    let tags = page.tags.unwrap_or_default();
    if let Some(bad) = tags.iter().find(|t| !valid_tag(t)) {
        return Err(TagListError::BadTag {
            tag: bad.chars().take(128).collect(),
        });
    }
    Ok(tags)
}

/// The target of the `rel="next"` link in a `Link` header value (RFC 8288 section 3:
/// `<target>; param=value; rel="next"`, several links separated by commas), if there is one.
#[must_use]
pub fn next_link(value: &str) -> Option<&str> {
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let after = rest.strip_prefix('<')?;
        let close = after.find('>')?;
        let target = &after[..close];
        rest = &after[close + 1..];
        // Parameters up to the next link: `;`-separated, values bare or quoted.
        let mut next = false;
        loop {
            rest = rest.trim_start_matches([' ', '\t']);
            let Some(p) = rest.strip_prefix(';') else {
                break;
            };
            rest = p.trim_start_matches([' ', '\t']);
            let key_end = rest.find(['=', ';', ',']).unwrap_or(rest.len());
            let key = rest[..key_end].trim();
            rest = &rest[key_end..];
            let mut val = "";
            if let Some(v) = rest.strip_prefix('=') {
                let v = v.trim_start_matches([' ', '\t']);
                if let Some(q) = v.strip_prefix('"') {
                    let end = q.find('"').unwrap_or(q.len());
                    val = &q[..end];
                    rest = q.get(end + 1..).unwrap_or("");
                } else {
                    let end = v.find([';', ',']).unwrap_or(v.len());
                    val = v[..end].trim();
                    rest = &v[end..];
                }
            }
            if key.eq_ignore_ascii_case("rel")
                && val
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
            {
                next = true;
            }
        }
        if next {
            return Some(target);
        }
        if !rest.starts_with(',') {
            return None;
        }
    }
}

/// Where a next-page link leads, as a request target below the registry's base URL: absolute
/// links must stay on the registry (credentials go with the request), relative ones resolve
/// against `current` (a path with its query). `None` for a link elsewhere.
#[must_use]
pub fn resolve_link(base: &str, current: &str, link: &str) -> Option<String> {
    if link.starts_with("//") {
        return None;
    }
    if link.starts_with("http://") || link.starts_with("https://") {
        return link
            .strip_prefix(base)
            .filter(|p| p.starts_with('/'))
            .map(str::to_owned);
    }
    if link.starts_with('/') {
        return Some(link.to_owned());
    }
    let path = current.split('?').next().unwrap_or(current);
    if link.starts_with('?') {
        return Some(format!("{path}{link}"));
    }
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Some(format!("{dir}{link}"))
}

impl Client {
    /// Every tag of `r`'s repository (its tag and digest are ignored), in the order the
    /// registry lists them, each once; pages follow the registry's `Link` headers.
    ///
    /// # Errors
    /// As [`Client::tags_paged`].
    pub fn tags(&self, r: &Reference) -> Result<Vec<String>, RegistryError> {
        self.tags_paged(r, None)
    }

    /// [`Client::tags`] asking for pages of `page_size` tags (`n`); a full page without a
    /// `Link` is followed by a request with `last` set to its last tag (distribution-spec:
    /// "Listing Tags"). Listing ends at a page without a next one or one that adds no tag.
    ///
    /// # Errors
    /// [`RegistryError::Refused`] for the registry's refusal (404 `NAME_UNKNOWN` for an
    /// unknown repository), the auth errors, [`RegistryError::TagList`] for a page that does
    /// not parse, [`RegistryError::Protocol`] for a link off the registry or a listing beyond
    /// [`MAX_TAG_PAGES`] pages or [`MAX_TAGS`] tags.
    #[tracing::instrument(skip_all, fields(repository = %r.name()))]
    pub fn tags_paged(
        &self,
        r: &Reference,
        page_size: Option<u32>,
    ) -> Result<Vec<String>, RegistryError> {
        let name_only = Reference {
            tag: None,
            digest: None,
            ..r.clone()
        };
        let protocol = |what: String| RegistryError::Protocol {
            registry: r.registry.clone(),
            what,
        };
        let first = format!("/v2/{}/tags/list", r.repository);
        let mut target = match page_size {
            Some(n) => with_query(&first, "n", &n.to_string()),
            None => first.clone(),
        };
        let mut tags = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..MAX_TAG_PAGES {
            let req = Req::new(Method::GET, target.clone()).header("Accept", "application/json");
            let resp = self.retrying(|| self.send(r, &pull_scopes(r), &req))?;
            if resp.status() != StatusCode::OK {
                return Err(self.refused(&name_only, "list tags of", resp));
            }
            let link = resp
                .headers()
                .get_all(http::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link)
                .map(str::to_owned);
            let bytes = resp
                .into_body()
                .with_config()
                .limit(MAX_TAG_PAGE)
                .read_to_vec()
                .map_err(|e| {
                    protocol(format!(
                        "tag list unreadable or over {MAX_TAG_PAGE} bytes: {e}"
                    ))
                })?;
            let page = parse_tag_list(&bytes).map_err(|source| RegistryError::TagList {
                registry: r.registry.clone(),
                source,
            })?;
            let full = page_size.is_some_and(|n| page.len() >= n as usize);
            let last = page.last().cloned();
            let mut added = false;
            for t in page {
                if seen.insert(t.clone()) {
                    tags.push(t);
                    added = true;
                }
            }
            if tags.len() > MAX_TAGS {
                return Err(protocol(format!("the tag list is over {MAX_TAGS} tags")));
            }
            if !added {
                // A page that adds nothing (a link back to itself, a `last` ignored) ends it.
                return Ok(tags);
            }
            target = match (link, page_size, last) {
                (Some(l), _, _) => {
                    let base = self.base_url(r)?;
                    resolve_link(&base, &target, &l).ok_or_else(|| {
                        protocol(format!(
                            "the tag list's next page {l:?} is off the registry"
                        ))
                    })?
                }
                (None, Some(n), Some(last)) if full => {
                    with_query(&with_query(&first, "n", &n.to_string()), "last", &last)
                }
                _ => return Ok(tags),
            };
        }
        Err(protocol(format!(
            "the tag list is over {MAX_TAG_PAGES} pages"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_parse_in_the_registrys_order() {
        assert_eq!(
            parse_tag_list(br#"{"name":"multi","tags":["b","c","a"]}"#).unwrap(),
            ["b", "c", "a"]
        );
        assert!(parse_tag_list(br#"{"name":"empty","tags":null}"#)
            .unwrap()
            .is_empty());
        assert!(parse_tag_list(br#"{"name":"x"}"#).unwrap().is_empty());
        assert!(matches!(
            parse_tag_list(br#"{"tags":["ok","../etc"]}"#),
            Err(TagListError::BadTag { tag }) if tag == "../etc"
        ));
        assert!(matches!(
            parse_tag_list(br#"{"tags":"a"}"#),
            Err(TagListError::NotJson(_))
        ));
        assert!(matches!(
            parse_tag_list(b"<html>"),
            Err(TagListError::NotJson(_))
        ));
    }

    #[test]
    fn the_next_link_is_found_among_others() {
        assert_eq!(
            next_link(r#"</v2/x/tags/list?last=b&n=2>; rel="next""#),
            Some("/v2/x/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_link(r#"<https://r/a>; rel="prev", <https://r/b>; title="x, y"; rel=next"#),
            Some("https://r/b")
        );
        assert_eq!(
            next_link(r#"<a>; rel="prev next""#),
            Some("a"),
            "rel may list several relations"
        );
        assert_eq!(next_link(r#"<a>; rel="prev""#), None);
        assert_eq!(next_link("</v2/x>"), None);
        assert_eq!(next_link("garbage"), None);
        assert_eq!(next_link("<unterminated; rel=next"), None);
        assert_eq!(next_link(""), None);
    }

    #[test]
    fn links_resolve_on_the_registry_only() {
        let base = "http://127.0.0.1:5000";
        let cur = "/v2/a/b/tags/list?n=2";
        assert_eq!(
            resolve_link(base, cur, "/v2/a/b/tags/list?last=x").as_deref(),
            Some("/v2/a/b/tags/list?last=x")
        );
        assert_eq!(
            resolve_link(base, cur, "http://127.0.0.1:5000/v2/a/b/tags/list?last=x").as_deref(),
            Some("/v2/a/b/tags/list?last=x")
        );
        assert_eq!(
            resolve_link(base, cur, "list?last=x").as_deref(),
            Some("/v2/a/b/tags/list?last=x")
        );
        assert_eq!(
            resolve_link(base, cur, "?last=x").as_deref(),
            Some("/v2/a/b/tags/list?last=x")
        );
        assert_eq!(resolve_link(base, cur, "http://127.0.0.1:50001/v2/x"), None);
        assert_eq!(resolve_link(base, cur, "https://evil/v2/x"), None);
        assert_eq!(resolve_link(base, cur, "//evil/v2/x"), None);
    }

    proptest::proptest! {
        /// A next link after another link, behind parameters whose quoted values hold commas
        /// and semicolons, is found.
        #[test]
        fn the_next_link_is_found_behind_other_links_and_parameters(
            other in "[a-z/?&=.:]{0,12}",
            target in "[a-z/?&=.:]{0,20}",
            params in proptest::collection::vec(("[a-z]{1,5}", "[a-z ,;]{0,8}"), 0..3),
            quoted in proptest::bool::ANY,
        ) {
            let params: String = params.iter().map(|(k, v)| format!("{k}=\"{v}\"; ")).collect();
            let rel = if quoted { "\"next\"" } else { "next" };
            let value = format!("<{other}>; rel=\"prev\"; title=\"a, b\", <{target}>; {params}rel={rel}");
            proptest::prop_assert_eq!(next_link(&value), Some(target.as_str()));
        }

        /// Whatever a registry sends as `Link`: no panic, a found target is one that stood
        /// between `<` and `>`, and where it leads is a path on the registry.
        #[test]
        fn any_link_header_reads_without_panicking(value in "[<>;,=\" a-z/?&:.\u{e9}\t]{0,60}") {
            if let Some(t) = next_link(&value) {
                let bracketed = format!("<{t}>");
                proptest::prop_assert!(value.contains(&bracketed));
                if let Some(r) = resolve_link("http://h:1", "/v2/a/tags/list?n=1", t) {
                    proptest::prop_assert!(r.starts_with('/'));
                }
            }
        }
    }
}
