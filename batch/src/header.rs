//! The header row: which column holds the time, the domain and the bytes.

use crate::fields::unquote;
use crate::scan::{Columns, split_all};

/// The column names to look for (`--time-column` and friends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnNames {
    /// Name of the time column.
    pub time: String,
    /// Name of the domain column.
    pub domain: String,
    /// Name of the bytes column.
    pub bytes: String,
    /// Name of the optional scheme column.
    pub scheme: String,
    /// Name of the optional origin status column.
    pub status: String,
    /// Name of the optional cache status column.
    pub cache: String,
}

impl Default for ColumnNames {
    fn default() -> Self {
        ColumnNames {
            time: "time".into(),
            domain: "domain".into(),
            bytes: "bytes".into(),
            scheme: "scheme".into(),
            status: "status".into(),
            cache: "cache_status".into(),
        }
    }
}

/// Why a header cannot be used: every line of its file is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A required column is not there.
    #[error("no column {0:?}")]
    Missing(String),
    /// A required column is there twice: which one holds the value is anyone's guess.
    #[error("column {0:?} appears twice")]
    Duplicate(String),
}

impl HeaderError {
    /// The reject reason every line of such a file gets.
    pub fn reason(&self) -> crate::rejects::Reason {
        match self {
            HeaderError::Missing(_) => crate::rejects::Reason::MissingColumn,
            HeaderError::Duplicate(_) => crate::rejects::Reason::DuplicateColumn,
        }
    }
}

/// Finds the wanted columns in a header line (BOM, quotes, blanks and case ignored).
/// Errs on the first required column missing or repeated.
pub fn parse(line: &[u8], names: &ColumnNames) -> Result<Columns, HeaderError> {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let fields: Vec<String> = split_all(line)
        .into_iter()
        .map(|f| {
            String::from_utf8_lossy(&unquote(f))
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    let find = |name: &str| {
        let want = name.trim().to_ascii_lowercase();
        let mut at = fields.iter().enumerate().filter(|(_, f)| **f == want);
        match (at.next(), at.next()) {
            (Some((i, _)), None) => Ok(i),
            (Some(_), Some(_)) => Err(HeaderError::Duplicate(name.to_owned())),
            (None, _) => Err(HeaderError::Missing(name.to_owned())),
        }
    };
    let optional = |name: &str| match find(name) {
        Ok(i) => Ok(Some(i)),
        Err(HeaderError::Missing(_)) => Ok(None),
        Err(e) => Err(e),
    };
    Ok(Columns {
        time: find(&names.time)?,
        domain: find(&names.domain)?,
        bytes: find(&names.bytes)?,
        scheme: optional(&names.scheme)?,
        status: optional(&names.status)?,
        cache: optional(&names.cache)?,
        count: fields.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_layout_is_found() {
        let h =
            b"time,domain,origin_ip,method,uri,status,bytes,duration_ms,cache_status,request_id\r";
        assert_eq!(
            parse(h, &ColumnNames::default()),
            Ok(Columns {
                time: 0,
                domain: 1,
                bytes: 6,
                scheme: None,
                status: Some(5),
                cache: Some(8),
                count: 10
            })
        );
    }

    #[test]
    fn names_match_loosely_and_a_missing_one_is_named() {
        let h = b"\xEF\xBB\xBF\"Bytes\", Domain ,TIME";
        assert_eq!(
            parse(h, &ColumnNames::default()),
            Ok(Columns {
                time: 2,
                domain: 1,
                bytes: 0,
                scheme: None,
                status: None,
                cache: None,
                count: 3
            })
        );
        assert_eq!(
            parse(b"time,domain", &ColumnNames::default()),
            Err(HeaderError::Missing("bytes".to_owned()))
        );
        assert_eq!(
            parse(b"time,bytes,domain,BYTES", &ColumnNames::default()),
            Err(HeaderError::Duplicate("bytes".to_owned()))
        );
        // Columns we do not read may repeat.
        assert!(parse(b"time,domain,bytes,x,x", &ColumnNames::default()).is_ok());
        let renamed = ColumnNames {
            bytes: "body_bytes_sent".into(),
            ..ColumnNames::default()
        };
        assert!(parse(b"time,domain,body_bytes_sent", &renamed).is_ok());
    }
}
