//! `srctraffic-batch aggregate`: recover, identify, claim, read, check, seal, finish.

use crate::aggregate::Aggregator;
use crate::commit::{Claim, CommitError, Ledger};
use crate::header::ColumnNames;
use crate::input::{self, Input, Source};
use crate::read::{self, ReadOptions, S3Reader};
use crate::rejects::{Position, Reason};
use crate::report::Summary;
use crate::segments::{Segments, Stopped};
use crate::statcache::{Entry as CacheEntry, Stat, StatCache};
use crate::{compact, failpoint};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use srctraffic::Clock;
use srctraffic::api::request::RETENTION_DAYS;
use srctraffic::store::Patience;
use srctraffic::store::{Store, keys};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Settings of one `aggregate` run.
#[derive(Debug, Clone)]
pub struct AggregateOptions {
    /// Files and directories to read.
    pub inputs: Vec<String>,
    /// The data clock, for the retention window.
    pub clock: Clock,
    /// Where to write every rejected line.
    pub rejects: Option<PathBuf>,
    /// Largest share of rejected lines that still commits.
    pub max_bad_ratio: f64,
    /// Column names.
    pub columns: ColumnNames,
    /// The formats to read and their flags.
    pub formats: crate::lines::FormatSpec,
    /// How long a silent run keeps its claims.
    pub lease: Duration,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Longest record kept, in bytes.
    pub max_line_bytes: usize,
    /// Merge a day's segments once this many are pending on one level.
    pub compact_after: usize,
    /// Rehash every input, ignoring the stat cache.
    pub verify: bool,
    /// Leave out local files modified less than this long ago (still being written).
    pub settle: Option<Duration>,
}

/// How far past the data clock's now a line may be and still count: clocks of log writers
/// drift a little. Later lines are rejected as `future`, and the watermark never passes now.
pub const FUTURE_TOLERANCE_MINUTES: i64 = 5;

/// At most this many compactions (merges or folds of a day) per run: its share of compaction
/// stays bounded.
const COMPACTIONS_PER_RUN: usize = 2;

/// Why a run did not commit.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// The inputs could not be listed.
    #[error(transparent)]
    Input(#[from] input::InputError),
    /// The ledger or the store failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// Too many bad lines: nothing was committed.
    #[error("{rejected} of {records} lines rejected ({:.2}%), more than --max-bad-ratio {:.2}%: nothing committed", ratio * 100.0, max * 100.0)]
    TooManyBad {
        /// Rejected lines.
        rejected: u64,
        /// Data lines.
        records: u64,
        /// Their ratio.
        ratio: f64,
        /// The limit.
        max: f64,
        /// The summary, with samples.
        summary: Box<Summary>,
    },
    /// Some minute's total passes 2^64 - 1 bytes: nothing was committed.
    #[error("the total of {domain} at minute {minute} passes 2^64 - 1 bytes: nothing committed")]
    Overflow {
        /// The domain.
        domain: String,
        /// The minute, `yyyy-MM-ddTHH:mm:00Z`.
        minute: String,
    },
    /// The rejects file could not be written.
    #[error("writing rejects to {path}: {source}")]
    Rejects {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Runs `aggregate` against a store: recover, find, identify, claim, read, check, seal,
/// publish, compact, each phase timed in the summary.
///
/// `rt` is the runtime the store was opened on; store calls run there while rayon reads.
pub fn run(
    rt: &tokio::runtime::Runtime,
    store: Arc<dyn Store>,
    opts: &AggregateOptions,
) -> Result<Summary, AggregateError> {
    let started = Instant::now();
    let ledger = Ledger::new(store.clone(), opts.lease);
    let mut summary = Summary::default();

    let recovered = rt.block_on(ledger.recover())?;
    summary.recovered_runs = recovered.runs;
    summary.objects_written += recovered.objects;
    summary.stuck_runs = recovered.stuck;

    let (inputs, s3) = find(rt, opts, &mut summary)?;
    let mut phase = Phase::start();
    let host = ledger.world().host();
    let candidates = identify(rt, store.as_ref(), &host, opts, &inputs, &mut summary)?;
    phase.lap(&mut summary, "identify");
    // Shared with the heartbeat that keeps the run alive while reading.
    let run = Arc::new(rt.block_on(ledger.begin())?);
    let now = opts.clock.now_unix();
    let (
        Claimed {
            mine,
            mine_stats,
            mut to_cache,
        },
        read_inputs,
        result,
    ) = if candidates.iter().any(|c| c.1.is_none()) {
        // Read first, hashing the files on the way, then claim what was read: nothing is
        // sealed or published before the claims are this run's. When some input turns out
        // not to be this run's (committed, busy, a copy of another, unreadable), the claimed
        // ones are read again without it: rare, and the price of reading the bytes once in
        // the common case.
        let read_inputs: Vec<Input> = candidates.iter().map(|c| c.0.clone()).collect();
        let hash: Vec<bool> = candidates.iter().map(|c| c.1.is_none()).collect();
        let result = read_claimed(
            rt,
            &ledger,
            &run,
            &read_inputs,
            &hash,
            opts,
            s3.clone(),
            now,
        )?;
        phase.lap(&mut summary, "read");
        let identified = with_read_identities(candidates, &result.identities, &mut summary);
        let claimed = claim(rt, &ledger, &run, identified, &mut summary)?;
        phase.lap(&mut summary, "claim");
        if claimed.mine.len() == read_inputs.len() {
            (claimed, read_inputs, result)
        } else {
            let read_inputs: Vec<Input> = claimed.mine.iter().map(|(i, _)| i.clone()).collect();
            let none = vec![false; read_inputs.len()];
            let result = read_claimed(rt, &ledger, &run, &read_inputs, &none, opts, s3, now)?;
            phase.lap(&mut summary, "read again");
            (claimed, read_inputs, result)
        }
    } else {
        let identified = same_content(candidates, &mut summary);
        let claimed = claim(rt, &ledger, &run, identified, &mut summary)?;
        let read_inputs: Vec<Input> = claimed.mine.iter().map(|(i, _)| i.clone()).collect();
        phase.lap(&mut summary, "claim");
        let none = vec![false; read_inputs.len()];
        let result = read_claimed(rt, &ledger, &run, &read_inputs, &none, opts, s3, now)?;
        phase.lap(&mut summary, "read");
        (claimed, read_inputs, result)
    };

    let checked = match check(
        result,
        &read_inputs,
        &mine,
        &mine_stats,
        opts,
        &mut summary,
        now,
    ) {
        Ok(c) => c,
        // Too many bad lines, or a minute past 2^64 - 1: the run gives its claims up.
        Err(e @ (AggregateError::TooManyBad { .. } | AggregateError::Overflow { .. })) => {
            rt.block_on(ledger.abort(&run))?;
            return Err(match e {
                AggregateError::TooManyBad {
                    rejected,
                    records,
                    ratio,
                    max,
                    ..
                } => {
                    summary.elapsed = started.elapsed();
                    AggregateError::TooManyBad {
                        rejected,
                        records,
                        ratio,
                        max,
                        summary: Box::new(summary),
                    }
                }
                other => other,
            });
        }
        Err(e) => return Err(e),
    };
    // The cells go to the store as they are encoded: the disk writes the first while the
    // rest are built, and sealing is left with each segment's head.
    let (segments, encoded) = checked.agg.encode_each(
        |plan| Segments::start(&store, rt.handle(), run.id, plan),
        Segments::push,
    );
    summary.days = segments.len();
    summary.segments_written = summary.days;
    phase.lap(&mut summary, "check");
    let written = match encoded {
        Ok(()) => rt.block_on(segments.finish())?,
        Err(Stopped) => return Err(rt.block_on(segments.stopped()).into()),
    };
    rt.block_on(ledger.seal_written(&run, checked.ids, checked.max_minute, written))?;
    failpoint::hit("sealed");
    phase.lap(&mut summary, "seal");
    let finished = rt.block_on(ledger.finish_own(&run))?;
    phase.lap(&mut summary, "publish");
    summary.objects_written += finished.objects;
    let mut touched = finished.days;
    touched.extend(recovered.days.iter().copied());
    compact_touched(rt, &ledger, &touched, opts, now, &mut summary);
    sweep_leftovers(rt, store.as_ref(), &touched, &mut summary);
    phase.lap(&mut summary, "compact");
    to_cache.extend(checked.stats);
    // Only an economy: a cache that cannot be written means rehashing next time.
    if let Err(e) = rt.block_on(StatCache::record(store.as_ref(), &host, &to_cache)) {
        tracing::warn!("the stat cache could not be written: {e}");
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Times the phases of a run.
struct Phase(Instant);

impl Phase {
    fn start() -> Phase {
        Phase(Instant::now())
    }

    /// Records the phase that just ended and starts the next.
    fn lap(&mut self, summary: &mut Summary, name: &'static str) {
        summary.phases.push((name, self.0.elapsed()));
        self.0 = Instant::now();
    }
}

/// Lists the inputs: local files and directories, then S3 prefixes (with the client that reads
/// them); files still being written are left for later.
fn find(
    rt: &tokio::runtime::Runtime,
    opts: &AggregateOptions,
    summary: &mut Summary,
) -> Result<(Vec<Input>, Option<S3Reader>), AggregateError> {
    let names = match opts.formats.forced {
        Some(crate::formats::Format::Csv) => input::Names::Csv,
        _ => input::Names::Every,
    };
    let mut inputs = input::discover(&opts.inputs, names)?;
    if let Some(settle) = opts.settle {
        // A file still being written must not be claimed: its later lines would be lost.
        let before = inputs.len();
        inputs.retain(|i| settled(i, settle));
        summary.unsettled = before - inputs.len();
    }
    let s3_urls: Vec<&String> = opts
        .inputs
        .iter()
        .filter(|a| a.starts_with("s3://"))
        .collect();
    let s3 = if s3_urls.is_empty() {
        None
    } else {
        let client = rt.block_on(srctraffic::store::s3::client_from_env(Patience::Run));
        inputs.extend(rt.block_on(input::discover_s3_all(&client, &s3_urls, names))?);
        input::dedup(&mut inputs);
        Some(S3Reader {
            client,
            handle: rt.handle().clone(),
        })
    };
    summary.files = inputs.len();
    Ok((inputs, s3))
}

/// Inputs to claim, by content.
struct Identified<'a> {
    /// (input, identity, stat) of each content, by its first path.
    wanted: Vec<(&'a Input, String, LocalStat)>,
}

/// An input to read, its identity (`None`: to be hashed while it is read) and its stat.
type Candidate<'a> = (&'a Input, Option<String>, LocalStat);

/// Finds what to read: a local file committed before and unchanged since, by the stat cache,
/// is not read at all. An S3 object is identified by its ETag. Local files are hashed while
/// they are read (`None`) when there are enough of them, none much larger than the others, to
/// keep every thread busy reading each whole; else each is hashed here, so that a large file
/// can be read in parallel chunks after.
fn identify<'a>(
    rt: &tokio::runtime::Runtime,
    store: &dyn Store,
    host: &str,
    opts: &AggregateOptions,
    inputs: &'a [Input],
    summary: &mut Summary,
) -> Result<Vec<Candidate<'a>>, AggregateError> {
    let cache = if opts.verify {
        StatCache::default()
    } else {
        rt.block_on(StatCache::load(store, host))
            .map_err(CommitError::from)?
    };
    let stats: Vec<LocalStat> = inputs
        .par_iter()
        .map(|i| match &i.source {
            Source::File(p) => Stat::of(p),
            Source::S3 { .. } => None,
        })
        .collect();
    let unchanged: Vec<bool> = stats
        .iter()
        .map(|st| {
            st.as_ref()
                .is_some_and(|(p, s)| cache.identity(p, s).is_some())
        })
        .collect();
    let local = |i: &Input| matches!(i.source, Source::File(_));
    let to_read = inputs.iter().zip(&unchanged).filter(|(_, u)| !**u);
    let (mut total, mut largest) = (0u64, 0u64);
    for (i, _) in to_read.filter(|(i, _)| local(i)) {
        total += i.size;
        largest = largest.max(i.size);
    }
    let threads = rayon::current_num_threads().max(1) as u64;
    let hash_while_reading = largest.saturating_mul(2 * threads) <= total;
    let identities: Vec<Option<Result<Option<String>, String>>> = inputs
        .par_iter()
        .zip(&unchanged)
        .map(|(i, &unchanged)| {
            if unchanged {
                return None;
            }
            if hash_while_reading && local(i) {
                return Some(Ok(None));
            }
            Some(i.identity().map(Some).map_err(|e| e.to_string()))
        })
        .collect();
    let mut candidates = Vec::new();
    for ((input, id), stat) in inputs.iter().zip(identities).zip(stats) {
        match id {
            None => summary.unchanged += 1,
            Some(Ok(id)) => candidates.push((input, id, stat)),
            Some(Err(e)) => summary.unreadable.push((input.display(), e)),
        }
    }
    Ok(candidates)
}

/// The candidates with the identities their read found; one that could not be read whole is
/// reported unreadable and left out.
fn with_read_identities<'a>(
    candidates: Vec<Candidate<'a>>,
    read: &[Option<Result<String, String>>],
    summary: &mut Summary,
) -> Identified<'a> {
    let mut known = Vec::with_capacity(candidates.len());
    for ((input, id, stat), found) in candidates.into_iter().zip(read) {
        match (id, found) {
            (Some(id), _) => known.push((input, Some(id), stat)),
            (None, Some(Ok(id))) => known.push((input, Some(id.clone()), stat)),
            (None, Some(Err(e))) => summary.unreadable.push((input.display(), e.clone())),
            (None, None) => summary
                .unreadable
                .push((input.display(), "not identified".into())),
        }
    }
    same_content(known, summary)
}

/// One content is one input, however many paths reach it (a copy, a hard link, a file named
/// twice): the first path in sorted order is the input, the others are reported. Every
/// candidate must be identified.
fn same_content<'a>(candidates: Vec<Candidate<'a>>, summary: &mut Summary) -> Identified<'a> {
    let mut wanted = Vec::new();
    let mut first_path: rustc_hash::FxHashMap<String, String> = Default::default();
    for (input, id, stat) in candidates {
        let Some(id) = id else {
            summary
                .unreadable
                .push((input.display(), "not identified".into()));
            continue;
        };
        match first_path.entry(id.clone()) {
            std::collections::hash_map::Entry::Occupied(first) => summary
                .same_content
                .push((input.display(), first.get().clone())),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(input.display());
                wanted.push((input, id, stat));
            }
        }
    }
    Identified { wanted }
}

/// What this run claimed.
struct Claimed {
    /// Inputs to read, with their identities.
    mine: Vec<(Input, String)>,
    /// Their stats, for the stat cache once committed.
    mine_stats: Vec<LocalStat>,
    /// Inputs found committed already, for the stat cache.
    to_cache: Vec<(String, CacheEntry)>,
}

/// Claims each wanted input for this run, in one round of the ledger.
fn claim(
    rt: &tokio::runtime::Runtime,
    ledger: &Ledger,
    run: &crate::commit::Run,
    identified: Identified<'_>,
    summary: &mut Summary,
) -> Result<Claimed, AggregateError> {
    let asks: Vec<(String, String)> = identified
        .wanted
        .iter()
        .map(|(i, id, _)| (id.clone(), i.display()))
        .collect();
    let claims = rt.block_on(ledger.claim_all(run, &asks))?;
    let mut out = Claimed {
        mine: Vec::new(),
        mine_stats: Vec::new(),
        to_cache: Vec::new(),
    };
    for ((input, id, stat), claim) in identified.wanted.into_iter().zip(claims) {
        match claim {
            Claim::Mine => {
                out.mine.push((input.clone(), id));
                out.mine_stats.push(stat);
            }
            Claim::Committed => {
                summary.already_committed += 1;
                out.to_cache.extend(cache_entry(&stat, &id));
            }
            Claim::Busy(other) => summary.busy.push((input.display(), other)),
        }
        failpoint::hit("claim");
    }
    Ok(out)
}

/// Reads inputs (hashing those marked in `hash`) while a heartbeat keeps the run and its
/// claims alive; fails if another run took them over meanwhile.
#[allow(clippy::too_many_arguments)]
fn read_claimed(
    rt: &tokio::runtime::Runtime,
    ledger: &Ledger,
    run: &Arc<crate::commit::Run>,
    inputs: &[Input],
    hash: &[bool],
    opts: &AggregateOptions,
    s3: Option<S3Reader>,
    now: i64,
) -> Result<read::ReadResult, AggregateError> {
    let lost = Arc::new(AtomicBool::new(false));
    let beat = {
        let (ledger, lost, run) = (ledger.clone(), lost.clone(), run.clone());
        let every = (opts.lease / 4).max(Duration::from_millis(100));
        rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if ledger.heartbeat(&run).await.is_err() {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
            }
        })
    };
    let total: u64 = inputs.iter().map(|i| i.size).sum();
    let bar = progress_bar(opts.progress, total);
    let read_opts = ReadOptions {
        columns: opts.columns.clone(),
        floor_day: now.div_euclid(86_400) - RETENTION_DAYS,
        ceiling_minute: now.div_euclid(60) + FUTURE_TOLERANCE_MINUTES,
        max_line_bytes: opts.max_line_bytes,
        chunk_bytes: read::CHUNK,
        formats: opts.formats.clone(),
        keep_all_rejects: opts.rejects.is_some(),
        s3,
    };
    let result = read::read_and_identify(inputs, hash, &read_opts, &bar);
    bar.finish_and_clear();
    beat.abort();
    if lost.load(Ordering::SeqCst) {
        return Err(CommitError::LostLease(run.id).into());
    }
    Ok(result)
}

/// A read that passed its checks, ready to encode and seal.
struct Checked {
    /// The totals.
    agg: Aggregator,
    /// Identities of the inputs counted.
    ids: Vec<String>,
    /// Their stats, for the stat cache.
    stats: Vec<(String, CacheEntry)>,
    /// The latest minute counted, never past now.
    max_minute: Option<i64>,
}

/// Fills the summary from the read, writes the rejects file, and refuses a read with too many
/// bad lines or an overflowing minute (the caller aborts the run then).
fn check(
    result: read::ReadResult,
    read_inputs: &[Input],
    mine: &[(Input, String)],
    mine_stats: &[LocalStat],
    opts: &AggregateOptions,
    summary: &mut Summary,
    now: i64,
) -> Result<Checked, AggregateError> {
    let mut agg = result.agg;
    summary.read_files = read_inputs.len();
    summary.input_bytes = read_inputs.iter().map(|i| i.size).sum();
    summary.records = agg.stats.records;
    summary.accepted = agg.stats.accepted;
    summary.expired = agg.stats.expired;
    summary.cached = agg.stats.cached;
    summary.bytes_counted = agg.stats.bytes;
    summary.domains = agg.domain_count();
    for r in Reason::ALL {
        let n = agg.rejects.counts[r.index()];
        if n > 0 {
            summary.rejected.push((r, n));
        }
    }
    summary.samples = agg
        .rejects
        .kept
        .iter()
        .take(crate::rejects::SAMPLES)
        .map(|r| {
            let line = match r.at {
                Position::Line(l) | Position::Offset(l) => l,
            };
            (
                read_inputs[r.file as usize].display(),
                line,
                r.reason,
                r.text.clone(),
            )
        })
        .collect();
    let mut ids = Vec::new();
    let mut stats = Vec::new();
    for (((input, id), report), stat) in mine.iter().zip(&result.files).zip(mine_stats) {
        if let Some(e) = &report.error {
            summary.unreadable.push((input.display(), e.clone()));
        } else {
            if report.empty {
                summary.empty_files += 1;
            }
            if let Some(col) = &report.missing_column {
                summary
                    .missing_column
                    .push((input.display(), col.to_string()));
            }
            if let Some(format) = report.format {
                *summary.formats.entry(format.name()).or_default() += 1;
            }
            ids.push(id.clone());
            stats.extend(cache_entry(stat, id));
        }
        summary.lines += report.lines;
    }
    if let Some(path) = &opts.rejects {
        write_rejects(path, read_inputs, &agg.rejects).map_err(|source| {
            AggregateError::Rejects {
                path: path.display().to_string(),
                source,
            }
        })?;
        summary.rejects_not_written = agg.rejects.not_kept;
    }
    let rejected = agg.rejects.total();
    let ratio = if agg.stats.records == 0 {
        0.0
    } else {
        rejected as f64 / agg.stats.records as f64
    };
    if ratio > opts.max_bad_ratio {
        return Err(AggregateError::TooManyBad {
            rejected,
            records: agg.stats.records,
            ratio,
            max: opts.max_bad_ratio,
            summary: Box::default(),
        });
    }
    if let Some((domain, minute)) = agg.stats.overflow.take() {
        return Err(AggregateError::Overflow {
            domain: domain.to_string(),
            minute: srctraffic::Minute(minute).to_string(),
        });
    }
    // Lines a little past now still count, but "known up to" never passes now.
    let max_minute = agg.stats.max_minute.map(|m| m.min(now.div_euclid(60)));
    Ok(Checked {
        agg,
        ids,
        stats,
        max_minute,
    })
}

/// The run's share of compaction. The run is committed: a compaction that fails leaves its
/// segments pending (answers stay right) and is reported, not turned into a failed run.
fn compact_touched(
    rt: &tokio::runtime::Runtime,
    ledger: &Ledger,
    touched: &[srctraffic::Day],
    opts: &AggregateOptions,
    now: i64,
    summary: &mut Summary,
) {
    let policy = compact::Policy {
        after: opts.compact_after,
        limit: COMPACTIONS_PER_RUN,
        now,
    };
    match rt.block_on(compact::compact_if_due(ledger, touched, &policy)) {
        Ok(compacted) => {
            summary.compacted_segments = compacted.segments;
            summary.objects_written += compacted.objects;
        }
        Err(e) => {
            tracing::error!("compaction failed, its segments stay pending: {e}");
            summary.compaction_failed = Some(e.to_string());
        }
    }
}

/// How long a temporary file goes untouched before a run takes it for a killed write's: a
/// live write touches its file every few seconds, and a day leaves room for a paused one.
const LEFTOVER_AGE: Duration = Duration::from_secs(24 * 3600);

/// Clears what killed writes left where runs write: the segments, the run and lease objects,
/// and the buckets of the days this run touched (a killed run's days are the ones its inputs
/// touch again when they are read again). The inputs' claims are left alone: one directory
/// of small objects for the whole retention, too many to walk every run. Housekeeping: a
/// failure is logged, not a failed run.
fn sweep_leftovers(
    rt: &tokio::runtime::Runtime,
    store: &dyn Store,
    touched: &[srctraffic::Day],
    summary: &mut Summary,
) {
    let mut under = vec![
        keys::SEGMENTS.to_owned(),
        "meta/".to_owned(),
        crate::ledger::RUNS.to_owned(),
    ];
    under.extend(touched.iter().map(|d| format!("{}{d}/", keys::BUCKETS)));
    match rt.block_on(store.sweep_leftovers(&under, LEFTOVER_AGE)) {
        Ok(n) => summary.leftovers_removed = n,
        Err(e) => tracing::warn!("temporary files of killed writes could not be removed: {e}"),
    }
}

/// Whether a local file has not been modified for `settle`; S3 objects are always whole.
fn settled(input: &Input, settle: Duration) -> bool {
    match &input.source {
        Source::File(p) => std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= settle),
        Source::S3 { .. } => true,
    }
}

/// A local file's absolute path and stat, for the stat cache.
type LocalStat = Option<(String, Stat)>;

fn cache_entry(stat: &LocalStat, identity: &str) -> Option<(String, CacheEntry)> {
    stat.as_ref().map(|(path, stat)| {
        (
            path.clone(),
            CacheEntry {
                stat: stat.clone(),
                identity: identity.to_owned(),
            },
        )
    })
}

fn progress_bar(enabled: bool, total: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    // Draws only on a terminal; on a pipe the bar stays silent.
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

fn write_rejects(
    path: &std::path::Path,
    inputs: &[Input],
    rejects: &crate::rejects::Rejects,
) -> std::io::Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(["file", "line", "reason", "text"])?;
    for r in &rejects.kept {
        let line = match r.at {
            Position::Line(l) | Position::Offset(l) => l,
        };
        w.write_record([
            inputs[r.file as usize].display().as_str(),
            line.to_string().as_str(),
            r.reason.name(),
            r.text.as_str(),
        ])?;
    }
    w.flush()
}
