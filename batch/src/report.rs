//! The summary a run prints at the end.

use crate::rejects::Reason;
use std::fmt;
use std::time::Duration;

/// A file name or a rejected line as it may be shown on a terminal: control characters (an
/// escape sequence in a log line could rewrite the screen) are shown as `\u{..}` escapes.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// What one `aggregate` run did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Input files found.
    pub files: usize,
    /// Files this run read.
    pub read_files: usize,
    /// Files skipped because an earlier run counted them.
    pub already_committed: usize,
    /// Files committed before and unchanged since (by the stat cache): not read at all.
    pub unchanged: usize,
    /// Files left for a later run because they were modified a moment ago (`--follow`).
    pub unsettled: usize,
    /// Files skipped because another path in this run has the same content: (file, that path).
    pub same_content: Vec<(String, String)>,
    /// Files skipped because a live run is reading them: (file, run).
    pub busy: Vec<(String, String)>,
    /// Files that could not be read to the end: (file, error). Not committed.
    pub unreadable: Vec<(String, String)>,
    /// Files whose header lacks a required column or has one twice: (file, what is wrong).
    /// Every line rejected.
    pub missing_column: Vec<(String, String)>,
    /// Files with no bytes.
    pub empty_files: usize,
    /// Bytes of input read.
    pub input_bytes: u64,
    /// Physical lines read.
    pub lines: u64,
    /// Data records.
    pub records: u64,
    /// Records counted.
    pub accepted: u64,
    /// Records older than retention.
    pub expired: u64,
    /// Inputs read, by the format each was read as.
    pub formats: std::collections::BTreeMap<&'static str, usize>,
    /// Records of edge logs served from cache (not origin fetches): neither counted nor
    /// rejected.
    pub cached: u64,
    /// Sum of counted bytes.
    pub bytes_counted: u128,
    /// Rejected lines by reason.
    pub rejected: Vec<(Reason, u64)>,
    /// The first rejected lines: (file, line, reason, text).
    pub samples: Vec<(String, u64, Reason, String)>,
    /// Rejected lines not written to the rejects file (past its limit).
    pub rejects_not_written: u64,
    /// Distinct domains.
    pub domains: usize,
    /// Distinct days.
    pub days: usize,
    /// Shared objects written: the manifest and the base buckets a compaction wrote.
    pub objects_written: usize,
    /// Segments this run wrote (its own objects, one per day).
    pub segments_written: usize,
    /// Segments compacted into base buckets by this run.
    pub compacted_segments: usize,
    /// Why this run's compaction failed, if it did (its segments stay pending).
    pub compaction_failed: Option<String>,
    /// Temporary files of writes cut off by a killed process, removed from a local store.
    pub leftovers_removed: u64,
    /// Sealed runs of crashed processes finished first.
    pub recovered_runs: usize,
    /// Sealed runs of earlier processes that could not be finished: (run, why).
    pub stuck_runs: Vec<(String, String)>,
    /// Wall time.
    pub elapsed: Duration,
    /// Wall time of each phase, in order.
    pub phases: Vec<(&'static str, Duration)>,
}

impl Summary {
    /// Whether some inputs could not be read (the rest was committed).
    pub fn has_unreadable(&self) -> bool {
        !self.unreadable.is_empty()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let rejected: u64 = self.rejected.iter().map(|r| r.1).sum();
        writeln!(
            f,
            "files      {} found, {} read, {} already committed, {} same content as another, {} busy elsewhere, {} unreadable, {} empty",
            self.files,
            self.read_files,
            self.already_committed + self.unchanged,
            self.same_content.len(),
            self.busy.len(),
            self.unreadable.len(),
            self.empty_files
        )?;
        if !self.formats.is_empty() {
            let list: Vec<String> = self
                .formats
                .iter()
                .map(|(f, n)| format!("{f} {n}"))
                .collect();
            writeln!(f, "formats    {}", list.join(", "))?;
        }
        writeln!(
            f,
            "lines      {} read, {} counted, {} expired (older than retention), {} served from cache, {} rejected",
            self.lines, self.accepted, self.expired, self.cached, rejected
        )?;
        for (r, n) in &self.rejected {
            writeln!(f, "  rejected {:<15} {n}", r.name())?;
        }
        for (file, line, reason, text) in &self.samples {
            let (file, text) = (printable(file), printable(text));
            writeln!(f, "  {file}:{line}: {reason}: {text}")?;
        }
        if self.rejects_not_written > 0 {
            writeln!(
                f,
                "  ({} rejected lines past the rejects file's limit were counted, not written)",
                self.rejects_not_written
            )?;
        }
        for (file, bad) in &self.missing_column {
            let file = printable(file);
            writeln!(f, "  {file}: {bad}: every line rejected")?;
        }
        for (file, err) in &self.unreadable {
            let file = printable(file);
            writeln!(f, "  {file}: unreadable, not committed: {err}")?;
        }
        if self.unchanged > 0 {
            writeln!(
                f,
                "  {} committed files unchanged since (size, time, inode): not read; --verify rehashes them",
                self.unchanged
            )?;
        }
        for (file, first) in &self.same_content {
            writeln!(f, "  {file}: same content as {first}, read once")?;
        }
        for (file, run) in &self.busy {
            writeln!(f, "  {file}: being read by run {run}")?;
        }
        for (run, why) in &self.stuck_runs {
            writeln!(
                f,
                "  run {run}: sealed, not finished yet (tried again next run): {why}"
            )?;
        }
        if let Some(why) = &self.compaction_failed {
            writeln!(
                f,
                "  compaction failed (the run is committed; its segments stay pending): {}",
                printable(why)
            )?;
        }
        writeln!(f, "bytes      {} counted", self.bytes_counted)?;
        writeln!(
            f,
            "store      {} domains, {} days, {} segments published, {} shared objects written, {} segments compacted{}",
            self.domains,
            self.days,
            self.segments_written,
            self.objects_written,
            self.compacted_segments,
            if self.recovered_runs > 0 {
                format!(", {} interrupted runs finished", self.recovered_runs)
            } else {
                String::new()
            }
        )?;
        if self.leftovers_removed > 0 {
            writeln!(
                f,
                "           {} temporary files of killed writes removed",
                self.leftovers_removed
            )?;
        }
        if !self.phases.is_empty() {
            let parts: Vec<String> = self
                .phases
                .iter()
                .map(|(n, d)| format!("{n} {:.3}", d.as_secs_f64()))
                .collect();
            writeln!(f, "phases     {} (s)", parts.join(", "))?;
        }
        write!(
            f,
            "throughput {:.1} MB in {:.2} s: {:.1} MB/s",
            self.input_bytes as f64 / 1e6,
            secs,
            self.input_bytes as f64 / 1e6 / secs
        )
    }
}
