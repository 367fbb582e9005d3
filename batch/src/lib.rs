//! `srctraffic-batch`: replays raw origin-fetch logs into per-(domain, UTC minute) byte totals,
//! exactly once per input file.
//!
//! - [`scan`], [`fields`], [`header`]: CSV bytes to field values, without allocating per line;
//!   [`formats`]: the other log formats, a line at a time.
//! - [`aggregate`]: the per-worker totals ([`statuses`]: their counts per status code;
//!   [`spellings`]: the domain spellings met);
//!   [`read`]: parallel reading of files into them.
//! - [`rejects`]: bad lines, counted and kept; [`report`]: the summary.
//! - [`ledger`], [`commit`]: the exactly-once protocol over the store.
//! - [`aggregate_cmd`], [`genlogs`], [`ops`]: the subcommands; [`cli`]: their flags.

pub mod aggregate;
pub mod aggregate_cmd;
pub mod cli;
pub mod commit;
pub mod compact;
pub mod failpoint;
pub mod fields;
pub mod follow;
pub mod formats;
pub mod genformats;
pub mod genlogs;
pub mod header;
pub mod input;
pub mod lambda;
pub mod ledger;
pub mod lines;
pub mod ops;
pub mod read;
pub mod rejects;
pub mod report;
pub mod scan;
pub mod segments;
pub mod spellings;
pub mod statcache;
pub mod statuses;
