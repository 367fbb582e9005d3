//! Bad lines: counted by reason, the first few kept as samples, all of them kept for
//! `--rejects FILE` when asked. Where a line was found is kept as a line number when the reader
//! knows it (gzip streams are read in order) or as a byte offset (plain files are read in
//! parallel chunks), which [`crate::report`] turns into a line number at the end.

use std::fmt;

/// Why a line (or a whole file) was not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The time field is in none of the accepted formats.
    BadTime,
    /// The domain field is not a valid host name.
    BadDomain,
    /// The bytes field is not a non-negative integer or `-`.
    BadBytes,
    /// The record has more or fewer fields than the header.
    FieldCount,
    /// The domain field is not UTF-8.
    NotUtf8,
    /// The file's header lacks a required column: every line of it is rejected.
    MissingColumn,
    /// The file's header has a required column twice: every line of it is rejected.
    DuplicateColumn,
    /// The time is after the data clock's now (plus a small tolerance).
    Future,
    /// Adding the line's bytes would take its minute's total past 2^64 - 1.
    TotalOverflow,
    /// The record is longer than `--max-line-bytes`; it is skipped without being held.
    LineTooLong,
    /// A quote opened and never closed: the record runs to the end of the input, and every
    /// physical line it swallowed is rejected.
    UnclosedQuote,
    /// A line that does not match its format (an nginx `log_format`, a W3C line with too few
    /// fields, a CDN log line without its fields, no `#Fields:` directive before it).
    FormatMismatch,
    /// A JSON line that does not parse as one JSON object, or lacks a field it needs.
    BadJson,
}

impl Reason {
    /// Every reason, in report order.
    pub const ALL: [Reason; 13] = [
        Reason::BadTime,
        Reason::BadDomain,
        Reason::BadBytes,
        Reason::FieldCount,
        Reason::NotUtf8,
        Reason::MissingColumn,
        Reason::DuplicateColumn,
        Reason::Future,
        Reason::TotalOverflow,
        Reason::LineTooLong,
        Reason::UnclosedQuote,
        Reason::FormatMismatch,
        Reason::BadJson,
    ];

    /// A short name for summaries and the rejects file.
    pub fn name(self) -> &'static str {
        match self {
            Reason::BadTime => "bad_time",
            Reason::BadDomain => "bad_domain",
            Reason::BadBytes => "bad_bytes",
            Reason::FieldCount => "field_count",
            Reason::NotUtf8 => "not_utf8",
            Reason::MissingColumn => "missing_column",
            Reason::DuplicateColumn => "duplicate_column",
            Reason::Future => "future",
            Reason::TotalOverflow => "total_overflow",
            Reason::LineTooLong => "line_too_long",
            Reason::UnclosedQuote => "unclosed_quote",
            Reason::FormatMismatch => "format_mismatch",
            Reason::BadJson => "bad_json",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where in its file a rejected line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Position {
    /// A 1-based line number.
    Line(u64),
    /// A byte offset of the record's start, to be turned into a line number.
    Offset(u64),
}

/// One rejected line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Index of the input file.
    pub file: u32,
    /// Where in the file.
    pub at: Position,
    /// Why.
    pub reason: Reason,
    /// The line, lossily decoded and cut to [`TEXT_LIMIT`] bytes.
    pub text: String,
}

/// How much of a rejected line is kept.
pub const TEXT_LIMIT: usize = 300;
/// How many samples a summary shows.
pub const SAMPLES: usize = 10;
/// Most rejected lines kept in memory for `--rejects`; past it they are only counted.
pub const KEEP_LIMIT: usize = 1_000_000;

/// Counts and kept rejects of one worker.
#[derive(Debug, Default, Clone)]
pub struct Rejects {
    /// Count per reason, indexed by [`Reason::index`].
    pub counts: [u64; Reason::ALL.len()],
    /// Kept rejects: the first [`SAMPLES`], or up to [`KEEP_LIMIT`] with `keep_all`.
    pub kept: Vec<Reject>,
    /// Rejected lines that were counted but not kept although `keep_all` asked for them.
    pub not_kept: u64,
    /// Whether to keep every reject (for `--rejects`).
    pub keep_all: bool,
}

impl Rejects {
    /// Empty, keeping every reject or only samples.
    pub fn new(keep_all: bool) -> Rejects {
        Rejects {
            keep_all,
            ..Rejects::default()
        }
    }

    /// Counts one reject and keeps it if there is room.
    pub fn add(&mut self, file: u32, at: Position, reason: Reason, raw: &[u8]) {
        self.counts[reason.index()] += 1;
        let make = || Reject {
            file,
            at,
            reason,
            text: String::from_utf8_lossy(&raw[..raw.len().min(TEXT_LIMIT)]).into_owned(),
        };
        let limit = if self.keep_all { KEEP_LIMIT } else { SAMPLES };
        if self.kept.len() < limit {
            self.kept.push(make());
        } else if self.keep_all {
            self.not_kept += 1;
        } else if let Some(latest) = self.kept.iter_mut().max_by_key(|r| (r.file, r.at))
            && (file, at) < (latest.file, latest.at)
        {
            // Workers take chunks in any order: keep the earliest samples, not the first seen.
            *latest = make();
        }
    }

    /// Counts many rejects of one reason without keeping them (a file with a missing column).
    pub fn add_uncounted_lines(&mut self, reason: Reason, n: u64) {
        self.counts[reason.index()] += n;
    }

    /// All rejected lines.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Folds another worker's rejects in.
    pub fn merge(&mut self, other: Rejects) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.not_kept += other.not_kept;
        self.kept.extend(other.kept);
        let limit = if self.keep_all { KEEP_LIMIT } else { SAMPLES };
        if self.kept.len() > limit {
            self.kept.sort_by_key(|r| (r.file, r.at));
            self.not_kept += if self.keep_all {
                (self.kept.len() - limit) as u64
            } else {
                0
            };
            self.kept.truncate(limit);
        }
    }
}
