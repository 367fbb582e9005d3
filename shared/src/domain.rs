//! Host names, as the API's `DomainName` parameter and the logs' `domain` column carry them.

use crate::api::error::ApiError;
use std::fmt;

/// Most names one real-time request may ask for.
pub const MAX_DOMAINS: usize = 100;
/// Most names one request of the non-real-time actions may ask for.
pub const MAX_DOMAINS_WIDE: usize = 500;

/// A valid, normalised host name: lower case, no trailing dot, letters, digits, hyphens and
/// dots only, labels of 1 to 63 bytes that neither start nor end with a hyphen, 253 bytes at most.
///
/// Being valid makes it safe as a path segment and an object key part.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainName(String);

impl DomainName {
    /// Trims, lower-cases and drops one trailing dot, then checks the host-name rules.
    pub fn parse(raw: &str) -> Option<DomainName> {
        let t = raw.trim();
        let t = t.strip_suffix('.').unwrap_or(t);
        if is_valid_host(t.as_bytes()) {
            Some(DomainName(t.to_ascii_lowercase()))
        } else {
            None
        }
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a name that is already trimmed and has no trailing dot. Case is not looked at.
pub fn is_valid_host(b: &[u8]) -> bool {
    if b.is_empty() || b.len() > 253 {
        return false;
    }
    b.split(|&c| c == b'.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label[0] != b'-'
            && label[label.len() - 1] != b'-'
            && label
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    })
}

/// The `DomainName` parameter: 1 to [`MAX_DOMAINS`] (or another limit) distinct valid names, in
/// first-seen order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainList(Vec<DomainName>);

impl DomainList {
    /// Parses a comma-separated list. Empty means missing; any bad entry (an empty one too)
    /// makes the whole list malformed; more than 100 distinct names is over the limit.
    pub fn parse(raw: &str) -> Result<DomainList, ApiError> {
        DomainList::parse_at_most(raw, MAX_DOMAINS)
    }

    /// [`DomainList::parse`] with another limit on distinct names.
    pub fn parse_at_most(raw: &str, limit: usize) -> Result<DomainList, ApiError> {
        if raw.trim().is_empty() {
            return Err(ApiError::MissingParameter("DomainName"));
        }
        let mut names: Vec<DomainName> = Vec::new();
        for piece in raw.split(',') {
            let name = DomainName::parse(piece).ok_or(ApiError::DomainNameMalformed)?;
            if !names.contains(&name) {
                if names.len() == limit {
                    return Err(ApiError::DomainNameOverLimit(limit));
                }
                names.push(name);
            }
        }
        Ok(DomainList(names))
    }

    /// The names, never empty.
    pub fn names(&self) -> &[DomainName] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_trimmed_lower_cased_and_lose_a_trailing_dot() {
        assert_eq!(
            DomainName::parse(" Example.COM. ").unwrap().as_str(),
            "example.com"
        );
    }

    #[test]
    fn bad_host_names_are_rejected() {
        for s in [
            "",
            ".",
            "a..b",
            "-a.com",
            "a-.com",
            "a_b.com",
            "a b.com",
            "exämple.com",
            "a.com..",
            &"a".repeat(64),
            &format!("{}.com", "a.".repeat(130)),
        ] {
            assert!(DomainName::parse(s).is_none(), "{s:?}");
        }
        assert!(DomainName::parse(&"a".repeat(63)).is_some());
    }

    #[test]
    fn duplicates_count_once_and_order_is_kept() {
        let l = DomainList::parse("b.com,A.com,a.com.,b.com").unwrap();
        let names: Vec<_> = l.names().iter().map(|d| d.as_str()).collect();
        assert_eq!(names, ["b.com", "a.com"]);
    }

    #[test]
    fn an_empty_list_is_missing_and_an_empty_entry_is_malformed() {
        assert_eq!(
            DomainList::parse(" "),
            Err(ApiError::MissingParameter("DomainName"))
        );
        assert_eq!(
            DomainList::parse("a.com,,b.com"),
            Err(ApiError::DomainNameMalformed)
        );
    }

    #[test]
    fn a_hundred_names_pass_and_a_hundred_and_one_are_over_the_limit() {
        let list = |n: usize| {
            (0..n)
                .map(|i| format!("d{i}.com"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(DomainList::parse(&list(100)).unwrap().names().len(), 100);
        assert_eq!(
            DomainList::parse(&list(101)),
            Err(ApiError::DomainNameOverLimit(100))
        );
        assert_eq!(
            DomainList::parse_at_most(&list(500), MAX_DOMAINS_WIDE)
                .unwrap()
                .names()
                .len(),
            500
        );
        assert_eq!(
            DomainList::parse_at_most(&list(501), MAX_DOMAINS_WIDE),
            Err(ApiError::DomainNameOverLimit(500))
        );
    }

    proptest! {
        #[test]
        fn any_input_parses_or_errs_without_panicking(s in any::<String>()) {
            if let Ok(l) = DomainList::parse(&s) {
                prop_assert!(!l.names().is_empty() && l.names().len() <= MAX_DOMAINS);
                for n in l.names() {
                    prop_assert_eq!(DomainName::parse(n.as_str()), Some(n.clone()));
                }
            }
        }
    }
}
