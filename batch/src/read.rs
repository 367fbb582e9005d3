//! Reads a set of inputs in parallel into one [`Aggregator`].
//!
//! Plain files are cut into line-aligned chunks of [`CHUNK`] bytes, each read and scanned on
//! its own through its worker's buffer of [`READ_WINDOW`] bytes (so resident memory does not
//! grow with the input, nor with a record longer than the limit); a file whose identity the
//! run wants from its read ([`read_and_identify`]) is one task, hashed window by window as it
//! is read, and so
//! is a file of a format whose lines must be read in order (CloudFront's directives). Gzip
//! files and S3 objects are one stream each (inflated when their first bytes say gzip) into a
//! fixed buffer; a stream that fails half way (truncated, corrupt, connection lost) contributes
//! nothing, so the input can be fed again later without double counting.

use crate::aggregate::{Aggregator, Origin};
use crate::fields::TimeParser;
use crate::formats::{self, Format};
use crate::header::{self, ColumnNames, HeaderError};
use crate::input::{self, Input, Source};
use crate::lines::{self, FormatSpec};
use crate::rejects::{Position, Reason};
use crate::scan::{self, Columns, Sink, Swallowed};
use flate2::read::MultiGzDecoder;
use indicatif::ProgressBar;
use rayon::prelude::*;
use std::fs::File;
use std::io::{self, BufRead, Read, Seek};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use xxhash_rust::xxh3::Xxh3;

/// Bytes per parallel chunk of a plain file.
pub const CHUNK: u64 = 8 << 20;
const GZ_BUF: usize = 1 << 20;
/// Hour blocks the workers may hold between merges into the run's totals, shared among them
/// (about 1.7 KiB each with status counts: some 24 MiB in all).
const HELD_BLOCKS: usize = 14_000;
/// The default `--max-line-bytes`: longer records are rejected without being held in memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Settings of one read.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Column names to look for.
    pub columns: ColumnNames,
    /// Lines of days before this one are expired.
    pub floor_day: i64,
    /// Lines of minutes after this one are rejected as from the future.
    pub ceiling_minute: i64,
    /// Records longer than this are rejected as too long, and never held whole.
    pub max_line_bytes: usize,
    /// Bytes per parallel chunk of a plain file ([`CHUNK`]; tests cut finer).
    pub chunk_bytes: u64,
    /// Keep every reject (for `--rejects`).
    pub keep_all_rejects: bool,
    /// The formats to read and their flags.
    pub formats: FormatSpec,
    /// How to read `s3://` inputs, when there are any.
    pub s3: Option<S3Reader>,
}

/// An S3 client and the runtime its requests run on; worker threads block on it to stream.
#[derive(Debug, Clone)]
pub struct S3Reader {
    /// The client.
    pub client: aws_sdk_s3::Client,
    /// The runtime the client runs on.
    pub handle: tokio::runtime::Handle,
}

/// What happened to one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileReport {
    /// Physical lines read, header included.
    pub lines: u64,
    /// The file could not be read to its end; it contributed nothing.
    pub error: Option<String>,
    /// The header cannot be used (a required column missing or named twice); every line was
    /// rejected.
    pub missing_column: Option<HeaderError>,
    /// The file has no bytes at all.
    pub empty: bool,
    /// The format it was read as.
    pub format: Option<Format>,
}

/// Everything read.
#[derive(Debug)]
pub struct ReadResult {
    /// The totals and rejects.
    pub agg: Aggregator,
    /// One report per input, in input order.
    pub files: Vec<FileReport>,
    /// Per input, in input order: its identity ([`input::identity`]) when the read was asked
    /// for it ([`read_and_identify`]), or why it could not be had.
    pub identities: Vec<Option<Result<String, String>>>,
}

/// How a chunk's bytes are read.
#[derive(Debug, Clone, Copy)]
enum ChunkKind {
    /// CSV records with these columns.
    Csv(Columns),
    /// Lines of a line format.
    Lines(Format),
}

/// What reads a chunk.
enum Reader {
    Csv(Columns),
    Lines(Box<dyn lines::Feed>, TimeParser),
}

enum Task {
    Chunk {
        file: u32,
        handle: Arc<File>,
        begin: u64,
        end: u64,
        /// The file's last chunk: the only one that may end inside a quote.
        last: bool,
        kind: ChunkKind,
        /// The chunk is the whole file, whose identity is hashed from the same pages as they
        /// are scanned (bytes before `begin` included).
        hash: bool,
    },
    Stream {
        file: u32,
    },
}

/// Reads every input; never fails as a whole: each file's trouble is in its report.
///
/// Plain files are cut at newlines without knowing whether a newline sits inside a quoted
/// field; a chunk that ends inside a quote shows such a cut, and that file is then read again
/// as one stream, so chunked and streamed reading agree on every file. A file whose chunk could
/// not be read contributes nothing. Either way the other files are read again too (their totals
/// are already mixed in the workers' aggregators): rare, and never wrong.
pub fn read_all(inputs: &[Input], opts: &ReadOptions, progress: &ProgressBar) -> ReadResult {
    let none = vec![false; inputs.len()];
    read_all_as(
        inputs,
        &none,
        opts,
        progress,
        vec![How::AsPlanned; inputs.len()],
    )
}

/// Reads every input as [`read_all`] does, and identifies those marked in `hash` (local files)
/// as [`input::identity`] does. A plain file is then read whole by one worker, which hashes
/// each window of pages right before scanning it: the bytes come from memory once, where
/// identifying first read them twice (measured: a seventh of a run). Other files are hashed on
/// their own.
pub fn read_and_identify(
    inputs: &[Input],
    hash: &[bool],
    opts: &ReadOptions,
    progress: &ProgressBar,
) -> ReadResult {
    read_all_as(
        inputs,
        hash,
        opts,
        progress,
        vec![How::AsPlanned; inputs.len()],
    )
}

fn read_all_as(
    inputs: &[Input],
    hash: &[bool],
    opts: &ReadOptions,
    progress: &ProgressBar,
    mut how: Vec<How>,
) -> ReadResult {
    let mut errors: Vec<Option<String>> = vec![None; inputs.len()];
    let hidden = ProgressBar::hidden();
    let mut bar = progress;
    loop {
        let pass = read_pass(inputs, hash, opts, bar, &how);
        // A pass again is not progress a person should see twice.
        bar = &hidden;
        let mut again = false;
        for &i in &pass.failed {
            if how[i] != How::Skip {
                how[i] = How::Skip;
                errors[i] = pass.files[i].error.clone();
                again = true;
            }
        }
        for &i in &pass.misaligned {
            if how[i] == How::AsPlanned {
                how[i] = How::Stream;
                again = true;
            }
        }
        if !again {
            let ReadPass {
                mut agg,
                mut files,
                mut identities,
                ..
            } = pass;
            // A file without a required column: every data line is rejected, counted once.
            for f in &files {
                if let Some(bad) = &f.missing_column {
                    let n = f.lines.saturating_sub(1);
                    agg.rejects.add_uncounted_lines(bad.reason(), n);
                    agg.stats.records += n;
                }
            }
            for (i, ((f, h), e)) in files.iter_mut().zip(&how).zip(errors).enumerate() {
                if *h == How::Skip {
                    // Only the failure is kept: its lines were not counted, and its bytes
                    // were not all hashed.
                    if hash[i] {
                        let why = e.clone().unwrap_or_else(|| "not read".into());
                        identities[i] = Some(Err(why));
                    }
                    *f = FileReport {
                        error: e,
                        ..Default::default()
                    };
                }
            }
            resolve_offsets(inputs, &mut agg);
            return ReadResult {
                agg,
                files,
                identities,
            };
        }
    }
}

/// How one pass reads a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// Chunks for a plain local file, a stream otherwise.
    AsPlanned,
    /// One stream, whatever it is.
    Stream,
    /// Not at all: it failed in an earlier pass.
    Skip,
}

struct ReadPass {
    agg: Aggregator,
    files: Vec<FileReport>,
    /// Files a chunk of which could not be read.
    failed: Vec<usize>,
    /// Files a chunk of which (not the last) ended inside a quote.
    misaligned: Vec<usize>,
    /// Per input, its identity if asked for.
    identities: Vec<Option<Result<String, String>>>,
}

fn read_pass(
    inputs: &[Input],
    hash: &[bool],
    opts: &ReadOptions,
    progress: &ProgressBar,
    how: &[How],
) -> ReadPass {
    type Planned = (Vec<Task>, FileReport, Option<Result<String, String>>);
    let planned: Vec<Planned> = inputs
        .par_iter()
        .enumerate()
        .map(|(i, input)| {
            let (tasks, report) = match how[i] {
                How::AsPlanned => plan(i as u32, input, hash[i], opts),
                How::Stream => (vec![Task::Stream { file: i as u32 }], FileReport::default()),
                How::Skip => return (Vec::new(), FileReport::default(), None),
            };
            // A file not read whole by one task (a file with nothing to scan) is hashed on its
            // own; a stream hashes what it reads.
            let hashing = tasks
                .iter()
                .any(|t| matches!(t, Task::Chunk { hash: true, .. } | Task::Stream { .. }));
            let id = (hash[i] && !hashing).then(|| input.identity().map_err(|e| e.to_string()));
            (tasks, report, id)
        })
        .collect();
    let mut files = Vec::with_capacity(inputs.len());
    let mut identities = Vec::with_capacity(inputs.len());
    let mut tasks = Vec::new();
    for (t, report, id) in planned {
        tasks.extend(t);
        files.push(report);
        identities.push(id);
    }
    // Whole streams and whole files first, each kind largest first, handed out in that order
    // as workers come free: the run ends with the smallest tasks, so no worker waits long for
    // another's last one. Measured on 24 whole files of unlike sizes (10 M Cloudflare lines,
    // two threads): read phase 0.99 of the same tasks taken in input order by halves.
    tasks.sort_by_key(|t| match t {
        Task::Stream { file } => (0, std::cmp::Reverse(inputs[*file as usize].size)),
        Task::Chunk {
            hash: true,
            begin,
            end,
            ..
        }
        | Task::Chunk {
            begin: begin @ 0,
            last: true,
            end,
            ..
        } => (1, std::cmp::Reverse(end - begin)),
        Task::Chunk { begin, end, .. } => (2, std::cmp::Reverse(end - begin)),
    });
    // A worker keeps its aggregator from task to task (its domain caches make the next one
    // fast) and hands its totals to the run's only once it holds more than its share of
    // HELD_BLOCKS: the chunks of one file mostly touch the same hour blocks, which are then
    // made and merged once, not once per chunk (merging after every task, under the run's
    // lock, was 5% of a run), while the workers together still hold a bounded number of blocks
    // whatever the thread count. A report says whether it came from a chunk, whose failure
    // leaves sibling chunks counted.
    let hold = HELD_BLOCKS / rayon::current_num_threads().max(1);
    let fresh = || {
        Aggregator::new(opts.floor_day, opts.ceiling_minute, opts.keep_all_rejects)
            .with_origin_rule(opts.formats.origin.clone())
    };
    let run_agg = Mutex::new(fresh());
    let pool: Mutex<Vec<Aggregator>> = Mutex::new(Vec::new());
    let take = || lock(&pool).pop().unwrap_or_else(fresh);
    let (lines_done, started) = (AtomicU64::new(0), std::time::Instant::now());
    let work = |task: Task| {
        let mut agg = take();
        let report = match task {
            Task::Chunk {
                file,
                handle,
                begin,
                end,
                last,
                kind,
                hash,
            } => {
                let span = Span { begin, end, hash };
                let report = match read_chunk(&mut agg, file, &handle, span, kind, opts) {
                    Ok((scanned, id)) => (
                        file,
                        FileReport {
                            lines: scanned.lines,
                            ..Default::default()
                        },
                        if scanned.open_quote && !last {
                            Cut::Misaligned
                        } else {
                            Cut::Fine
                        },
                        id,
                    ),
                    Err(e) => (
                        file,
                        FileReport {
                            error: Some(e.to_string()),
                            ..Default::default()
                        },
                        Cut::Failed,
                        None,
                    ),
                };
                progress.inc(end - begin);
                report
            }
            Task::Stream { file } => {
                // A stream that fails half way contributes nothing: it is summed apart.
                let mut local = fresh();
                let input = &inputs[file as usize];
                let hashing = hash[file as usize].then(|| Mutex::new((Xxh3::new(), 0u64)));
                let report = read_stream(&mut local, file, input, opts, progress, &hashing);
                if report.error.is_none() {
                    agg.merge(local);
                }
                let id = hashing.and_then(|h| finish_hash(input, h).ok());
                (file, report, Cut::Fine, id)
            }
        };
        if agg.blocks_held() > hold {
            agg.drain_into(&mut lock(&run_agg));
        }
        lock(&pool).push(agg);
        let done = lines_done.fetch_add(report.1.lines, Ordering::Relaxed) + report.1.lines;
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
        progress.set_message(format!("{:.2} M lines/s", rate / 1e6));
        crate::failpoint::hit("read");
        report
    };
    let queue = Mutex::new(tasks.into_iter());
    let reports: Vec<(u32, FileReport, Cut, Option<String>)> = (0..rayon::current_num_threads())
        .into_par_iter()
        .with_max_len(1)
        .flat_map_iter(|_| {
            let next = || lock(&queue).next();
            std::iter::from_fn(next).map(work).collect::<Vec<_>>()
        })
        .collect();
    let mut agg = run_agg.into_inner().unwrap_or_else(|p| p.into_inner());
    for mut held in pool.into_inner().unwrap_or_else(|p| p.into_inner()) {
        held.drain_into(&mut agg);
    }
    let (mut failed, mut misaligned) = (Vec::new(), Vec::new());
    for (file, r, cut, id) in reports {
        if let Some(id) = id {
            identities[file as usize] = Some(Ok(id));
        }
        let f = &mut files[file as usize];
        f.lines += r.lines;
        match cut {
            Cut::Failed => failed.push(file as usize),
            Cut::Misaligned => misaligned.push(file as usize),
            Cut::Fine => {}
        }
        f.error = f.error.take().or(r.error);
        f.missing_column = f.missing_column.take().or(r.missing_column);
        f.format = f.format.or(r.format);
    }
    ReadPass {
        agg,
        files,
        failed,
        misaligned,
        identities,
    }
}

/// What a chunk's read says about how its file was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    Fine,
    Failed,
    Misaligned,
}

/// Locks a pool or the run's totals. A poisoned lock means a worker panicked, which rayon
/// hands on to the run, so nothing read under a poisoned lock is ever committed.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads the header and cuts a plain file into chunk tasks, or with `hash` makes it one task
/// that hashes it too; a gzip file is one task.
fn plan(file: u32, input: &Input, hash: bool, opts: &ReadOptions) -> (Vec<Task>, FileReport) {
    let fail = |e: io::Error| {
        (
            Vec::new(),
            FileReport {
                error: Some(e.to_string()),
                ..Default::default()
            },
        )
    };
    if input.size == 0 {
        return (
            Vec::new(),
            FileReport {
                empty: true,
                ..Default::default()
            },
        );
    }
    let Some(path) = input.path() else {
        return (vec![Task::Stream { file }], FileReport::default());
    };
    match input::is_gzip(path) {
        Err(e) => return fail(e),
        Ok(true) => return (vec![Task::Stream { file }], FileReport::default()),
        Ok(false) => {}
    }
    let handle = match File::open(path) {
        Ok(f) => Arc::new(f),
        Err(e) => return fail(e),
    };
    let size = input.size;
    let header_end = match next_line_start(&handle, 0, size) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    // A header past the record limit is not read whole: it names no column we can trust.
    let head_len = (header_end as usize).min(opts.max_line_bytes.saturating_add(1));
    let mut head = vec![0u8; head_len];
    if let Err(e) = handle.read_exact_at(&mut head, 0) {
        return fail(e);
    }
    let format = match opts
        .formats
        .forced
        .map_or_else(|| formats::detect(&head), Ok)
    {
        Ok(f) => f,
        Err(why) => return fail(io::Error::other(why)),
    };
    if format != Format::Csv {
        if let Err(why) = opts.formats.check(format) {
            return fail(io::Error::other(why));
        }
        if !format.cuts_anywhere() {
            // Read in order by one worker, through the small buffer a chunk is read into:
            // through the stream's buffer (larger than the core's L2), the copy out of the
            // page cache was a tenth of a CloudFront run.
            let whole = Task::Chunk {
                file,
                handle,
                begin: 0,
                end: size,
                last: true,
                kind: ChunkKind::Lines(format),
                hash,
            };
            let report = FileReport {
                format: Some(format),
                ..Default::default()
            };
            return (vec![whole], report);
        }
    }
    let (kind, first) = if format == Format::Csv {
        let parsed = if head_len < header_end as usize {
            Err(HeaderError::Missing(opts.columns.time.clone()))
        } else {
            header::parse(head.strip_suffix(b"\n").unwrap_or(&head), &opts.columns)
        };
        match parsed {
            Ok(c) => (ChunkKind::Csv(c), header_end),
            Err(missing) => {
                let lines = count_lines(&handle, size).unwrap_or(0);
                return (
                    Vec::new(),
                    FileReport {
                        lines,
                        missing_column: Some(missing),
                        format: Some(Format::Csv),
                        ..Default::default()
                    },
                );
            }
        }
    } else {
        (ChunkKind::Lines(format), 0)
    };
    let mut tasks = Vec::new();
    if hash && first < size {
        tasks.push(Task::Chunk {
            file,
            handle: handle.clone(),
            begin: first,
            end: size,
            last: true,
            kind,
            hash: true,
        });
    }
    let mut begin = if hash { size } else { first };
    while begin < size {
        let end = match next_line_start(&handle, (begin + opts.chunk_bytes.max(1)).min(size), size)
        {
            Ok(e) => e,
            Err(e) => return fail(e),
        };
        tasks.push(Task::Chunk {
            file,
            handle: handle.clone(),
            begin,
            end,
            last: end >= size,
            kind,
            hash: false,
        });
        begin = end;
    }
    (
        tasks,
        FileReport {
            // The header row of a CSV.
            lines: u64::from(format == Format::Csv),
            format: Some(format),
            ..Default::default()
        },
    )
}

/// The offset just past the first newline at or after `from`, or `size`.
fn next_line_start(f: &File, from: u64, size: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 << 10];
    let mut at = from;
    while at < size {
        let n = f.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(at + i as u64 + 1);
        }
        at += n as u64;
    }
    Ok(size)
}

/// Counts physical lines: newlines, plus one for a last line without its newline.
#[derive(Debug, Default)]
struct LineCounter {
    newlines: u64,
    open: bool,
}

impl LineCounter {
    fn feed(&mut self, b: &[u8]) {
        if let Some(&last) = b.last() {
            self.newlines += memchr::memchr_iter(b'\n', b).count() as u64;
            self.open = last != b'\n';
        }
    }
    fn lines(&self) -> u64 {
        self.newlines + u64::from(self.open)
    }
}

fn count_lines(f: &File, size: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut at, mut counter) = (0u64, LineCounter::default());
    while at < size {
        let n = f.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        counter.feed(&buf[..n]);
        at += n as u64;
    }
    Ok(counter.lines())
}

/// The bytes of a file a chunk task scans; with `hash`, `end` is the file's size and every
/// byte from 0 is hashed.
#[derive(Debug, Clone, Copy)]
struct Span {
    begin: u64,
    end: u64,
    hash: bool,
}

/// Scans a chunk into `agg`; with `span.hash`, also returns the file's identity.
///
/// The chunk is read into the worker's buffer a window at a time ([`READ_WINDOW`]): the
/// kernel's copy lands in the core's cache, where the hash and the scan read it again. Mapping
/// the chunk instead cost more in the kernel than the copy does (populating each window's
/// pages, giving them back, and with two threads a TLB shootdown on the other core for each
/// give-back): measured, a mapped read was 6% slower with one thread and 10% with two.
fn read_chunk(
    agg: &mut Aggregator,
    file: u32,
    handle: &File,
    span: Span,
    kind: ChunkKind,
    opts: &ReadOptions,
) -> io::Result<(scan::ScanEnd, Option<String>)> {
    let Span { begin, end, hash } = span;
    // Hashed, the read starts at the file's start: the bytes before `begin` (a header) are
    // hashed too, not scanned.
    let from = if hash { 0 } else { begin };
    if end <= begin || end <= from {
        let empty = scan::ScanEnd {
            consumed: 0,
            lines: 0,
            open_quote: false,
        };
        return Ok((empty, None));
    }
    let max = opts.max_line_bytes;
    let mut reader = match kind {
        ChunkKind::Csv(cols) => Reader::Csv(cols),
        ChunkKind::Lines(f) => Reader::Lines(
            opts.formats.reader(f).map_err(io::Error::other)?,
            TimeParser::default(),
        ),
    };
    WINDOW_BUF.with_borrow_mut(|buf| {
        let mut w = Window::new(handle, buf, hash, from, end);
        let mut skip = (begin - from) as usize;
        let mut lines = 0u64;
        loop {
            w.fill()?;
            let eof = w.eof();
            if skip > 0 {
                let n = skip.min(w.filled);
                w.consume(n);
                skip -= n;
                if skip > 0 && !eof {
                    continue;
                }
            }
            agg.set_origin(
                file,
                Origin::Offsets {
                    base_ptr: w.buf.as_ptr() as usize,
                    base_off: w.base,
                },
            );
            let view = &w.buf[..w.filled];
            let got = match &mut reader {
                Reader::Csv(cols) => scan::scan(view, cols, max, eof, 0, agg),
                Reader::Lines(format, time) => {
                    let fed = format.feed(time, view, eof, 0, max, agg);
                    scan::ScanEnd {
                        consumed: fed.consumed,
                        lines: fed.lines,
                        open_quote: false,
                    }
                }
            };
            lines += got.lines;
            let mut open_quote = got.open_quote;
            if !eof && got.consumed == 0 && w.filled > max.saturating_add(2) {
                // One record fills more than the longest kept (its CR and newline included):
                // walk to its end without holding it, as the stream reader does.
                let quotes = matches!(reader, Reader::Csv(_));
                let skipped = w.skip_record(agg, file, quotes)?;
                lines += skipped.lines;
                if !skipped.at_eof {
                    continue;
                }
                open_quote = skipped.quoted;
            } else if !eof {
                w.consume(got.consumed);
                continue;
            }
            // Everything from `begin` is consumed by now but what the last scan left.
            let scanned = scan::ScanEnd {
                consumed: w.base.saturating_sub(begin) as usize + got.consumed,
                lines,
                open_quote,
            };
            return Ok((scanned, w.identity()));
        }
    })
}

/// Bytes a chunk is read at a time: the copy stays in the core's L2 for the hash and the scan
/// (128 KiB and 1 MiB measured the same). Unit tests read a few bytes at a time, so that
/// their small files cross windows, grow the buffer and walk long records.
const READ_WINDOW: usize = if cfg!(test) { 64 } else { 256 << 10 };

thread_local! {
    /// Each worker's read buffer, kept from chunk to chunk.
    static WINDOW_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The bytes of a file between two offsets, read into a buffer as they are scanned, each
/// hashed once in order when the file's identity is wanted.
struct Window<'a> {
    handle: &'a File,
    buf: &'a mut Vec<u8>,
    hasher: Option<Xxh3>,
    /// The file offset of `buf[0]`.
    base: u64,
    /// Bytes of `buf` held: the next byte to read is at `base + filled`.
    filled: usize,
    end: u64,
}

/// A record too long to keep, walked to its end by [`Window::skip_record`].
struct Skipped {
    lines: u64,
    at_eof: bool,
    /// Whether it ended inside a quote (CSV).
    quoted: bool,
}

impl<'a> Window<'a> {
    fn new(handle: &'a File, buf: &'a mut Vec<u8>, hash: bool, from: u64, end: u64) -> Self {
        if buf.len() != READ_WINDOW {
            // A buffer grown for a long record is not kept for the next chunk.
            *buf = vec![0; READ_WINDOW];
        }
        Window {
            handle,
            buf,
            hasher: hash.then(Xxh3::new),
            base: from,
            filled: 0,
            end,
        }
    }

    /// The file offset of the next byte to read.
    fn pos(&self) -> u64 {
        self.base + self.filled as u64
    }

    fn eof(&self) -> bool {
        self.pos() == self.end
    }

    /// Reads after the bytes held, up to the end: at least one byte unless at the end. A
    /// buffer full of bytes held (one record longer than a window) is doubled first.
    fn fill(&mut self) -> io::Result<()> {
        if self.filled == self.buf.len() {
            let n = self.buf.len() * 2;
            self.buf.resize(n, 0);
        }
        let pos = self.pos();
        let want = (self.end - pos).min((self.buf.len() - self.filled) as u64) as usize;
        if want == 0 {
            return Ok(());
        }
        let into = &mut self.buf[self.filled..self.filled + want];
        let got = self.handle.read_at(into, pos)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is shorter than when the read began",
            ));
        }
        if let Some(h) = &mut self.hasher {
            h.update(&into[..got]);
        }
        self.filled += got;
        Ok(())
    }

    /// Drops the first `n` bytes held.
    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
        self.base += n as u64;
    }

    /// Rejects the record that starts at `buf[0]` and fills every byte held (none ends it),
    /// reading on to its end: a newline (outside quotes, with `quotes`) or the end.
    fn skip_record(
        &mut self,
        agg: &mut Aggregator,
        file: u32,
        quotes: bool,
    ) -> io::Result<Skipped> {
        let at = self.base;
        let mut skip = Skip::new(0, &self.buf[..self.filled], quotes);
        self.consume(self.filled);
        let ended = loop {
            self.fill()?;
            if let Some(i) = skip.feed(&self.buf[..self.filled]) {
                self.consume(i);
                break false;
            }
            self.consume(self.filled);
            if self.eof() {
                break true;
            }
        };
        agg.set_origin(
            file,
            Origin::Offsets {
                base_ptr: skip.head.as_ptr() as usize,
                base_off: at,
            },
        );
        let quoted = skip.quoted;
        let lines = skip.finish(agg, ended);
        Ok(Skipped {
            lines,
            at_eof: ended,
            quoted,
        })
    }

    /// The file's identity, if hashed (read to its end).
    fn identity(self) -> Option<String> {
        let size = self.end;
        self.hasher.map(|h| input::identity_of(size, &h))
    }
}

/// The identity of a local file of which a stream hashed the first bytes: the rest (what the
/// stream did not read: after a gzip's end, or past a failure) is hashed from the file.
fn finish_hash(input: &Input, hashed: Mutex<(Xxh3, u64)>) -> io::Result<String> {
    let (mut h, mut n) = hashed.into_inner().unwrap_or_else(|p| p.into_inner());
    let path = input
        .path()
        .ok_or_else(|| io::Error::other("not a local file"))?;
    let mut f = File::open(path)?;
    f.seek(io::SeekFrom::Start(n))?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    Ok(input::identity_of(n, &h))
}

/// Feeds the bytes read from a file to a hash, in order, and counts them.
struct Hashing<'a, R> {
    inner: R,
    state: &'a Mutex<(Xxh3, u64)>,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut state = lock(self.state);
        state.0.update(&buf[..n]);
        state.1 += n as u64;
        Ok(n)
    }
}

/// Counts bytes read from the file for the progress bar.
struct Counting<'a, R> {
    inner: R,
    progress: &'a ProgressBar,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// Opens a local file or an S3 object (at its listed ETag) as a byte stream, counted for the
/// progress bar, and inflated when its first bytes say gzip.
fn open_stream<'a>(
    input: &Input,
    opts: &ReadOptions,
    progress: &'a ProgressBar,
    hashing: &'a Option<Mutex<(Xxh3, u64)>>,
) -> io::Result<Box<dyn Read + 'a>> {
    let raw: Box<dyn Read + Send + 'a> = match &input.source {
        Source::File(p) => match hashing {
            Some(state) => Box::new(Hashing {
                inner: File::open(p)?,
                state,
            }),
            None => Box::new(File::open(p)?),
        },
        Source::S3 { bucket, key, etag } => {
            let s3 = opts
                .s3
                .as_ref()
                .ok_or_else(|| io::Error::other("no S3 client configured"))?;
            let got = s3
                .handle
                .block_on(
                    s3.client
                        .get_object()
                        .bucket(bucket)
                        .key(key)
                        .if_match(etag)
                        .send(),
                )
                .map_err(|e| {
                    io::Error::other(aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
                })?;
            let body: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> =
                Box::pin(got.body.into_async_read());
            Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
                body,
                s3.handle.clone(),
            ))
        }
    };
    let mut br = io::BufReader::with_capacity(
        256 << 10,
        Counting {
            inner: raw,
            progress,
        },
    );
    let gz = br.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(MultiGzDecoder::new(br))
    } else {
        Box::new(br)
    })
}

/// Reads one input as a stream; with `hashing`, a local file's bytes are hashed as they are
/// read (see [`finish_hash`]).
fn read_stream(
    agg: &mut Aggregator,
    file: u32,
    input: &Input,
    opts: &ReadOptions,
    progress: &ProgressBar,
    hashing: &Option<Mutex<(Xxh3, u64)>>,
) -> FileReport {
    let mut report = FileReport::default();
    let result = (|| -> io::Result<()> {
        let mut dec = open_stream(input, opts, progress, hashing)?;
        let max = opts.max_line_bytes;
        // Room for the longest record we keep, its CR and newline, and a read's worth more:
        // the buffer never grows, so memory stays bounded whatever the input holds.
        let mut buf = vec![0u8; GZ_BUF.max(max.saturating_add(2)).saturating_add(64 << 10)];
        let mut filled = 0usize;
        let mut cols: Option<Columns> = None;
        let mut line = 1u64;
        let mut skipping: Option<Skip> = None;
        agg.set_origin(file, Origin::Lines);
        loop {
            let n = dec.read(&mut buf[filled..])?;
            let eof = n == 0;
            if let Some(skip) = skipping.as_mut() {
                // Inside a record too long to hold: walk it without keeping it.
                match skip.feed(&buf[filled..filled + n]) {
                    Some(end) => {
                        let tail = filled + end;
                        let done = skipping.take().map(|s| s.finish(agg, false));
                        line += done.unwrap_or(0);
                        buf.copy_within(tail..filled + n, 0);
                        filled = filled + n - tail;
                    }
                    None if eof => {
                        let done = skipping.take().map(|s| s.finish(agg, true));
                        line += done.unwrap_or(0);
                        break;
                    }
                    None => continue,
                }
            } else {
                filled += n;
            }
            let mut start = 0usize;
            if cols.is_none() {
                let nl = memchr::memchr(b'\n', &buf[..filled]);
                let full = filled == buf.len();
                let Some(nl) = nl.or((eof || full).then_some(filled)) else {
                    continue;
                };
                let format = match opts.formats.forced {
                    Some(f) => f,
                    None => formats::detect(&buf[..filled]).map_err(io::Error::other)?,
                };
                report.format = Some(format);
                if format != Format::Csv {
                    let reader = opts.formats.reader(format).map_err(io::Error::other)?;
                    report.lines =
                        line_stream(agg, reader, dec.as_mut(), &mut buf, filled, eof, max)?;
                    return Ok(());
                }
                let parsed = if nl > max {
                    Err(HeaderError::Missing(opts.columns.time.clone()))
                } else {
                    header::parse(&buf[..nl], &opts.columns)
                };
                match parsed {
                    Ok(c) => cols = Some(c),
                    Err(missing) => {
                        let mut counter = LineCounter::default();
                        counter.feed(&buf[..filled]);
                        loop {
                            let n = dec.read(&mut buf)?;
                            if n == 0 {
                                break;
                            }
                            counter.feed(&buf[..n]);
                        }
                        report.lines = counter.lines();
                        report.missing_column = Some(missing);
                        return Ok(());
                    }
                }
                start = (nl + 1).min(filled);
                line = 2;
            }
            let Some(c) = cols.as_ref() else { break };
            let end = scan::scan(&buf[start..filled], c, max, eof, line, agg);
            line += end.lines;
            let used = start + end.consumed;
            if eof {
                break;
            }
            if used == 0 && filled == buf.len() {
                // One record fills the whole buffer: longer than the limit. Walk the rest of it.
                skipping = Some(Skip::new(line, &buf[..filled], true));
                filled = 0;
                continue;
            }
            buf.copy_within(used..filled, 0);
            filled -= used;
        }
        report.lines = line - 1;
        Ok(())
    })();
    if let Err(e) = result {
        report.error = Some(e.to_string());
    }
    report
}

/// Reads the rest of a stream of a line format, `buf[..filled]` already read; returns the
/// lines read. A line longer than the limit is rejected and skipped to its newline without
/// being held.
fn line_stream(
    agg: &mut Aggregator,
    mut format: Box<dyn lines::Feed>,
    dec: &mut dyn Read,
    buf: &mut [u8],
    mut filled: usize,
    mut eof: bool,
    max: usize,
) -> io::Result<u64> {
    let mut time = TimeParser::default();
    let mut line = 1u64;
    // Inside a line too long to hold: its first bytes, for the report.
    let mut skipping: Option<Vec<u8>> = None;
    loop {
        if let Some(head) = skipping.as_ref() {
            match memchr::memchr(b'\n', &buf[..filled]) {
                Some(i) => {
                    agg.bad_line(Reason::LineTooLong, line, head);
                    line += 1;
                    skipping = None;
                    buf.copy_within(i + 1..filled, 0);
                    filled -= i + 1;
                }
                None if eof => {
                    agg.bad_line(Reason::LineTooLong, line, head);
                    return Ok(line);
                }
                None => filled = 0,
            }
        }
        if skipping.is_none() {
            let fed = format.feed(&mut time, &buf[..filled], eof, line, max, agg);
            line += fed.lines;
            if eof {
                return Ok(line - 1);
            }
            if fed.consumed == 0 && filled == buf.len() {
                skipping = Some(buf[..crate::rejects::TEXT_LIMIT.min(filled)].to_vec());
                filled = 0;
            } else {
                buf.copy_within(fed.consumed..filled, 0);
                filled -= fed.consumed;
            }
        }
        let n = dec.read(&mut buf[filled..])?;
        eof = n == 0;
        filled += n;
    }
}

/// A record too long to hold, walked byte by byte for its quotes and newlines until a newline
/// outside quotes ends it (the scanner's rule), keeping only its first bytes for the report.
struct Skip {
    line: u64,
    newlines: u64,
    /// Whether quotes hide newlines (CSV); in the other formats every newline ends a line.
    quotes: bool,
    quoted: bool,
    last: u8,
    head: Vec<u8>,
}

impl Skip {
    /// Starts with the record's bytes so far (none of them ends it).
    fn new(line: u64, seen: &[u8], quotes: bool) -> Skip {
        let mut s = Skip {
            line,
            newlines: 0,
            quotes,
            quoted: false,
            last: 0,
            head: seen[..seen.len().min(crate::rejects::TEXT_LIMIT)].to_vec(),
        };
        for &b in seen {
            match b {
                b'"' if quotes => s.quoted = !s.quoted,
                b'\n' => s.newlines += 1,
                _ => {}
            }
        }
        s.last = seen.last().copied().unwrap_or(0);
        s
    }

    /// Feeds more bytes; `Some(i)` when the record ends with the newline at `i` (the rest
    /// of `bytes` after it is the next record's).
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        if !self.quotes {
            let i = memchr::memchr(b'\n', bytes);
            self.newlines += u64::from(i.is_some());
            self.last = bytes.last().copied().unwrap_or(self.last);
            return i.map(|i| i + 1);
        }
        for i in memchr::memchr2_iter(b'"', b'\n', bytes) {
            if bytes[i] == b'"' {
                self.quoted = !self.quoted;
            } else if self.quoted {
                self.newlines += 1;
            } else {
                self.newlines += 1;
                return Some(i + 1);
            }
        }
        if let Some(&b) = bytes.last() {
            self.last = b;
        }
        None
    }

    /// Rejects the record; returns how many physical lines it took.
    fn finish(self, agg: &mut Aggregator, at_eof: bool) -> u64 {
        // Ended by a newline, the record's lines are its newlines; at the end of input, a last
        // line without a newline is one more.
        let lines = if at_eof {
            self.newlines + u64::from(self.last != b'\n')
        } else {
            self.newlines
        };
        let why = if at_eof && self.quoted {
            Swallowed::UnclosedQuote
        } else {
            Swallowed::TooLong
        };
        agg.swallowed(why, lines, self.line, &self.head);
        lines
    }
}

/// Turns byte offsets of rejects in plain files into line numbers, one pass per such file.
fn resolve_offsets(inputs: &[Input], agg: &mut Aggregator) {
    let kept = &mut agg.rejects.kept;
    kept.sort_by_key(|r| (r.file, r.at));
    for group in kept.chunk_by_mut(|a, b| a.file == b.file) {
        let has_offsets = group.iter().any(|r| matches!(r.at, Position::Offset(_)));
        if let Some(input) = inputs.get(group[0].file as usize)
            && has_offsets
            && let Some(path) = input.path()
            && let Ok(f) = File::open(path)
        {
            offsets_to_lines(&f, group);
        }
    }
}

/// Counts newlines up to each reject's offset (rejects sorted by offset).
fn offsets_to_lines(f: &File, rejects: &mut [crate::rejects::Reject]) {
    let mut buf = vec![0u8; 1 << 20];
    let (mut at, mut line) = (0u64, 1u64);
    for r in rejects {
        let Position::Offset(off) = r.at else {
            continue;
        };
        while at < off {
            let want = ((off - at) as usize).min(buf.len());
            match f.read_at(&mut buf[..want], at) {
                Ok(n) if n > 0 => {
                    line += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                    at += n as u64;
                }
                _ => break,
            }
        }
        r.at = Position::Line(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn options(chunk_bytes: u64, max_line_bytes: usize) -> ReadOptions {
        ReadOptions {
            columns: ColumnNames::default(),
            floor_day: 0,
            ceiling_minute: i64::MAX,
            max_line_bytes,
            chunk_bytes,
            keep_all_rejects: true,
            formats: FormatSpec {
                forced: Some(Format::Csv),
                ..FormatSpec::default()
            },
            s3: None,
        }
    }

    /// Cells, reject counts, kept rejects (line, reason) and lines read.
    type Outcome = (
        Vec<(String, i32, Vec<u64>)>,
        Vec<u64>,
        Vec<(u64, String)>,
        u64,
    );

    /// What a read found, in a form two reads can be compared by.
    fn outcome(r: ReadResult) -> Outcome {
        let lines = r.files.iter().map(|f| f.lines).sum();
        let mut kept: Vec<(u64, String)> = r
            .agg
            .rejects
            .kept
            .iter()
            .map(|k| match k.at {
                Position::Line(l) | Position::Offset(l) => (l, k.reason.name().to_owned()),
            })
            .collect();
        kept.sort();
        let counts = r.agg.rejects.counts.to_vec();
        let cells = r
            .agg
            .into_cells()
            .into_iter()
            .map(|c| (c.domain.to_string(), c.day.0, c.minutes.to_vec()))
            .collect();
        (cells, counts, kept, lines)
    }

    fn read(path: &std::path::Path, opts: &ReadOptions, stream: bool) -> ReadResult {
        let input = Input {
            size: std::fs::metadata(path).unwrap().len(),
            source: Source::File(path.to_path_buf()),
        };
        let how = if stream { How::Stream } else { How::AsPlanned };
        read_all_as(&[input], &[false], opts, &ProgressBar::hidden(), vec![how])
    }

    /// What a read that also hashes the file finds, its identity checked against a separate
    /// hash of the file.
    fn read_identified(path: &std::path::Path, opts: &ReadOptions) -> Outcome {
        let input = Input {
            size: std::fs::metadata(path).unwrap().len(),
            source: Source::File(path.to_path_buf()),
        };
        let hashed = read_and_identify(
            std::slice::from_ref(&input),
            &[true],
            opts,
            &ProgressBar::hidden(),
        );
        assert_eq!(hashed.identities, vec![Some(Ok(input.identity().unwrap()))]);
        outcome(hashed)
    }

    /// A field: plain, or quoted with commas, newlines and doubled quotes inside; now and then
    /// a stray quote that never closes.
    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => "[a-z0-9./]{0,6}",
            2 => proptest::collection::vec(
                prop_oneof![Just(",".to_owned()), Just("\n".to_owned()), Just("\"\"".to_owned()), "[a-z]{1,3}"],
                0..5
            ).prop_map(|parts| format!("\"{}\"", parts.concat())),
            1 => Just("x\"y".to_owned()),
        ]
    }

    fn line() -> impl Strategy<Value = String> {
        (0u32..3, 0u32..4, 0u64..1000, field(), 0u32..20).prop_map(
            |(min, dom, bytes, uri, shape)| {
                let time = format!("2019-12-10T20:0{min}:00Z");
                let domain = format!("d{dom}.example.com");
                match shape {
                    0 => format!("{time},{domain},{uri}"),
                    1 => format!("{time},{domain},{uri},{bytes},extra"),
                    _ => format!("{time},{domain},{uri},{bytes}"),
                }
            },
        )
    }

    #[test]
    fn a_cloudfront_file_is_read_whole_in_order_as_its_stream_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("E2ABC.2019-12-10-20.abcd1234");
        let mut f = File::create(&path).unwrap();
        writeln!(f, "#Version: 1.0").unwrap();
        writeln!(
            f,
            "#Fields: date time sc-bytes x-host-header x-edge-result-type"
        )
        .unwrap();
        for i in 0..40 {
            writeln!(
                f,
                "2019-12-10\t20:{:02}:00\t{i}\ta.example.com\tMiss",
                i % 60
            )
            .unwrap();
        }
        writeln!(f, "2019-12-10\t20:00:00\ttoo-few").unwrap();
        // A second block whose columns come in another order: only a reader that met it
        // first reads the lines after it right.
        writeln!(
            f,
            "#Fields: x-edge-result-type x-host-header sc-bytes time date"
        )
        .unwrap();
        for i in 0..40 {
            writeln!(
                f,
                "Miss\tb.example.com\t{i}\t21:{:02}:00\t2019-12-10",
                i % 60
            )
            .unwrap();
        }
        writeln!(
            f,
            "Miss\tb.example.com\t{}\t21:00:00\t2019-12-10",
            "9".repeat(90)
        )
        .unwrap();
        drop(f);
        let mut opts = options(16, 80);
        opts.formats.forced = Some(Format::Cloudfront);
        let serial = outcome(read(&path, &opts, true));
        assert_eq!(serial.0.len(), 2, "both blocks' domains: {serial:?}");
        assert_eq!(serial.3, 85);
        assert_eq!(outcome(read(&path, &opts, false)), serial);
        assert_eq!(read_identified(&path, &opts), serial);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn chunked_reading_at_any_cut_agrees_with_one_serial_stream(
            lines in proptest::collection::vec(line(), 0..60),
            chunk in 1u64..200,
            max in prop_oneof![Just(MAX_LINE_BYTES), 20usize..80],
            crlf in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("in.csv");
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut f = File::create(&path).unwrap();
            write!(f, "time,domain,uri,bytes{eol}").unwrap();
            for l in &lines {
                write!(f, "{l}{eol}").unwrap();
            }
            drop(f);
            let serial = outcome(read(&path, &options(CHUNK, max), true));
            let chunked = outcome(read(&path, &options(chunk, max), false));
            prop_assert_eq!(&chunked, &serial);
            // Read whole and hashed on the way: the same outcome, and the identity of the
            // bytes as a separate hash gives it.
            let input = Input {
                size: std::fs::metadata(&path).unwrap().len(),
                source: Source::File(path.clone()),
            };
            let hashed = read_and_identify(std::slice::from_ref(&input), &[true], &options(chunk, max), &ProgressBar::hidden());
            prop_assert_eq!(&hashed.identities, &vec![Some(Ok(input.identity().unwrap()))]);
            prop_assert_eq!(outcome(hashed), serial);
        }
    }

    #[test]
    fn every_kind_of_file_is_identified_as_a_separate_hash_identifies_it() {
        let dir = tempfile::tempdir().unwrap();
        let line = "2019-12-10T20:00:00Z,a.example.com,/x,10\n";
        let files: [(&str, Vec<u8>); 5] = [
            (
                "plain.csv",
                format!("time,domain,uri,bytes\n{line}{line}").into_bytes(),
            ),
            ("header-only.csv", b"time,domain,uri,bytes\n".to_vec()),
            ("empty.csv", Vec::new()),
            ("no-columns.csv", format!("when,where\n{line}").into_bytes()),
            (
                "cf.log",
                b"#Version: 1.0\n#Fields: date time\n2019-12-10\t20:00:00\n".to_vec(),
            ),
        ];
        let mut inputs = Vec::new();
        for (name, bytes) in &files {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            inputs.push(Input {
                size: bytes.len() as u64,
                source: Source::File(path),
            });
        }
        let gz = dir.path().join("plain.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), Default::default());
        enc.write_all(&files[0].1).unwrap();
        enc.finish().unwrap();
        inputs.push(Input {
            size: std::fs::metadata(&gz).unwrap().len(),
            source: Source::File(gz),
        });
        // A gzip that breaks off: its stream fails part way, and the rest is hashed from the file.
        let bad = dir.path().join("broken.csv.gz");
        let mut broken = std::fs::read(inputs[5].path().unwrap()).unwrap();
        broken.truncate(broken.len() / 2);
        broken.extend_from_slice(&[0xAB; 300_000]);
        std::fs::write(&bad, &broken).unwrap();
        inputs.push(Input {
            size: broken.len() as u64,
            source: Source::File(bad),
        });
        let mut hash = vec![true; inputs.len()];
        hash[1] = false;
        let r = read_and_identify(
            &inputs,
            &hash,
            &options(CHUNK, MAX_LINE_BYTES),
            &ProgressBar::hidden(),
        );
        for (i, input) in inputs.iter().enumerate() {
            let want = hash[i].then(|| Ok(input.identity().unwrap()));
            assert_eq!(r.identities[i], want, "{}", input.display());
        }
        // The plain file and its gzip'd copy count the same lines; the broken one fails.
        assert_eq!(r.files[0].lines, r.files[5].lines);
        assert!(r.files[6].error.is_some());
        assert_eq!(r.agg.stats.accepted, 4);
    }

    #[test]
    fn a_quoted_newline_across_a_cut_neither_loses_nor_invents_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        let mut text = String::from("time,domain,uri,bytes\n");
        // The quoted field holds what looks like a whole line for a domain that never appears.
        text.push_str("2019-12-10T20:00:00Z,a.example.com,\"/x\n2019-12-10T20:00:00Z,phantom.example.com,/y,999\n\",10\n");
        text.push_str("2019-12-10T20:01:00Z,b.example.com,/z,20\n");
        std::fs::write(&path, &text).unwrap();
        for chunk in 1..text.len() as u64 {
            let r = outcome(read(&path, &options(chunk, MAX_LINE_BYTES), false));
            let domains: Vec<&str> = r.0.iter().map(|c| c.0.as_str()).collect();
            assert_eq!(
                domains,
                ["a.example.com", "b.example.com"],
                "cut every {chunk} bytes"
            );
            assert_eq!(r.1.iter().sum::<u64>(), 0, "cut every {chunk} bytes");
            assert_eq!(r.3, 5, "cut every {chunk} bytes");
        }
    }

    /// One record past the limit in a plain file, read in chunks: walked without being
    /// held, rejected once at its line, with the lines around it read and the file's
    /// identity hashed from every byte.
    #[test]
    fn a_record_past_the_limit_in_a_plain_file_is_walked_not_held() {
        let dir = tempfile::tempdir().unwrap();
        let block = "q".repeat(3000);
        let cases = [
            (
                Format::Csv,
                "in.csv",
                format!(
                    "time,domain,uri,bytes\n2019-12-10T20:00:00Z,a.example.com,/a,1\n2019-12-10T20:00:00Z,a.example.com,/{block}\"in\nquotes\"{block},7\n2019-12-10T20:01:00Z,a.example.com,/b,2\n2019-12-10T20:02:00Z,b.example.com,/c,3"
                ),
                3,
                6,
            ),
            (
                Format::Cloudflare,
                "in.json",
                format!(
                    "{{\"ClientRequestHost\":\"a.example.com\",\"EdgeStartTimestamp\":1575979200,\"OriginResponseStatus\":200,\"OriginResponseBytes\":1}}\n{{\"ClientRequestHost\":\"a.example.com\",\"x\":\"{block}\"}}\n{{\"ClientRequestHost\":\"b.example.com\",\"EdgeStartTimestamp\":1575979260,\"OriginResponseStatus\":200,\"OriginResponseBytes\":2}}"
                ),
                2,
                3,
            ),
        ];
        for (format, name, text, at, lines) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, &text).unwrap();
            let mut opts = options(CHUNK, 1000);
            opts.formats.forced = Some(format);
            let chunked = read(&path, &opts, false);
            assert_eq!(
                chunked.agg.rejects.counts[Reason::LineTooLong.index()],
                if format == Format::Csv { 2 } else { 1 },
                "{format:?}: one reject, counted for each line it spans"
            );
            assert_eq!(
                chunked.agg.rejects.kept[0].at,
                Position::Line(at),
                "{format:?}"
            );
            assert_eq!(
                chunked.agg.stats.accepted,
                3 - u64::from(format != Format::Csv)
            );
            let got = outcome(chunked);
            assert_eq!(got.3, lines, "{format:?}");
            assert_eq!(got, outcome(read(&path, &opts, true)), "{format:?}");
            assert_eq!(read_identified(&path, &opts), got, "{format:?}");
        }
    }

    #[test]
    fn a_line_past_the_limit_is_rejected_while_the_buffer_stays_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(b"time,domain,uri,bytes\n2019-12-10T20:00:00Z,a.example.com,/a,1\n")
            .unwrap();
        gz.write_all(b"2019-12-10T20:00:00Z,a.example.com,/")
            .unwrap();
        // 5 MiB of one line, with a quoted newline in it, then two good lines.
        let block = vec![b'q'; 1 << 20];
        for i in 0..5 {
            gz.write_all(&block).unwrap();
            if i == 2 {
                gz.write_all(b"\"in\nquotes\"").unwrap();
            }
        }
        gz.write_all(
            b",7\n2019-12-10T20:01:00Z,a.example.com,/b,2\n2019-12-10T20:02:00Z,b.example.com,/c,3",
        )
        .unwrap();
        gz.finish().unwrap();
        let r = read(&path, &options(CHUNK, 1 << 16), true);
        assert_eq!(
            r.agg.rejects.counts[crate::rejects::Reason::LineTooLong.index()],
            2,
            "it spans two lines"
        );
        assert_eq!(r.agg.rejects.kept[0].at, Position::Line(3));
        assert_eq!(r.files[0].lines, 6);
        assert_eq!(r.agg.stats.accepted, 3);
        assert_eq!(r.agg.stats.records, 5);
    }
}

#[cfg(test)]
mod fuzz {
    //! Arbitrary bytes, plain and gzip, into the reader for a fixed time.
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::io::Write;

    /// How long the loop runs; long enough for thousands of inputs.
    const BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

    fn input(path: &std::path::Path) -> Input {
        Input {
            size: std::fs::metadata(path).map_or(0, |m| m.len()),
            source: Source::File(path.to_path_buf()),
        }
    }

    /// Up to 2,000 bytes mostly from `alphabet`, some random, often after `first`.
    fn shaped(rng: &mut rand::rngs::StdRng, alphabet: &[u8], noise: f64, first: &[u8]) -> Vec<u8> {
        let len = rng.random_range(0..2_000);
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.random_bool(noise) {
                    rng.random()
                } else {
                    alphabet[rng.random_range(0..alphabet.len())]
                }
            })
            .collect();
        if rng.random_bool(0.7) {
            bytes.splice(0..0, first.iter().copied());
        }
        bytes
    }

    /// The same bytes plain and gzip'd.
    fn write_both(plain: &std::path::Path, gz: &std::path::Path, bytes: &[u8]) {
        std::fs::write(plain, bytes).unwrap();
        let mut enc =
            flate2::write::GzEncoder::new(File::create(gz).unwrap(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap();
    }

    /// Random limits for a read.
    fn options(rng: &mut rand::rngs::StdRng, formats: FormatSpec) -> ReadOptions {
        ReadOptions {
            columns: ColumnNames::default(),
            floor_day: 18_000,
            ceiling_minute: 26_000_000,
            max_line_bytes: rng.random_range(8..400),
            chunk_bytes: rng.random_range(1..300),
            keep_all_rejects: false,
            formats,
            s3: None,
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_every_record_is_accounted_for() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, gz) = (dir.path().join("in.csv"), dir.path().join("in.csv.gz"));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Mostly CSV-shaped bytes, so that records get far enough to fail in every way.
        let alphabet = b"time,domain,bytes\n\r\"-0123456789.:TZa.example.com2019-12-10 \xff\x00";
        let started = std::time::Instant::now();
        let mut inputs = 0u64;
        while started.elapsed() < BUDGET {
            let bytes = shaped(&mut rng, alphabet, 0.05, b"time,domain,bytes\n");
            write_both(&plain, &gz, &bytes);
            let opts = options(
                &mut rng,
                FormatSpec {
                    forced: Some(Format::Csv),
                    ..FormatSpec::default()
                },
            );
            let read = |p: &std::path::Path| read_all(&[input(p)], &opts, &ProgressBar::hidden());
            let (a, b) = (read(&plain), read(&gz));
            for r in [&a, &b] {
                let s = &r.agg.stats;
                assert_eq!(
                    s.accepted + s.expired + r.agg.rejects.total(),
                    s.records,
                    "{:?}",
                    String::from_utf8_lossy(&bytes)
                );
                assert!(
                    s.records <= r.files[0].lines,
                    "{:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            assert_eq!(a.files[0].lines, b.files[0].lines);
            assert_eq!(a.agg.rejects.counts, b.agg.rejects.counts);
            assert_eq!(a.agg.into_cells(), b.agg.into_cells());
            inputs += 1;
        }
        assert!(inputs > 100, "only {inputs} inputs in {BUDGET:?}");
        // SAFETY: getrusage fills the struct we pass.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        assert!(
            usage.ru_maxrss < 512 * 1024,
            "peak RSS {} KiB",
            usage.ru_maxrss
        );
    }
    #[test]
    fn arbitrary_bytes_into_every_line_format_never_panic_and_account_for_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, gz) = (dir.path().join("in"), dir.path().join("in.gz"));
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let nginx = crate::formats::nginx::NginxFormat::compile(
            "[$time_local] $host \"$request\" $upstream_status $upstream_bytes_received",
        )
        .unwrap();
        let json = crate::formats::json::JsonFields {
            time: "t".into(),
            domain: "d".into(),
            bytes: "b".into(),
            scheme: Some("s".into()),
            status: Some("c".into()),
            cache_status: Some("h".into()),
        };
        // Per format: bytes shaped like it, and a first line that makes records get far.
        let cases: [(Format, &[u8], &[u8]); 5] = [
            (
                Format::Cloudfront,
                b"\t\n-0123456789:.%2E#Fields: date time sc-bytes x-edge-result-type x-host-header Miss Hit https 2019-12-10 a.com",
                b"#Fields: date time sc-bytes x-edge-result-type x-host-header cs-protocol sc-status\n",
            ),
            (
                Format::Alibaba,
                b"[]\" \\/:+-0123456789 Dec MISS HIT GET http://a.com/ https://",
                b"[10/Dec/2019:20:00:13 +0800] 1 - 1 \"-\" \"GET http://a.com/\" 200 1 2 MISS \"-\" \"-\"\n",
            ),
            (
                Format::Cloudflare,
                b"{}[]\":,\\u0 0123456789 ClientRequestHost EdgeStartTimestamp OriginResponseStatus CacheResponseBytes a.com miss",
                b"{\"ClientRequestHost\":\"a.com\",\"EdgeStartTimestamp\":1576008000,\"OriginResponseStatus\":200,\"CacheResponseBytes\":5}\n",
            ),
            (
                Format::Jsonl,
                b"{}[]\":,\\ 0123456789.tdbsch a.com https",
                b"{\"t\":1576008000.5,\"d\":\"a.com\",\"b\":7,\"s\":\"https\",\"c\":\"200\"}\n",
            ),
            (
                Format::Nginx,
                b"[]\" /:+,-0123456789 Dec a.com GET",
                b"[10/Dec/2019:20:00:13 +0800] a.com \"GET /\" 502, 200 : 304 10, 20\n",
            ),
        ];
        let mut inputs = 0u64;
        for (format, alphabet, first) in cases {
            let started = std::time::Instant::now();
            while started.elapsed() < BUDGET / 5 {
                let bytes = shaped(&mut rng, alphabet, 0.03, first);
                write_both(&plain, &gz, &bytes);
                let opts = options(
                    &mut rng,
                    FormatSpec {
                        forced: Some(format),
                        json: Some(json.clone()),
                        nginx: Some(nginx.clone()),
                        ..FormatSpec::default()
                    },
                );
                let read =
                    |p: &std::path::Path| read_all(&[input(p)], &opts, &ProgressBar::hidden());
                let (a, b) = (read(&plain), read(&gz));
                let shown = || format!("{format:?}: {:?}", String::from_utf8_lossy(&bytes));
                for r in [&a, &b] {
                    let s = &r.agg.stats;
                    assert_eq!(
                        s.accepted + s.expired + s.cached + r.agg.rejects.total(),
                        s.records,
                        "{}",
                        shown()
                    );
                    assert!(s.records <= r.files[0].lines, "{}", shown());
                }
                assert_eq!(a.files[0].lines, b.files[0].lines, "{}", shown());
                assert_eq!(a.agg.rejects.counts, b.agg.rejects.counts, "{}", shown());
                assert_eq!(a.agg.stats.cached, b.agg.stats.cached, "{}", shown());
                assert_eq!(a.agg.into_cells(), b.agg.into_cells(), "{}", shown());
                inputs += 1;
            }
        }
        assert!(inputs > 100, "only {inputs} inputs in {BUDGET:?}");
    }
}
