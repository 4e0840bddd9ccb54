//! The Engine API's `filters` query parameter: a JSON object of key → values, in the current
//! form (`{"label":["a=b"]}`) or the old map form (`{"label":{"a=b":true}}`) that dockerd still
//! reads. Each endpoint names the keys it accepts; any other key is refused with dockerd's
//! message (400).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::error::ApiError;

/// Parsed filters: key → the set of values given for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    map: BTreeMap<String, BTreeSet<String>>,
}

impl Filters {
    /// Parses the parameter's JSON (an absent or empty parameter is no filter).
    ///
    /// # Errors
    /// `BadRequest` when it is not a JSON object of string lists or string → bool maps.
    pub fn parse(json: &str) -> Result<Filters, ApiError> {
        let mut f = Filters::default();
        if json.trim().is_empty() {
            return Ok(f);
        }
        let bad = |why: &str| ApiError::BadRequest(format!("invalid filter: {why}"));
        let v: Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
        let Value::Object(obj) = v else {
            return Err(bad("not a JSON object"));
        };
        for (k, v) in obj {
            let set = f.map.entry(k.clone()).or_default();
            match v {
                Value::Array(items) => {
                    for i in items {
                        let Value::String(s) = i else {
                            return Err(bad(&format!("the values of {k:?} must be strings")));
                        };
                        set.insert(s);
                    }
                }
                Value::Object(m) => {
                    for (s, b) in m {
                        match b {
                            Value::Bool(true) => {
                                set.insert(s);
                            }
                            Value::Bool(false) => {}
                            _ => {
                                return Err(bad(&format!(
                                    "the values of {k:?} must be strings or a map of string to true"
                                )))
                            }
                        }
                    }
                }
                _ => {
                    return Err(bad(&format!(
                        "the values of {k:?} must be a list of strings"
                    )))
                }
            }
        }
        Ok(f)
    }

    /// Refuses any key not in `accepted`, with dockerd's message.
    ///
    /// # Errors
    /// `BadRequest("invalid filter 'KEY'")`.
    pub fn validate(&self, accepted: &[&str]) -> Result<(), ApiError> {
        match self.map.keys().find(|k| !accepted.contains(&k.as_str())) {
            Some(k) => Err(ApiError::BadRequest(format!("invalid filter '{k}'"))),
            None => Ok(()),
        }
    }

    /// The values given for `key` (empty when absent).
    pub fn get(&self, key: &str) -> impl Iterator<Item = &str> {
        self.map.get(key).into_iter().flatten().map(String::as_str)
    }

    /// Whether `key` was given with at least one value.
    pub fn contains(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|s| !s.is_empty())
    }

    /// Whether `key` is absent, or one of its values equals `value`.
    pub fn exact_match(&self, key: &str, value: &str) -> bool {
        match self.map.get(key) {
            None => true,
            Some(s) if s.is_empty() => true,
            Some(s) => s.contains(value),
        }
    }

    /// Whether `key` is absent, or every one of its `k` / `k=v` values matches `labels`, as
    /// dockerd's `MatchKVList`.
    pub fn match_labels(&self, key: &str, labels: &BTreeMap<String, String>) -> bool {
        self.get(key).all(|want| match want.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
            None => labels.contains_key(want),
        })
    }

    /// Whether `key`'s single value is a boolean, as dockerd reads `dangling`.
    ///
    /// # Errors
    /// `BadRequest` when a value is not `true`/`1`/`false`/`0`.
    pub fn bool_value(&self, key: &str) -> Result<Option<bool>, ApiError> {
        let mut out = None;
        for v in self.get(key) {
            let b = match v.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(ApiError::BadRequest(format!("invalid filter '{key}={v}'"))),
            };
            if out.is_some_and(|o| o != b) {
                return Err(ApiError::BadRequest(format!(
                    "invalid filter '{key}': conflicting values"
                )));
            }
            out = Some(b);
        }
        Ok(out)
    }

    /// The filters in the current JSON form (`{"key":["value",...]}`), keys and values sorted.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.map).unwrap_or_else(|_| "{}".into())
    }

    /// Whether no filter was given.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse() {
        let a = Filters::parse(r#"{"label":["a=b","c"],"dangling":["true"]}"#).unwrap();
        let b =
            Filters::parse(r#"{"label":{"a=b":true,"c":true},"dangling":{"true":true}}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.bool_value("dangling").unwrap(), Some(true));
        let labels: BTreeMap<String, String> =
            [("a".into(), "b".into()), ("c".into(), "x".into())].into();
        assert!(a.match_labels("label", &labels));
        let labels: BTreeMap<String, String> = [("a".into(), "z".into())].into();
        assert!(!a.match_labels("label", &labels));
        assert!(Filters::parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_input_is_a_400() {
        for bad in [
            "[",
            "[]",
            r#"{"a":1}"#,
            r#"{"a":[1]}"#,
            r#"{"a":{"b":"x"}}"#,
        ] {
            let e = Filters::parse(bad).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST, "{bad}");
        }
        let f = Filters::parse(r#"{"bogus":["x"]}"#).unwrap();
        assert_eq!(
            f.validate(&["label"]).unwrap_err().to_string(),
            "invalid filter 'bogus'"
        );
        let f = Filters::parse(r#"{"dangling":["maybe"]}"#).unwrap();
        assert!(f.bool_value("dangling").is_err());
    }
}
