//! `gen-logs`: realistic synthetic logs in any format, one file per hour, with their ground
//! truth (`OUT.truth.csv`: bytes per domain and minute; `OUT.truth.measures.csv`: bytes, HTTPS
//! bytes, origin requests and requests per status code). Edge formats get requests served
//! from cache too, which are not in the truth.
//!
//! Domains follow a Zipf law, traffic a day's curve, bytes a lognormal; times are in order with
//! a few seconds of jitter, and a few lines arrive hours late. About 1% of URIs are quoted with
//! commas inside, about 1% of domains are in mixed case, and bad lines come only on request.
//! Columns, in BENCH.md's order:
//! `time,domain,origin_ip,method,uri,status,bytes,duration_ms,cache_status,request_id`, and with
//! `--scheme-column` an eleventh, `scheme`.

use flate2::Compression;
use flate2::write::GzEncoder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};
use rayon::prelude::*;
use srctraffic::{Day, Minute};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use crate::formats::Format;
use crate::genformats::{self, Request};

/// The header every generated file starts with.
pub const HEADER: &str =
    "time,domain,origin_ip,method,uri,status,bytes,duration_ms,cache_status,request_id";

/// Settings of `gen-logs`.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Output directory.
    pub out: PathBuf,
    /// Number of domains.
    pub domains: usize,
    /// Number of good lines.
    pub rows: u64,
    /// The day.
    pub day: Day,
    /// gzip each file.
    pub gzip: bool,
    /// Random seed.
    pub seed: u64,
    /// Share of extra, deliberately bad lines.
    pub bad_ratio: f64,
    /// Number of files (the day is cut into this many equal spans).
    pub files: usize,
    /// Ground truth path (default: beside `out`).
    pub truth: Option<PathBuf>,
    /// The log format to write.
    pub format: Format,
    /// CSV: add a `scheme` column after BENCH.md's ten.
    pub scheme_column: bool,
}

/// What `gen-logs` wrote.
#[derive(Debug, Clone)]
pub struct GenReport {
    /// Files written.
    pub files: usize,
    /// Good lines.
    pub rows: u64,
    /// Bad lines.
    pub bad: u64,
    /// Bytes written (compressed when gzip).
    pub bytes: u64,
    /// Where the ground truth is.
    pub truth: PathBuf,
}

impl fmt::Display for GenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote {} files, {} lines ({} bad), {:.1} MB; ground truth in {}",
            self.files,
            self.rows + self.bad,
            self.bad,
            self.bytes as f64 / 1e6,
            self.truth.display()
        )
    }
}

/// The name of domain `i`.
pub fn domain_name(i: usize) -> String {
    const KINDS: [&str; 8] = [
        "img", "static", "video", "api", "dl", "cdn", "assets", "media",
    ];
    format!(
        "{}{i}.customer{}.example.com",
        KINDS[i % KINDS.len()],
        i % 97
    )
}

/// Writes the logs and the ground truth (`domain,minute,bytes`, sorted).
pub fn generate(opts: &GenOptions) -> io::Result<GenReport> {
    if opts.domains == 0 || opts.files == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--domains and --files must be at least 1",
        ));
    }
    std::fs::create_dir_all(&opts.out)?;
    let names: Vec<String> = (0..opts.domains).map(domain_name).collect();
    // A day's curve: quiet before dawn, busy in the evening.
    let weights: Vec<f64> = (0..opts.files)
        .map(|i| {
            let hour = (i as f64 + 0.5) * 24.0 / opts.files as f64;
            1.0 + 0.6 * ((hour - 9.0) / 24.0 * std::f64::consts::TAU).sin()
        })
        .collect();
    let wsum: f64 = weights.iter().sum();
    let mut rows: Vec<u64> = weights
        .iter()
        .map(|w| (opts.rows as f64 * w / wsum) as u64)
        .collect();
    let assigned: u64 = rows.iter().sum();
    if let Some(last) = rows.last_mut() {
        *last += opts.rows - assigned;
    }
    let results: Vec<io::Result<(u64, u64, FileTruth)>> = (0..opts.files)
        .into_par_iter()
        .map(|i| write_file(opts, &names, i, rows[i]))
        .collect();
    let mut truth: FileTruth = BTreeMap::new();
    let (mut bytes, mut bad) = (0u64, 0u64);
    for r in results {
        let (b, nbad, t) = r?;
        bytes += b;
        bad += nbad;
        for (k, v) in t {
            truth.entry(k).or_default().add(v);
        }
    }
    let truth_path = opts.truth.clone().unwrap_or_else(|| {
        let mut p = opts.out.clone().into_os_string();
        p.push(".truth.csv");
        PathBuf::from(p)
    });
    let mut w = BufWriter::new(std::fs::File::create(&truth_path)?);
    // The measures beside the bytes: OUT.truth.csv gives OUT.truth.measures.csv.
    let measures_path = truth_path.with_extension("measures.csv");
    let mut mw = BufWriter::new(std::fs::File::create(&measures_path)?);
    writeln!(w, "domain,minute,bytes")?;
    writeln!(mw, "domain,minute,bytes,https,requests,statuses")?;
    let mut sorted: Vec<_> = truth.into_iter().collect();
    sorted.sort_by(|a, b| (&names[a.0.0 as usize], a.0.1).cmp(&(&names[b.0.0 as usize], b.0.1)));
    for ((d, m), v) in sorted {
        let (name, minute) = (&names[d as usize], Minute(m));
        writeln!(w, "{name},{minute},{}", v.bytes)?;
        let codes: Vec<String> = v.statuses.iter().map(|(c, n)| format!("{c}:{n}")).collect();
        writeln!(
            mw,
            "{name},{minute},{},{},{},{}",
            v.bytes,
            v.https,
            v.requests,
            codes.join(" ")
        )?;
    }
    w.flush()?;
    mw.flush()?;
    Ok(GenReport {
        files: opts.files,
        rows: opts.rows,
        bad,
        bytes,
        truth: truth_path,
    })
}

/// Per (domain, minute): origin bytes, HTTPS bytes, origin requests, requests per status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measures {
    /// Origin bytes.
    pub bytes: u64,
    /// Of which over HTTPS.
    pub https: u64,
    /// Origin requests.
    pub requests: u64,
    /// Requests per origin status code.
    pub statuses: BTreeMap<u16, u64>,
}

impl Measures {
    fn add(&mut self, other: Measures) {
        self.bytes += other.bytes;
        self.https += other.https;
        self.requests += other.requests;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
    }
}

type FileTruth = BTreeMap<(u32, i64), Measures>;

fn write_file(
    opts: &GenOptions,
    names: &[String],
    index: usize,
    rows: u64,
) -> io::Result<(u64, u64, FileTruth)> {
    let mut rng =
        StdRng::seed_from_u64(opts.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64);
    let span_ms = 86_400_000 / opts.files as i64;
    let start_ms = opts.day.first_minute().unix_seconds() * 1000 + index as i64 * span_ms;
    let hour = index * 24 / opts.files;
    let path = opts.out.join(genformats::file_name(
        opts.format,
        opts.day,
        hour,
        index,
        opts.gzip,
    ));
    let file = std::fs::File::create(&path)?;
    let mut out: Box<dyn Write> = if opts.gzip {
        Box::new(BufWriter::with_capacity(
            1 << 20,
            GzEncoder::new(file, Compression::default()),
        ))
    } else {
        Box::new(BufWriter::with_capacity(1 << 20, file))
    };
    if opts.format == Format::Csv && opts.scheme_column {
        writeln!(out, "{HEADER},scheme")?;
    } else {
        out.write_all(genformats::file_head(opts.format).as_bytes())?;
    }
    let zipf = Zipf::new(names.len() as f64, 1.1).map_err(|e| io::Error::other(e.to_string()))?;
    let size = LogNormal::new(8.5, 1.8).map_err(|e| io::Error::other(e.to_string()))?;
    // Times in order within the span, then a few seconds of jitter.
    let mut times: Vec<i64> = (0..rows).map(|_| rng.random_range(0..span_ms)).collect();
    times.sort_unstable();
    let mut truth = FileTruth::new();
    let mut bad = 0u64;
    let mut line = Vec::with_capacity(256);
    for (n, t) in times.into_iter().enumerate() {
        let n = n as u64;
        let mut ms = start_ms + t + rng.random_range(-2000..=2000);
        if rng.random_bool(0.001) {
            ms -= rng.random_range(1..=6) * 3_600_000;
        }
        let d = (zipf.sample(&mut rng) as usize).clamp(1, names.len()) - 1;
        let method = match rng.random_range(0..100) {
            0..=89 => "GET",
            90..=96 => "HEAD",
            _ => "POST",
        };
        let status = match rng.random_range(0..100) {
            0..=79 => 200,
            80..=87 => 206,
            88..=94 => 304,
            95..=98 => 404,
            _ => 502,
        };
        let bytes = if method == "HEAD" || status == 304 {
            0
        } else {
            (size.sample(&mut rng) as u64).min(1 << 36)
        };
        // No draws for CSV, so its files stay what they were for a seed.
        let mut https = opts.format != Format::Csv && rng.random_bool(0.7);
        // Edge logs have a line per client request: most were served from cache.
        let origin = match opts.format {
            Format::Csv | Format::Jsonl => true,
            Format::Nginx => rng.random_bool(0.85),
            _ => rng.random_bool(0.75),
        };
        let mixed;
        let domain = if rng.random_bool(0.01) {
            mixed = names[d]
                .chars()
                .map(|c| {
                    if rng.random_bool(0.5) {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect::<String>();
            &mixed
        } else {
            &names[d]
        };
        let quoted = rng.random_range(0..1000);
        let uri = match quoted {
            0..=9 => format!("\"/search?q=a,b,{}&tags=x,y\"", rng.random_range(0..10_000)),
            10 => format!(
                "\"/say?w=\"\"hi, there\"\"&n={}\"",
                rng.random_range(0..100)
            ),
            _ => format!(
                "/static/{}/{}.jpg?v={}",
                d,
                rng.random_range(0..100_000),
                rng.random_range(0..9)
            ),
        };
        line.clear();
        if opts.format == Format::Csv {
            push_time(&mut line, ms);
            line.push(b',');
            line.extend_from_slice(domain.as_bytes());
            // Drawn in the order they are written, as they always were, so that a seed's files
            // stay what they were; the scheme comes from the request id, not a draw of its own.
            let ip = [
                rng.random_range(0..256),
                rng.random_range(0..256),
                rng.random_range(1..255),
            ];
            let duration = rng.random_range(1..3000);
            let cache = ["MISS", "EXPIRED", "REFRESH_MISS", "BYPASS"][rng.random_range(0..4)];
            let id = rng.random::<u128>();
            write!(
                line,
                ",10.{}.{}.{},{method},{uri},{status},{bytes},{duration},{cache},{id:032x}",
                ip[0], ip[1], ip[2]
            )?;
            if opts.scheme_column {
                https = id % 10 < 7;
                line.extend_from_slice(if https { b",https" } else { b",http" });
            }
            line.push(b'\n');
        } else {
            // Two tries of the origin now and then: a 502, then the answer.
            let upstreams: Vec<(u16, u64)> = if rng.random_bool(0.05) && bytes > 1 {
                let first = bytes / 3;
                vec![(502, first), (status, bytes - first)]
            } else {
                vec![(status, bytes)]
            };
            let plain_uri = if quoted <= 10 {
                "/search?q=a%2Cb"
            } else {
                uri.as_str()
            };
            let r = Request {
                ms,
                domain,
                method,
                uri: plain_uri,
                status,
                bytes,
                https,
                origin,
                upstreams: &upstreams,
                ip: [rng.random(), rng.random(), rng.random_range(1..255)],
                id: rng.random(),
                file: index,
                line: n,
                lines: rows,
            };
            genformats::write_line(opts.format, &r, &mut line)?;
        }
        out.write_all(&line)?;
        if origin {
            let m = truth.entry((d as u32, ms.div_euclid(60_000))).or_default();
            m.bytes += bytes;
            m.requests += 1;
            if https {
                m.https += bytes;
            }
            *m.statuses.entry(status).or_default() += 1;
        }
        if opts.bad_ratio > 0.0 && rng.random_bool(opts.bad_ratio.min(1.0)) {
            let junk = match rng.random_range(0..5) {
                0 => format!("not-a-time,{},x,GET,/,200,10,1,MISS,r\n", names[d]),
                1 => {
                    "2019-12-10T00:00:00.000Z,bad_domain!.com,x,GET,/,200,10,1,MISS,r\n".to_owned()
                }
                2 => format!(
                    "2019-12-10T00:00:00.000Z,{},x,GET,/,200,-5,1,MISS,r\n",
                    names[d]
                ),
                3 => format!(
                    "2019-12-10T00:00:00.000Z,{},x,GET,/,200,12kb,1,MISS,r\n",
                    names[d]
                ),
                _ => format!("2019-12-10T00:00:00.000Z,{},x,GET\n", names[d]),
            };
            out.write_all(junk.as_bytes())?;
            bad += 1;
        }
    }
    out.flush()?;
    drop(out);
    Ok((std::fs::metadata(&path)?.len(), bad, truth))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn push_time(out: &mut Vec<u8>, ms: i64) {
    let m = Minute(ms.div_euclid(60_000));
    let b = m.to_api_bytes();
    out.extend_from_slice(&b[..17]);
    let in_minute = ms.rem_euclid(60_000);
    let (s, milli) = (in_minute / 1000, in_minute % 1000);
    out.extend_from_slice(format!("{s:02}.{milli:03}Z").as_bytes());
}
