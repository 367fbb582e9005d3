//! How `gen-logs --format F` writes one request in each log format, with the quirks real files
//! have (see FORMATS.md): CloudFront's directive blocks, URL-encoded hosts and `-` values;
//! Alibaba's China-time offsets and escaped quotes; Cloudflare's three timestamp kinds, members
//! in any order and nested ones; nginx's upstream lists.

use crate::formats::Format;
use srctraffic::Minute;
use std::io::Write;

/// The `log_format` of the nginx files `gen-logs` writes.
pub const NGINX_LOG_FORMAT: &str = r#"$remote_addr - [$time_local] "$request" $status $host $scheme $upstream_cache_status $upstream_status $upstream_bytes_received "$http_user_agent""#;

/// The JSON keys of the `jsonl` files `gen-logs` writes, as `--time-field` and friends.
pub const JSONL_KEYS: [(&str, &str); 5] = [
    ("--time-field", "ts"),
    ("--domain-field", "host"),
    ("--bytes-field", "bytes"),
    ("--scheme-field", "scheme"),
    ("--status-field", "status"),
];

const CF_FIELDS: &str = "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end";
/// The second block of a CloudFront file: fewer fields, in another order.
const CF_FIELDS_2: &str = "date time x-edge-result-type sc-status cs-protocol x-host-header cs(Host) sc-bytes x-edge-detailed-result-type";

/// One generated request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// When, in Unix milliseconds.
    pub ms: i64,
    /// The domain as the log writes it (sometimes in mixed case).
    pub domain: &'a str,
    /// GET, HEAD or POST.
    pub method: &'a str,
    /// The path and query, without CSV quoting.
    pub uri: &'a str,
    /// The origin's (or, for a hit, the edge's) status.
    pub status: u16,
    /// Origin bytes (edge bytes for a hit).
    pub bytes: u64,
    /// Over HTTPS.
    pub https: bool,
    /// Fetched from the origin (false: served from cache, not counted).
    pub origin: bool,
    /// For nginx: bytes per upstream tried (summing to `bytes`), with each one's status.
    pub upstreams: &'a [(u16, u64)],
    /// A client address.
    pub ip: [u8; 3],
    /// A request id.
    pub id: u128,
    /// Which file, for per-file quirks.
    pub file: usize,
    /// Which line of the file.
    pub line: u64,
    /// Lines in the file.
    pub lines: u64,
}

/// What a file of `format` starts with.
pub fn file_head(format: Format) -> String {
    match format {
        Format::Csv => format!("{}\n", crate::genlogs::HEADER),
        Format::Cloudfront => format!("#Version: 1.0\n#Fields: {CF_FIELDS}\n"),
        _ => String::new(),
    }
}

/// A file name in the style of each vendor.
pub fn file_name(
    format: Format,
    day: srctraffic::Day,
    hour: usize,
    index: usize,
    gzip: bool,
) -> String {
    let gz = if gzip { ".gz" } else { "" };
    let d = day.to_string();
    let compact = d.replace('-', "_");
    match format {
        Format::Csv => format!("{d}T{hour:02}-{index:03}.csv{gz}"),
        Format::Cloudfront => format!("E2GENERATED.{d}-{hour:02}.{index:08x}{gz}"),
        Format::Alibaba => {
            format!("all.example.com_{compact}_{hour:02}0000_{hour:02}5959_{index:03}{gz}")
        }
        Format::Cloudflare => format!("{}T{hour:02}_{index:03}.log{gz}", d.replace('-', "")),
        Format::Jsonl => format!("{d}T{hour:02}-{index:03}.jsonl{gz}"),
        Format::Nginx => format!("access-{d}T{hour:02}-{index:03}.log{gz}"),
    }
}

fn utc(ms: i64) -> (String, String) {
    let api = Minute(ms.div_euclid(60_000)).to_string();
    let s = ms.rem_euclid(60_000) / 1000;
    (api[..10].to_owned(), format!("{}:{s:02}", &api[11..16]))
}

/// `dd/Mon/yyyy:HH:MM:SS +0800` of a UTC instant, in China time (crossing midnight UTC).
fn china_time(ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let local = ms + 8 * 3_600_000;
    let api = Minute(local.div_euclid(60_000)).to_string();
    let (y, m, d) = (&api[0..4], &api[5..7], &api[8..10]);
    let month = MONTHS[m.parse::<usize>().unwrap_or(1).clamp(1, 12) - 1];
    let s = local.rem_euclid(60_000) / 1000;
    format!("{d}/{month}/{y}:{}:{s:02} +0800", &api[11..16])
}

/// Appends one request as `format` writes it.
pub fn write_line(format: Format, r: &Request<'_>, out: &mut Vec<u8>) -> std::io::Result<()> {
    let scheme = if r.https { "https" } else { "http" };
    let [a, b, c] = r.ip;
    match format {
        Format::Csv => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "CSV lines are written by gen-logs itself",
            ));
        }
        Format::Cloudfront => {
            let (date, time) = utc(r.ms);
            // Every 37th host URL-encoded, as CloudFront may write it.
            let host = if r.line % 37 == 5 {
                r.domain.replace('.', "%2E")
            } else {
                r.domain.to_owned()
            };
            let result = if r.origin {
                "Miss"
            } else if r.line.is_multiple_of(2) {
                "Hit"
            } else {
                "RefreshHit"
            };
            // A hit of the shield is a miss at the edge that did not go to the origin.
            let (result, detailed) = if !r.origin && r.line.is_multiple_of(5) {
                ("Miss", "OriginShieldHit")
            } else {
                (result, result)
            };
            let bytes = if r.bytes == 0 && r.line.is_multiple_of(3) {
                "-".to_owned()
            } else {
                r.bytes.to_string()
            };
            if r.line == r.lines / 2 {
                writeln!(out, "#Fields: {CF_FIELDS_2}")?;
            }
            if r.line >= r.lines / 2 {
                writeln!(
                    out,
                    "{date}\t{time}\t{result}\t{}\t{scheme}\t{host}\td1gen.cloudfront.net\t{bytes}\t{detailed}",
                    r.status
                )?;
            } else {
                writeln!(
                    out,
                    "{date}\t{time}\tLAX1-C1\t{bytes}\t10.{a}.{b}.{c}\t{}\td1gen.cloudfront.net\t{}\t{}\t-\tMozilla/5.0%20(X11)\t-\t-\t{result}\t{:x}\t{host}\t{scheme}\t120\t0.002\t-\tTLSv1.3\tTLS_AES_128_GCM_SHA256\t{result}\tHTTP/2.0\t-\t-\t443\t0.001\t{detailed}\ttext/html\t{}\t-\t-",
                    r.method,
                    r.uri.split('?').next().unwrap_or("/"),
                    r.status,
                    r.id,
                    r.bytes
                )?;
            }
        }
        Format::Alibaba => {
            let hit = if r.origin { "MISS" } else { "HIT" };
            let ua = if r.line.is_multiple_of(11) {
                r#"Mozilla/5.0 (say \"hi\")"#
            } else {
                "Mozilla/5.0"
            };
            writeln!(
                out,
                r#"[{}] 10.{a}.{b}.{c} - {} "-" "{} {scheme}://{}{} HTTP/1.1" {} 320 {} {hit} "{ua}" "image/jpeg""#,
                china_time(r.ms),
                r.id % 3000,
                r.method,
                r.domain,
                r.uri,
                r.status,
                r.bytes
            )?;
        }
        Format::Cloudflare => {
            let status = if r.origin { r.status } else { 0 };
            let cache = if r.origin { "miss" } else { "hit" };
            let ts = match r.file % 3 {
                0 => format!("{}", r.ms as i128 * 1_000_000),
                1 => format!("{}", r.ms.div_euclid(1000)),
                _ => {
                    let (date, time) = utc(r.ms);
                    format!("\"{date}T{time}Z\"")
                }
            };
            // Older jobs have no OriginResponseBytes: the cache's response bytes count then.
            let bytes = if r.file.is_multiple_of(2) {
                format!(
                    r#""OriginResponseBytes":{},"CacheResponseBytes":{}"#,
                    r.bytes,
                    r.bytes + 300
                )
            } else {
                format!(r#""CacheResponseBytes":{}"#, r.bytes)
            };
            writeln!(
                out,
                r#"{{"ClientRequestHost":"{}","ClientRequestMethod":"{}","RequestHeaders":{{"x-a":"{{b}}"}},"ClientRequestScheme":"{scheme}","EdgeStartTimestamp":{ts},"CacheCacheStatus":"{cache}",{bytes},"OriginResponseStatus":{status},"EdgeResponseStatus":{}}}"#,
                r.domain, r.method, r.status
            )?;
        }
        Format::Jsonl => {
            let ts = if r.line.is_multiple_of(2) {
                let (date, time) = utc(r.ms);
                format!("\"{date}T{time}Z\"")
            } else {
                format!("{}.{:03}", r.ms.div_euclid(1000), r.ms.rem_euclid(1000))
            };
            writeln!(
                out,
                r#"{{"ts":{ts},"host":"{}","bytes":{},"scheme":"{scheme}","status":"{}","uri":"{}"}}"#,
                r.domain, r.bytes, r.status, r.uri
            )?;
        }
        Format::Nginx => {
            let (cache, statuses, bytes) = if r.origin {
                let s: Vec<String> = r.upstreams.iter().map(|u| u.0.to_string()).collect();
                let b: Vec<String> = r.upstreams.iter().map(|u| u.1.to_string()).collect();
                ("MISS", s.join(", "), b.join(", "))
            } else {
                ("HIT", "-".to_owned(), "-".to_owned())
            };
            writeln!(
                out,
                r#"10.{a}.{b}.{c} - [{}] "{} {} HTTP/1.1" {} {} {scheme} {cache} {statuses} {bytes} "Mozilla/5.0""#,
                china_time(r.ms),
                r.method,
                r.uri,
                r.status,
                r.domain
            )?;
        }
    }
    Ok(())
}
