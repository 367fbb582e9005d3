//! Where each kind of object lives in a store.

use crate::domain::DomainName;
use crate::time::Day;

/// The key of the ingest watermark.
pub const WATERMARK: &str = "meta/watermark";
/// The prefix of every minute bucket.
pub const BUCKETS: &str = "buckets/";

/// The key of one (domain, day) bucket: `buckets/YYYY-MM-DD/<domain>.bkt`.
pub fn bucket(day: Day, domain: &DomainName) -> String {
    format!("{BUCKETS}{day}/{domain}.bkt")
}

/// Reads a bucket key back into its day and domain.
pub fn parse_bucket(key: &str) -> Option<(Day, DomainName)> {
    let rest = key.strip_prefix(BUCKETS)?;
    let (day, file) = rest.split_once('/')?;
    let domain = file.strip_suffix(".bkt")?;
    let d = DomainName::parse(domain).filter(|d| d.as_str() == domain)?;
    Some((Day::parse(day)?, d))
}

/// Whether a key keeps to the layout's alphabet: non-empty segments of `[A-Za-z0-9._-]` that do
/// not start with a dot (so no `..`, and temporary files stay out of listings).
pub fn is_valid(key: &str) -> bool {
    !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_round_trip() {
        let d = DomainName::parse("cdn.example.com").unwrap();
        let day = Day::parse("2019-12-10").unwrap();
        let k = bucket(day, &d);
        assert_eq!(k, "buckets/2019-12-10/cdn.example.com.bkt");
        assert!(is_valid(&k));
        assert_eq!(parse_bucket(&k), Some((day, d)));
    }

    #[test]
    fn keys_cannot_climb_out_or_hide() {
        for k in [
            "", "a//b", "../x", "a/../b", ".tmp", "a/.x", "a b", "a\\b", "/a",
        ] {
            assert!(!is_valid(k), "{k:?}");
        }
    }
}
