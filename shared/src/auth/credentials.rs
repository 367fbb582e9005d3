//! The credentials file: each AccessKeyId's secret and the domains it may query.
//!
//! ```json
//! {"keys": [
//!   {"access_key_id": "LTAI...", "access_key_secret": "...", "domains": ["example.com", "*.example.org"]},
//!   {"access_key_id": "ops", "access_key_secret": "...", "domains": ["*"]}
//! ]}
//! ```

use crate::domain::{DomainName, is_valid_host};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;

/// A secret: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which domains a key may ask about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    /// Exactly this name.
    Exact(DomainName),
    /// Any name below this one (`*.example.com`: `a.example.com`, `a.b.example.com`).
    Below(String),
    /// Every domain (`*`): an operator key.
    Any,
}

impl DomainPattern {
    /// Parses `name`, `*.name` or `*`.
    pub fn parse(s: &str) -> Option<DomainPattern> {
        let s = s.trim();
        if s == "*" {
            return Some(DomainPattern::Any);
        }
        if let Some(base) = s.strip_prefix("*.") {
            let base = base.trim_end_matches('.').to_ascii_lowercase();
            return is_valid_host(base.as_bytes())
                .then(|| DomainPattern::Below(format!(".{base}")));
        }
        DomainName::parse(s).map(DomainPattern::Exact)
    }

    /// Whether `d` is covered.
    pub fn matches(&self, d: &DomainName) -> bool {
        match self {
            DomainPattern::Exact(e) => e == d,
            DomainPattern::Below(suffix) => d.as_str().ends_with(suffix.as_str()),
            DomainPattern::Any => true,
        }
    }
}

/// One access key.
#[derive(Debug, Clone)]
pub struct Key {
    /// Its secret.
    pub secret: Secret,
    /// What it may query.
    pub domains: Vec<DomainPattern>,
}

impl Key {
    /// Whether every one of `domains` is this key's to ask about.
    pub fn allows_all<'a>(&self, domains: impl IntoIterator<Item = &'a DomainName>) -> bool {
        domains
            .into_iter()
            .all(|d| self.domains.iter().any(|p| p.matches(d)))
    }
}

/// All keys, by AccessKeyId.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    keys: HashMap<String, Key>,
}

/// Why a credentials file cannot be used. Never contains a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    /// Not the documented JSON.
    #[error("credentials are not valid JSON of the documented shape: {0}")]
    Json(String),
    /// An entry is unusable.
    #[error("credentials key {key:?}: {problem}")]
    Key {
        /// The AccessKeyId (or its position).
        key: String,
        /// What is wrong.
        problem: String,
    },
}

#[derive(Deserialize)]
struct File {
    keys: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    access_key_id: String,
    access_key_secret: String,
    domains: Vec<String>,
}

impl Credentials {
    /// Parses and checks the file's JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Credentials, CredentialsError> {
        let file: File =
            serde_json::from_slice(bytes).map_err(|e| CredentialsError::Json(e.to_string()))?;
        let mut keys = HashMap::new();
        for (i, e) in file.keys.into_iter().enumerate() {
            let bad = |problem: &str| CredentialsError::Key {
                key: if e.access_key_id.is_empty() {
                    format!("#{i}")
                } else {
                    e.access_key_id.clone()
                },
                problem: problem.to_owned(),
            };
            if e.access_key_id.trim().is_empty() || e.access_key_id.contains([',', ' ']) {
                return Err(bad("access_key_id must be a non-empty token"));
            }
            if e.access_key_secret.is_empty() {
                return Err(bad("access_key_secret is empty"));
            }
            let mut domains = Vec::with_capacity(e.domains.len());
            for d in &e.domains {
                domains.push(
                    DomainPattern::parse(d)
                        .ok_or_else(|| bad(&format!("{d:?} is not a domain, *.domain or *")))?,
                );
            }
            if domains.is_empty() {
                return Err(bad("domains is empty"));
            }
            let key = Key {
                secret: Secret::new(e.access_key_secret.clone()),
                domains,
            };
            if keys.insert(e.access_key_id.clone(), key).is_some() {
                return Err(bad("listed twice"));
            }
        }
        Ok(Credentials { keys })
    }

    /// Looks a key up.
    pub fn get(&self, key_id: &str) -> Option<&Key> {
        self.keys.get(key_id)
    }

    /// Looks a key up, with the stored copy of its id.
    pub fn entry(&self, key_id: &str) -> Option<(&str, &Key)> {
        self.keys
            .get_key_value(key_id)
            .map(|(k, v)| (k.as_str(), v))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_cover_what_they_say() {
        let d = |s: &str| DomainName::parse(s).unwrap();
        let below = DomainPattern::parse("*.Example.org").unwrap();
        assert!(below.matches(&d("a.example.org")) && below.matches(&d("a.b.example.org")));
        assert!(!below.matches(&d("example.org")) && !below.matches(&d("badexample.org")));
        assert!(
            DomainPattern::parse("*")
                .unwrap()
                .matches(&d("anything.com"))
        );
        assert!(DomainPattern::parse("*.*.com").is_none() && DomainPattern::parse("a b").is_none());
    }

    #[test]
    fn a_bad_file_names_the_key_but_never_the_secret() {
        let e = Credentials::from_json(br#"{"keys":[{"access_key_id":"k1","access_key_secret":"hunter2","domains":["bad domain"]}]}"#)
            .unwrap_err();
        assert!(
            e.to_string().contains("k1") && !e.to_string().contains("hunter2"),
            "{e}"
        );
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
        assert!(Credentials::from_json(b"{}").is_err());
    }
}
