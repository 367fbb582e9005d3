//! From a raw HTTP request to a checked [`QueryRequest`]: parse, don't validate. Holding a
//! `QueryRequest` means every rule of SPEC.md sections 1 and 3 held, with section 8's for the
//! action asked for.

use super::action::Action;
use super::error::ApiError;
use super::params::Params;
use crate::domain::{DomainList, MAX_DOMAINS_WIDE};
use crate::time::{ApiTime, Minute};

/// The seed's action, `DescribeDomainRealTimeSrcTrafficData`; [`Action`] names the others.
pub const ACTION: &str = "DescribeDomainRealTimeSrcTrafficData";
/// The one API version this service answers.
pub const VERSION: &str = "2018-05-10";
/// Most points one answer may hold.
pub const MAX_POINTS: i64 = 10_080;
/// How far back `StartTime` may reach: the retention window.
pub const RETENTION_DAYS: i64 = 90;

/// What the function knows of a request, without depending on any HTTP crate.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawRequest<'a> {
    /// The HTTP method, upper case.
    pub method: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The raw body.
    pub body: &'a [u8],
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The `Accept` header.
    pub accept: Option<&'a str>,
    /// The `x-acs-action` header (V3 callers).
    pub acs_action: Option<&'a str>,
    /// The `x-acs-version` header (V3 callers).
    pub acs_version: Option<&'a str>,
}

impl<'a> RawRequest<'a> {
    /// Decodes the query string and, when the body is a form (or untyped), the body.
    pub fn params(&self) -> Params {
        let form = self.content_type.is_none_or(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        let body = (form && !self.body.is_empty()).then_some(self.body);
        Params::decode(self.query, body)
    }
}

/// The response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json;charset=utf-8`
    Json,
    /// `text/xml;charset=utf-8`, the default as in Alibaba's common parameters.
    Xml,
}

impl Format {
    /// Picks the format: the `Format` parameter (any case), else the `Accept` header, else XML.
    /// An unknown `Format` is an error, to be rendered in the format the header would pick.
    pub fn negotiate(param: Option<&str>, accept: Option<&str>) -> (Format, Result<(), ApiError>) {
        let from_accept = match accept.map(str::to_ascii_lowercase) {
            Some(a) if a.contains("application/json") => Format::Json,
            _ => Format::Xml,
        };
        match param {
            None => (from_accept, Ok(())),
            Some(p) if p.eq_ignore_ascii_case("json") => (Format::Json, Ok(())),
            Some(p) if p.eq_ignore_ascii_case("xml") => (Format::Xml, Ok(())),
            Some(_) => (from_accept, Err(ApiError::FormatInvalid)),
        }
    }

    /// The `Content-Type` of answers in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json;charset=utf-8",
            Format::Xml => "text/xml;charset=utf-8",
        }
    }
}

/// The width of one answered slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// 60 seconds.
    Minute,
    /// 300 seconds.
    FiveMinutes,
    /// 3,600 seconds.
    Hour,
    /// 86,400 seconds.
    Day,
}

impl Interval {
    /// Parses exactly `60`, `300`, `3600` or `86400`.
    pub fn parse(s: &str) -> Result<Interval, ApiError> {
        match s {
            "60" => Ok(Interval::Minute),
            "300" => Ok(Interval::FiveMinutes),
            "3600" => Ok(Interval::Hour),
            "86400" => Ok(Interval::Day),
            _ => Err(ApiError::IntervalInvalid),
        }
    }

    /// The default for a span: 60 s up to 24 hours, 300 s up to 7 days, 3,600 s beyond.
    pub fn default_for_span(span_seconds: i64) -> Interval {
        if span_seconds <= 86_400 {
            Interval::Minute
        } else if span_seconds <= 7 * 86_400 {
            Interval::FiveMinutes
        } else {
            Interval::Hour
        }
    }

    /// Width in seconds.
    pub fn seconds(self) -> i64 {
        self.minutes() * 60
    }

    /// Width in minutes.
    pub fn minutes(self) -> i64 {
        match self {
            Interval::Minute => 1,
            Interval::FiveMinutes => 5,
            Interval::Hour => 60,
            Interval::Day => 1440,
        }
    }

    /// The longest span one query of the non-real-time actions may ask for at this interval
    /// (SPEC.md section 8): 3 days at 300 s, 31 at 3,600 s, 366 at 86,400 s (they do not offer
    /// 60 s; a day, for completeness).
    pub fn longest_span_days(self) -> u16 {
        match self {
            Interval::Minute => 1,
            Interval::FiveMinutes => 3,
            Interval::Hour => 31,
            Interval::Day => 366,
        }
    }

    /// The start of the slot holding `m`; slots are aligned to the epoch.
    pub fn floor(self, m: Minute) -> Minute {
        Minute(m.0 - m.0.rem_euclid(self.minutes()))
    }
}

/// A checked query: a known action, valid domains, an ordered range inside retention, an
/// interval the action offers that keeps the answer within [`MAX_POINTS`] and the action's span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRequest {
    /// The action asked for.
    pub action: Action,
    /// `DomainName` exactly as given, for the echo (`""` when absent).
    pub domain_param: String,
    /// The distinct, normalised names; `None` (non-real-time actions only, `DomainName` absent
    /// or empty): every domain the caller may read.
    pub domains: Option<DomainList>,
    /// The effective start.
    pub start: ApiTime,
    /// The effective end, later than `start`.
    pub end: ApiTime,
    /// The slot width.
    pub interval: Interval,
}

impl QueryRequest {
    /// The first slot's start.
    pub fn first_slot(&self) -> Minute {
        self.interval.floor(self.start.minute())
    }

    /// The last slot's start (inclusive).
    pub fn last_slot(&self) -> Minute {
        self.interval.floor(self.end.minute())
    }
}

/// Parses and checks a request against the data clock `now` (seconds since the epoch).
///
/// Returns the answer format in every case, so that errors, too, go out in the caller's format.
pub fn parse_request(raw: &RawRequest<'_>, now: i64) -> (Format, Result<QueryRequest, ApiError>) {
    let params = raw.params();
    let (format, format_ok) = Format::negotiate(params.get("Format"), raw.accept);
    (
        format,
        format_ok.and_then(|()| parse_decoded(raw, &params, now)),
    )
}

/// Checks a request whose parameters are already decoded from `raw` and whose format was
/// negotiated (the function does both once per request, for the signature check and for this).
pub fn parse_decoded(
    raw: &RawRequest<'_>,
    params: &Params,
    now: i64,
) -> Result<QueryRequest, ApiError> {
    if raw.method != "GET" && raw.method != "POST" {
        return Err(ApiError::ActionNotFound);
    }
    let action = match params.get("Action").or(raw.acs_action) {
        None | Some("") => return Err(ApiError::MissingParameter("Action")),
        Some(name) => Action::from_name(name).ok_or(ApiError::ActionNotFound)?,
    };
    let real_time = action.spec().real_time;
    if params
        .get("Version")
        .or(raw.acs_version)
        .is_some_and(|v| v != VERSION)
    {
        return Err(ApiError::VersionInvalid);
    }
    let domain_param = params.get("DomainName").unwrap_or_default();
    let domains = if real_time {
        Some(DomainList::parse(domain_param)?)
    } else if domain_param.trim().is_empty() {
        None
    } else {
        Some(DomainList::parse_at_most(domain_param, MAX_DOMAINS_WIDE)?)
    };

    let parse_time = |name: &str, err: ApiError| {
        params
            .get(name)
            .map(|s| ApiTime::parse(s).ok_or(err))
            .transpose()
    };
    let start = parse_time("StartTime", ApiError::StartTimeMalformed)?;
    let end = parse_time("EndTime", ApiError::EndTimeMalformed)?;
    let (start, end) = match (start, end) {
        (Some(s), Some(e)) => (s, e),
        (None, None) => {
            let end = ApiTime::from_unix_seconds(now.div_euclid(60) * 60);
            (ApiTime::from_unix_seconds(end.unix_seconds() - 86_400), end)
        }
        _ => return Err(ApiError::StartEndNotPaired),
    };
    if end <= start {
        return Err(ApiError::EndTimeMismatch);
    }
    if start.unix_seconds() > now || start.unix_seconds() < now - RETENTION_DAYS * 86_400 {
        return Err(ApiError::StartTimeNotSupported);
    }
    let span = end.unix_seconds() - start.unix_seconds();
    let interval = match (params.get("Interval"), real_time) {
        (Some(s), true) => Interval::parse(s)?,
        (None, true) => Interval::default_for_span(span),
        (Some(s), false) => Interval::parse(s)
            .ok()
            .filter(|&iv| iv != Interval::Minute)
            .ok_or(ApiError::IntervalNotOffered)?,
        (None, false) => Interval::FiveMinutes,
    };
    if !real_time {
        let days = interval.longest_span_days();
        if span > i64::from(days) * 86_400 {
            return Err(ApiError::TimeSpanTooLong {
                days,
                interval: interval.seconds() as u32,
            });
        }
    }
    let req = QueryRequest {
        action,
        // Every domain is answered as `""`, however the empty parameter was spelt.
        domain_param: if domains.is_some() {
            domain_param.to_owned()
        } else {
            String::new()
        },
        domains,
        start,
        end,
        interval,
    };
    let points = (req.last_slot().0 - req.first_slot().0) / interval.minutes() + 1;
    if points > MAX_POINTS {
        return Err(ApiError::TimeSpanTooLarge);
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_576_022_400; // 2019-12-11T00:00:00Z

    fn get(q: &str) -> (Format, Result<QueryRequest, ApiError>) {
        parse_request(
            &RawRequest {
                method: "GET",
                query: Some(q),
                ..Default::default()
            },
            NOW,
        )
    }

    fn err(q: &str) -> ApiError {
        get(&format!("Action={ACTION}&{q}")).1.unwrap_err()
    }

    #[test]
    fn the_seed_request_is_accepted_with_a_one_minute_interval() {
        let (format, r) = get(&format!(
            "Action={ACTION}&DomainName=example.com&StartTime=2019-12-10T20:00:00Z&EndTime=2019-12-10T20:01:00Z"
        ));
        let r = r.unwrap();
        assert_eq!(format, Format::Xml);
        assert_eq!(r.interval, Interval::Minute);
        assert_eq!(r.last_slot().0 - r.first_slot().0, 1);
    }

    #[test]
    fn without_times_the_last_24_hours_up_to_the_floored_minute_are_asked() {
        let r = parse_request(
            &RawRequest {
                method: "GET",
                query: Some(&format!("Action={ACTION}&DomainName=a.com")),
                ..Default::default()
            },
            NOW + 59,
        )
        .1
        .unwrap();
        assert_eq!(r.end.unix_seconds(), NOW);
        assert_eq!(r.start.unix_seconds(), NOW - 86_400);
    }

    #[test]
    fn every_time_rule_has_its_error() {
        let d = "DomainName=a.com";
        assert_eq!(
            err(&format!("{d}&StartTime=2019-12-10T20:00:00Z")),
            ApiError::StartEndNotPaired
        );
        assert_eq!(
            err(&format!("{d}&EndTime=2019-12-10T20:00:00Z")),
            ApiError::StartEndNotPaired
        );
        assert_eq!(
            err(&format!(
                "{d}&StartTime=2019-12-10&EndTime=2019-12-10T20:00:00Z"
            )),
            ApiError::StartTimeMalformed
        );
        assert_eq!(
            err(&format!("{d}&StartTime=2019-12-10T20:00:00Z&EndTime=x")),
            ApiError::EndTimeMalformed
        );
        assert_eq!(
            err(&format!(
                "{d}&StartTime=2019-12-10T20:00:00Z&EndTime=2019-12-10T20:00:00Z"
            )),
            ApiError::EndTimeMismatch
        );
        assert_eq!(
            err(&format!(
                "{d}&StartTime=2019-12-11T00:00:01Z&EndTime=2019-12-11T01:00:00Z"
            )),
            ApiError::StartTimeNotSupported
        );
        assert_eq!(
            err(&format!(
                "{d}&StartTime=2019-09-11T23:59:59Z&EndTime=2019-09-12T01:00:00Z"
            )),
            ApiError::StartTimeNotSupported
        );
        assert_eq!(
            err(&format!(
                "{d}&StartTime=2019-09-12T00:00:00Z&EndTime=2019-12-10T00:00:00Z&Interval=60"
            )),
            ApiError::TimeSpanTooLarge
        );
        assert_eq!(
            err(&format!(
                "{d}&StartTime=2019-12-10T00:00:00Z&EndTime=2019-12-10T01:00:00Z&Interval=61"
            )),
            ApiError::IntervalInvalid
        );
    }

    #[test]
    fn defaults_widen_the_interval_with_the_span() {
        let iv = |s: &str, e: &str| {
            get(&format!(
                "Action={ACTION}&DomainName=a.com&StartTime={s}&EndTime={e}"
            ))
            .1
            .unwrap()
            .interval
        };
        assert_eq!(
            iv("2019-12-10T00:00:00Z", "2019-12-11T00:00:00Z"),
            Interval::Minute
        );
        assert_eq!(
            iv("2019-12-03T00:00:00Z", "2019-12-10T00:00:00Z"),
            Interval::FiveMinutes
        );
        assert_eq!(
            iv("2019-09-13T00:00:00Z", "2019-12-10T00:00:00Z"),
            Interval::Hour
        );
    }

    #[test]
    fn action_version_method_and_format_are_checked_first() {
        let p = |method: &str, q: &str| {
            parse_request(
                &RawRequest {
                    method,
                    query: Some(q),
                    ..Default::default()
                },
                NOW,
            )
            .1
            .unwrap_err()
        };
        assert_eq!(
            p("GET", "DomainName=a.com"),
            ApiError::MissingParameter("Action")
        );
        assert_eq!(p("GET", "Action=Nope"), ApiError::ActionNotFound);
        assert_eq!(
            p("DELETE", &format!("Action={ACTION}")),
            ApiError::ActionNotFound
        );
        assert_eq!(
            p("GET", &format!("Action={ACTION}&Version=2014-11-11")),
            ApiError::VersionInvalid
        );
        assert_eq!(
            p("GET", &format!("Action={ACTION}&Format=yaml")),
            ApiError::FormatInvalid
        );
        assert_eq!(
            p("GET", &format!("Action={ACTION}")),
            ApiError::MissingParameter("DomainName")
        );
    }

    #[test]
    fn v3_callers_name_the_action_in_headers_and_ask_for_json_by_accept() {
        let raw = RawRequest {
            method: "POST",
            query: Some("DomainName=a.com"),
            acs_action: Some(ACTION),
            acs_version: Some(VERSION),
            accept: Some("application/json"),
            ..Default::default()
        };
        let (format, r) = parse_request(&raw, NOW);
        assert_eq!(format, Format::Json);
        assert!(r.is_ok());
    }

    #[test]
    fn a_form_body_carries_parameters_and_format_is_any_case() {
        let body = format!("Action={ACTION}&DomainName=a.com&Format=json");
        let raw = RawRequest {
            method: "POST",
            body: body.as_bytes(),
            content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
            ..Default::default()
        };
        let (format, r) = parse_request(&raw, NOW);
        assert_eq!(format, Format::Json);
        assert!(r.is_ok());
    }

    /// `Action=name&...` against the fixed clock.
    fn sibling(name: &str, q: &str) -> Result<QueryRequest, ApiError> {
        get(&format!("Action={name}&{q}")).1
    }

    #[test]
    fn every_action_of_the_family_is_parsed_and_others_are_not_found() {
        let q = "DomainName=a.com&StartTime=2019-12-10T20:00:00Z&EndTime=2019-12-10T21:00:00Z";
        for a in Action::all() {
            let r = sibling(a.name(), q).unwrap();
            assert_eq!(r.action, a);
            let want = if a.spec().real_time {
                Interval::Minute
            } else {
                Interval::FiveMinutes
            };
            assert_eq!(r.interval, want, "{}", a.name());
        }
        assert_eq!(
            sibling("DescribeDomainSrcTopUrlVisit", q),
            Err(ApiError::ActionNotFound)
        );
    }

    #[test]
    fn the_wide_actions_take_no_domain_as_all_and_up_to_500_names() {
        let wide = "DescribeDomainSrcBpsData";
        let r = sibling(wide, "Format=JSON").unwrap();
        assert_eq!((r.domains, r.domain_param.as_str()), (None, ""));
        assert!(sibling(wide, "DomainName=").unwrap().domains.is_none());
        assert_eq!(sibling(wide, "DomainName=+%20").unwrap().domain_param, "");
        assert_eq!(
            sibling("DescribeDomainRealTimeSrcBpsData", "DomainName="),
            Err(ApiError::MissingParameter("DomainName"))
        );
        let names = |n: usize| {
            (0..n)
                .map(|i| format!("d{i}.com"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let r = sibling(wide, &format!("DomainName={}", names(500))).unwrap();
        assert_eq!(r.domains.unwrap().names().len(), 500);
        assert_eq!(
            sibling(wide, &format!("DomainName={}", names(501))),
            Err(ApiError::DomainNameOverLimit(500))
        );
        assert_eq!(
            sibling(
                "DescribeDomainRealTimeSrcHttpCodeData",
                &format!("DomainName={}", names(101))
            ),
            Err(ApiError::DomainNameOverLimit(100))
        );
    }

    #[test]
    fn the_wide_actions_offer_300_3600_86400_each_with_its_longest_span() {
        let wide = "DescribeDomainSrcQpsData";
        let ask = |start: i64, secs: i64, iv: &str| {
            let (s, e) = (
                ApiTime::from_unix_seconds(start),
                ApiTime::from_unix_seconds(start + secs),
            );
            sibling(wide, &format!("StartTime={s}&EndTime={e}&Interval={iv}"))
        };
        let start = NOW - 80 * 86_400;
        assert_eq!(ask(start, 3600, "60"), Err(ApiError::IntervalNotOffered));
        assert_eq!(ask(start, 3600, "120"), Err(ApiError::IntervalNotOffered));
        for (iv, days) in [("300", 3), ("3600", 31), ("86400", 366)] {
            let r = ask(start, days * 86_400, iv).unwrap();
            assert_eq!(r.interval.seconds().to_string(), iv);
            assert_eq!(
                ask(start, days * 86_400 + 60, iv),
                Err(ApiError::TimeSpanTooLong {
                    days: days as u16,
                    interval: iv.parse().unwrap()
                })
            );
        }
        // The default is 300 s whatever the span: a longer span must name its interval.
        assert_eq!(
            sibling(
                wide,
                "StartTime=2019-12-01T00:00:00Z&EndTime=2019-12-05T00:00:00Z"
            ),
            Err(ApiError::TimeSpanTooLong {
                days: 3,
                interval: 300
            })
        );
    }

    proptest! {
        #[test]
        fn arbitrary_query_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let q = String::from_utf8_lossy(&bytes);
            let _ = parse_request(&RawRequest { method: "GET", query: Some(&q), body: &bytes, ..Default::default() }, NOW);
        }

        #[test]
        fn accepted_ranges_are_ordered_inside_retention_and_small(
            start in (NOW - 100 * 86_400)..(NOW + 86_400),
            len in 1i64..(100 * 86_400),
            iv in proptest::option::of(prop_oneof!["60", "300", "3600", "86400"]),
        ) {
            let s = ApiTime::from_unix_seconds(start);
            let e = ApiTime::from_unix_seconds(start + len);
            let mut q = format!("Action={ACTION}&DomainName=a.com&StartTime={s}&EndTime={e}");
            if let Some(iv) = &iv { q.push_str(&format!("&Interval={iv}")); }
            if let (_, Ok(r)) = get(&q) {
                prop_assert!(r.start < r.end);
                prop_assert!(r.start.unix_seconds() <= NOW);
                prop_assert!(r.start.unix_seconds() >= NOW - RETENTION_DAYS * 86_400);
                prop_assert!((r.last_slot().0 - r.first_slot().0) / r.interval.minutes() < MAX_POINTS);
            }
        }
    }
}
