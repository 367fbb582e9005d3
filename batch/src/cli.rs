//! The command line, per SPEC.md section 6.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Replays raw origin-fetch logs into per-minute byte totals.
#[derive(Debug, Parser)]
#[command(name = "srctraffic-batch", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fold log files into the store, exactly once per file.
    Aggregate(Box<AggregateArgs>),
    /// Write realistic synthetic logs and their ground truth.
    GenLogs {
        /// Directory to write into.
        #[arg(long)]
        out: PathBuf,
        /// Number of domains.
        #[arg(long, default_value_t = 1000)]
        domains: usize,
        /// Number of log lines.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// The UTC day, YYYY-MM-DD.
        #[arg(long)]
        day: String,
        /// Compress each file with gzip.
        #[arg(long)]
        gzip: bool,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of deliberately bad lines (not in the ground truth).
        #[arg(long, default_value_t = 0.0)]
        bad_ratio: f64,
        /// Number of files (hours of the day).
        #[arg(long, default_value_t = 24)]
        files: usize,
        /// Where to write the ground truth (default: OUT.truth.csv beside OUT).
        #[arg(long)]
        truth: Option<PathBuf>,
        /// The log format: csv, cloudfront, alibaba, cloudflare, jsonl (keys ts, host, bytes,
        /// scheme, status) or nginx (its log_format is printed).
        #[arg(long, value_enum, default_value_t = crate::formats::Format::Csv)]
        format: crate::formats::Format,
        /// CSV: add a `scheme` column (about 70% https), for the HTTPS share of the sibling
        /// actions. Off by default, so the benchmark files keep BENCH.md's columns.
        #[arg(long)]
        scheme_column: bool,
    },
    /// Print one (domain, day) as CSV: minute,bytes,requests.
    Inspect {
        /// The store.
        #[arg(long, env = "SRCTRAFFIC_STORE", default_value = "./data")]
        store: String,
        /// The domain.
        #[arg(long)]
        domain: String,
        /// The UTC day, YYYY-MM-DD.
        #[arg(long)]
        day: String,
        /// Only minutes with traffic.
        #[arg(long)]
        nonzero: bool,
    },
    /// Print every minute with traffic as CSV: domain,minute,bytes.
    Export {
        /// The store.
        #[arg(long, env = "SRCTRAFFIC_STORE", default_value = "./data")]
        store: String,
    },
    /// Fold every published segment into the base buckets now (runs do this on their own
    /// once a day has enough segments pending).
    Compact {
        /// The store.
        #[arg(long, env = "SRCTRAFFIC_STORE", default_value = "./data")]
        store: String,
        /// Seconds another compaction may go silent before its days are taken over.
        #[arg(long, default_value_t = 120)]
        lease: u64,
    },
    /// Remove days older than the retention window.
    Prune {
        /// The store.
        #[arg(long, env = "SRCTRAFFIC_STORE", default_value = "./data")]
        store: String,
        /// A fixed data clock (yyyy-MM-ddTHH:mm:ssZ).
        #[arg(long, env = "SRCTRAFFIC_NOW")]
        now: Option<String>,
    },
}

/// The flags of `aggregate`.
#[derive(Debug, clap::Args)]
pub struct AggregateArgs {
    /// The store: a directory, file:///abs/path, or s3://bucket/prefix.
    #[arg(long, env = "SRCTRAFFIC_STORE", default_value = "./data")]
    pub store: String,
    /// A fixed data clock (yyyy-MM-ddTHH:mm:ssZ) for the retention window.
    #[arg(long, env = "SRCTRAFFIC_NOW")]
    pub now: Option<String>,
    /// Write every rejected line to this CSV file.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Largest share of rejected lines that still commits (0.01 is 1%).
    #[arg(long, default_value_t = 0.01)]
    pub max_bad_ratio: f64,
    /// Name of the time column.
    #[arg(long, default_value = "time")]
    pub time_column: String,
    /// Name of the domain column.
    #[arg(long, default_value = "domain")]
    pub domain_column: String,
    /// Name of the bytes column.
    #[arg(long, default_value = "bytes")]
    pub bytes_column: String,
    /// Name of the optional scheme column (`https` lines add to the HTTPS bytes).
    #[arg(long, default_value = "scheme")]
    pub scheme_column: String,
    /// Name of the optional column of the origin's HTTP status (counts per code).
    #[arg(long, default_value = "status")]
    pub status_column: String,
    /// Name of the optional cache status column, read with --origin-statuses.
    #[arg(long, default_value = "cache_status")]
    pub cache_status_column: String,
    /// The log format and what each format needs.
    #[command(flatten)]
    pub format_flags: crate::lines::FormatFlags,
    /// Seconds a run may go silent before another run takes its inputs over.
    #[arg(long, default_value_t = 120)]
    pub lease: u64,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Longest record kept, in bytes; a longer one is rejected as line_too_long without
    /// being held in memory.
    #[arg(long, default_value_t = crate::read::MAX_LINE_BYTES as u64, value_parser = clap::value_parser!(u64).range(64..=1 << 30))]
    pub max_line_bytes: u64,
    /// Merge a day's segments once this many are pending on one level (queries read each
    /// pending segment of a day they cover); 1 folds every day into its base buckets at
    /// once.
    #[arg(long, default_value_t = crate::compact::COMPACT_AFTER, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    pub compact_after: usize,
    /// Keep running: every --interval seconds, commit the files that appeared or changed
    /// and have not been modified for --settle seconds. SIGINT or SIGTERM stops it.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: seconds between rounds.
    #[arg(long, default_value_t = 2.0, requires = "follow")]
    pub interval: f64,
    /// Leave out files modified less than this many seconds ago (still being written);
    /// default 1 with --follow, 0 otherwise.
    #[arg(long)]
    pub settle: Option<f64>,
    /// Rehash every input, even files committed before and unchanged since (size,
    /// modification time, inode), which are otherwise skipped without being read.
    #[arg(long)]
    pub verify: bool,
    /// Files, directories, or s3://bucket/prefix: with --format csv every *.csv and
    /// *.csv.gz below; otherwise every file (names starting with `.` left out).
    #[arg(required = true)]
    pub inputs: Vec<String>,
}
