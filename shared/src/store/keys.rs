//! Where each kind of object lives in a store.

use crate::domain::DomainName;
use crate::time::Day;

/// The key of the ingest watermark.
pub const WATERMARK: &str = "meta/watermark";
/// The prefix of every minute bucket.
pub const BUCKETS: &str = "buckets/";
/// The prefix of every segment: `segments/YYYY-MM-DD/<run>.seg`.
pub const SEGMENTS: &str = "segments/";

/// The key of a segment: `segments/<day>/<id>.seg`, `id` a run id or a merge's `m-` id.
pub fn segment(day: &str, id: &str) -> String {
    format!("{SEGMENTS}{day}/{id}.seg")
}

/// The day and id of a segment key.
pub fn parse_segment(key: &str) -> Option<(Day, &str)> {
    let (day, file) = key.strip_prefix(SEGMENTS)?.split_once('/')?;
    Some((Day::parse(day)?, file.strip_suffix(".seg")?))
}

/// Longest domain kept whole in a bucket's name. File systems allow 255 bytes a name, and the
/// local store's temporary files add about 30 to it; a valid domain may have 253.
pub const LONGEST_PLAIN_NAME: usize = 200;
/// How much of a longer domain its bucket's name keeps, for people listing a store.
const LONG_NAME_PREFIX: usize = 100;

/// The key of one (domain, day) bucket: `buckets/YYYY-MM-DD/<domain>.bkt`, or for a domain
/// longer than [`LONGEST_PLAIN_NAME`], `buckets/YYYY-MM-DD/<its first 100 bytes>.<XXH3-128 of
/// it, hex>.lbkt` (the bucket itself holds the whole name, and readers check it).
pub fn bucket(day: Day, domain: &DomainName) -> String {
    let name = domain.as_str();
    if name.len() <= LONGEST_PLAIN_NAME {
        return format!("{BUCKETS}{day}/{name}.bkt");
    }
    // A valid name is ASCII, so any byte index is a char boundary.
    let prefix = name[..LONG_NAME_PREFIX].trim_end_matches(['.', '-']);
    let hash = xxhash_rust::xxh3::xxh3_128(name.as_bytes());
    format!("{BUCKETS}{day}/{prefix}.{hash:032x}.lbkt")
}

/// The day of a bucket key, and its domain when the key holds it whole (long names do not:
/// read the bucket for those).
pub fn parse_bucket(key: &str) -> Option<(Day, Option<DomainName>)> {
    let rest = key.strip_prefix(BUCKETS)?;
    let (day, file) = rest.split_once('/')?;
    let day = Day::parse(day)?;
    if file.ends_with(".lbkt") {
        return Some((day, None));
    }
    let domain = file.strip_suffix(".bkt")?;
    let d = DomainName::parse(domain).filter(|d| d.as_str() == domain)?;
    Some((day, Some(d)))
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
        assert_eq!(parse_bucket(&k), Some((day, Some(d))));
    }

    #[test]
    fn every_valid_domain_has_a_key_that_fits_a_file_name() {
        let day = Day::parse("2019-12-10").unwrap();
        let label = "a".repeat(63);
        for len in [200, 201, 240, 252, 253] {
            let mut name = [label.as_str(); 4].join(".");
            name.truncate(len);
            let name = name.trim_end_matches('.').to_owned();
            let d = DomainName::parse(&name).unwrap();
            let k = bucket(day, &d);
            assert!(is_valid(&k), "{k}");
            let file = k.rsplit('/').next().unwrap();
            assert!(file.len() + 40 <= 255, "{len}: {file}");
            let (kday, kd) = parse_bucket(&k).unwrap();
            assert_eq!(kday, day);
            assert_eq!(kd.is_some(), name.len() <= LONGEST_PLAIN_NAME);
        }
        // Two long names that share their first 100 bytes still get their own keys.
        let a = DomainName::parse(&format!("{label}.{label}.{label}.a")).unwrap();
        let b = DomainName::parse(&format!("{label}.{label}.{label}.b")).unwrap();
        assert_ne!(bucket(day, &a), bucket(day, &b));
    }

    #[test]
    fn segment_keys_round_trip() {
        let k = segment("2019-12-10", "m-0123");
        assert_eq!(k, "segments/2019-12-10/m-0123.seg");
        assert_eq!(
            parse_segment(&k),
            Some((Day::parse("2019-12-10").unwrap(), "m-0123"))
        );
        assert_eq!(parse_segment("buckets/2019-12-10/a.bkt"), None);
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
