//! Reads a set of inputs in parallel into one [`Aggregator`].
//!
//! Plain files are cut into line-aligned chunks of [`CHUNK`] bytes, each mapped and scanned on
//! its own (a mapping lives only as long as its chunk, so resident memory stays near
//! `threads x CHUNK` whatever the input size). Gzip files and S3 objects are one stream each
//! (inflated when their first bytes say gzip) into a fixed buffer; a stream that fails half way
//! (truncated, corrupt, connection lost) contributes nothing, so the input can be fed again later
//! without double counting.

use crate::aggregate::{Aggregator, Origin};
use crate::header::{self, ColumnNames};
use crate::input::{self, Input, Source};
use crate::rejects::{Position, Reason};
use crate::scan::{self, Columns};
use flate2::read::MultiGzDecoder;
use indicatif::ProgressBar;
use memmap2::MmapOptions;
use rayon::prelude::*;
use std::fs::File;
use std::io::{self, BufRead, Read};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes per parallel chunk of a plain file.
pub const CHUNK: u64 = 8 << 20;
const GZ_BUF: usize = 1 << 20;

/// Settings of one read.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Column names to look for.
    pub columns: ColumnNames,
    /// Lines of days before this one are expired.
    pub floor_day: i64,
    /// Keep every reject (for `--rejects`).
    pub keep_all_rejects: bool,
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
    /// The header lacks this column; every line was rejected.
    pub missing_column: Option<String>,
    /// The file has no bytes at all.
    pub empty: bool,
}

/// Everything read.
#[derive(Debug)]
pub struct ReadResult {
    /// The totals and rejects.
    pub agg: Aggregator,
    /// One report per input, in input order.
    pub files: Vec<FileReport>,
}

enum Task {
    Chunk {
        file: u32,
        handle: Arc<File>,
        begin: u64,
        end: u64,
        cols: Columns,
    },
    Stream {
        file: u32,
    },
}

/// Reads every input; never fails as a whole: each file's trouble is in its report.
pub fn read_all(inputs: &[Input], opts: &ReadOptions, progress: &ProgressBar) -> ReadResult {
    let planned: Vec<(Vec<Task>, FileReport)> = inputs
        .par_iter()
        .enumerate()
        .map(|(i, input)| plan(i as u32, input, opts))
        .collect();
    let mut files = Vec::with_capacity(inputs.len());
    let mut tasks = Vec::new();
    for (t, report) in planned {
        tasks.extend(t);
        files.push(report);
    }
    // Whole streams first: they are the longest tasks.
    tasks.sort_by_key(|t| match t {
        Task::Stream { .. } => 0,
        Task::Chunk { .. } => 1,
    });
    // One aggregator per worker rather than per task: merging one costs about as much as
    // scanning a chunk. Each report says whether it came from a chunk, whose failure leaves
    // sibling chunks counted.
    let fresh = || Aggregator::new(opts.floor_day, opts.keep_all_rejects);
    let pool: Mutex<Vec<Aggregator>> = Mutex::new(Vec::new());
    let take = || lock(&pool).pop().unwrap_or_else(fresh);
    let (lines_done, started) = (AtomicU64::new(0), std::time::Instant::now());
    let reports: Vec<(u32, FileReport, bool)> = tasks
        .into_par_iter()
        .with_max_len(1)
        .map(|task| {
            let mut agg = take();
            let report = match task {
                Task::Chunk {
                    file,
                    handle,
                    begin,
                    end,
                    cols,
                } => {
                    let report = match read_chunk(&mut agg, file, &handle, begin, end, &cols) {
                        Ok(lines) => FileReport {
                            lines,
                            ..Default::default()
                        },
                        Err(e) => FileReport {
                            error: Some(e.to_string()),
                            ..Default::default()
                        },
                    };
                    progress.inc(end - begin);
                    (file, report, true)
                }
                Task::Stream { file } => {
                    let mut local = fresh();
                    let report =
                        read_stream(&mut local, file, &inputs[file as usize], opts, progress);
                    if report.error.is_none() {
                        agg.merge(local);
                    }
                    (file, report, false)
                }
            };
            lock(&pool).push(agg);
            let done = lines_done.fetch_add(report.1.lines, Ordering::Relaxed) + report.1.lines;
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
            progress.set_message(format!("{:.2} M lines/s", rate / 1e6));
            crate::failpoint::hit("read");
            report
        })
        .collect();
    let mut aggs = pool.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut agg = aggs.pop().unwrap_or_else(fresh);
    for other in aggs {
        agg.merge(other);
    }
    let mut failed_chunks: Vec<usize> = Vec::new();
    for (file, r, chunk) in reports {
        let f = &mut files[file as usize];
        f.lines += r.lines;
        if chunk && r.error.is_some() {
            failed_chunks.push(file as usize);
        }
        f.error = f.error.take().or(r.error);
        f.missing_column = f.missing_column.take().or(r.missing_column);
    }
    // A plain file whose chunk failed to read has its other chunks counted already; such a file
    // must contribute nothing, so read everything again without it. Rare: an I/O error.
    let failed = failed_chunks;
    if !failed.is_empty() {
        let keep: Vec<Input> = inputs
            .iter()
            .enumerate()
            .filter(|(i, _)| !failed.contains(i))
            .map(|(_, x)| x.clone())
            .collect();
        let again = read_all(&keep, opts, &ProgressBar::hidden());
        let mut it = again.files.into_iter();
        for (i, f) in files.iter_mut().enumerate() {
            if !failed.contains(&i) {
                *f = it.next().unwrap_or_default();
            }
        }
        agg = again.agg;
        return ReadResult { agg, files };
    }
    // A file without a required column: every data line is rejected, counted once here.
    for f in &files {
        if f.missing_column.is_some() {
            let n = f.lines.saturating_sub(1);
            agg.rejects.add_uncounted_lines(Reason::MissingColumn, n);
            agg.stats.records += n;
        }
    }
    resolve_offsets(inputs, &mut agg);
    ReadResult { agg, files }
}

/// Locks the pool; a poisoned lock only means a worker panicked, and the aggregators are whole.
fn lock(pool: &Mutex<Vec<Aggregator>>) -> MutexGuard<'_, Vec<Aggregator>> {
    pool.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads the header and cuts a plain file into chunk tasks; a gzip file is one task.
fn plan(file: u32, input: &Input, opts: &ReadOptions) -> (Vec<Task>, FileReport) {
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
    let mut head = vec![0u8; header_end as usize];
    if let Err(e) = handle.read_exact_at(&mut head, 0) {
        return fail(e);
    }
    let cols = match header::parse(head.strip_suffix(b"\n").unwrap_or(&head), &opts.columns) {
        Ok(c) => c,
        Err(missing) => {
            let lines = count_lines(&handle, size).unwrap_or(0);
            return (
                Vec::new(),
                FileReport {
                    lines,
                    missing_column: Some(missing),
                    ..Default::default()
                },
            );
        }
    };
    let mut tasks = Vec::new();
    let mut begin = header_end;
    while begin < size {
        let end = match next_line_start(&handle, (begin + CHUNK).min(size), size) {
            Ok(e) => e,
            Err(e) => return fail(e),
        };
        tasks.push(Task::Chunk {
            file,
            handle: handle.clone(),
            begin,
            end,
            cols,
        });
        begin = end;
    }
    (
        tasks,
        FileReport {
            lines: 1,
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

fn read_chunk(
    agg: &mut Aggregator,
    file: u32,
    handle: &File,
    begin: u64,
    end: u64,
    cols: &Columns,
) -> io::Result<u64> {
    if end <= begin {
        return Ok(0);
    }
    // SAFETY: the mapping is read-only and private to this task. Log files are written once
    // and not changed while the batch reads them; a file truncated underneath a mapping would
    // fault, which is why inputs must be complete before they are handed to the batch.
    let map = unsafe {
        MmapOptions::new()
            .offset(begin)
            .len((end - begin) as usize)
            .map(handle)?
    };
    agg.set_origin(
        file,
        Origin::Offsets {
            base_ptr: map.as_ptr() as usize,
            base_off: begin,
        },
    );
    Ok(scan::scan(&map, cols, true, 0, agg).lines)
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
) -> io::Result<Box<dyn Read + 'a>> {
    let raw: Box<dyn Read + Send> = match &input.source {
        Source::File(p) => Box::new(File::open(p)?),
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

fn read_stream(
    agg: &mut Aggregator,
    file: u32,
    input: &Input,
    opts: &ReadOptions,
    progress: &ProgressBar,
) -> FileReport {
    let mut report = FileReport::default();
    let result = (|| -> io::Result<()> {
        let mut dec = open_stream(input, opts, progress)?;
        let mut buf = vec![0u8; GZ_BUF];
        let mut filled = 0usize;
        let mut cols: Option<Columns> = None;
        let mut line = 1u64;
        agg.set_origin(file, Origin::Lines);
        loop {
            if filled == buf.len() {
                // One record longer than the buffer: grow for it.
                buf.resize(buf.len() * 2, 0);
            }
            let n = dec.read(&mut buf[filled..])?;
            let eof = n == 0;
            filled += n;
            let mut start = 0usize;
            if cols.is_none() {
                let Some(nl) = memchr::memchr(b'\n', &buf[..filled]).or(eof.then_some(filled))
                else {
                    continue;
                };
                let head = &buf[..nl];
                match header::parse(head, &opts.columns) {
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
            let end = scan::scan(&buf[start..filled], c, eof, line, agg);
            line += end.lines;
            let used = start + end.consumed;
            buf.copy_within(used..filled, 0);
            filled -= used;
            if eof {
                break;
            }
        }
        report.lines = line - 1;
        Ok(())
    })();
    if let Err(e) = result {
        report.error = Some(e.to_string());
    }
    report
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
