//! Minutes and days since the Unix epoch (UTC), and the API's one time format,
//! `yyyy-MM-ddTHH:mm:ssZ`.
//!
//! Integers rather than `chrono` values on the hot paths: the batch bins every log line into a
//! minute and the API formats up to 10,080 time stamps per answer.

use chrono::{DateTime, NaiveDate, Utc};
use std::fmt;

/// Minutes in one UTC day.
pub const MINUTES_PER_DAY: i64 = 1440;

/// A UTC minute: whole minutes since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Minute(pub i64);

/// A UTC day: whole days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

impl Minute {
    /// The minute that holds `secs` seconds since the epoch (floored, also for negatives).
    pub fn from_unix_seconds(secs: i64) -> Minute {
        Minute(secs.div_euclid(60))
    }

    /// The minute holding a `chrono` instant.
    pub fn from_datetime(t: DateTime<Utc>) -> Minute {
        Self::from_unix_seconds(t.timestamp())
    }

    /// Seconds since the epoch at the start of this minute.
    pub fn unix_seconds(self) -> i64 {
        self.0 * 60
    }

    /// The day this minute belongs to.
    pub fn day(self) -> Day {
        Day(self.0.div_euclid(MINUTES_PER_DAY) as i32)
    }

    /// Index of this minute inside its day, 0..1440.
    pub fn minute_of_day(self) -> usize {
        self.0.rem_euclid(MINUTES_PER_DAY) as usize
    }

    /// Formats as `yyyy-MM-ddTHH:mm:00Z` without allocating.
    pub fn to_api_bytes(self) -> [u8; 20] {
        let (y, mo, d) = civil_from_days(self.day().0 as i64);
        let m = self.minute_of_day();
        let mut out = *b"0000-00-00T00:00:00Z";
        let y = y.clamp(0, 9999) as usize;
        put2(&mut out[0..2], y / 100);
        put2(&mut out[2..4], y % 100);
        put2(&mut out[5..7], mo as usize);
        put2(&mut out[8..10], d as usize);
        put2(&mut out[11..13], m / 60);
        put2(&mut out[14..16], m % 60);
        out
    }
}

impl fmt::Display for Minute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_api_bytes();
        // The buffer holds only ASCII digits and separators.
        f.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?)
    }
}

impl Day {
    /// The first minute of this day.
    pub fn first_minute(self) -> Minute {
        Minute(self.0 as i64 * MINUTES_PER_DAY)
    }

    /// The calendar date, or `None` outside chrono's range.
    pub fn date(self) -> Option<NaiveDate> {
        NaiveDate::from_num_days_from_ce_opt(self.0.checked_add(EPOCH_DAYS_FROM_CE)?)
    }

    /// The day of a calendar date.
    pub fn from_date(d: NaiveDate) -> Day {
        Day(d.num_days_from_ce() - EPOCH_DAYS_FROM_CE)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Day> {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .map(Self::from_date)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(self.0 as i64);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

use chrono::Datelike;
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

fn put2(dst: &mut [u8], v: usize) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

/// Howard Hinnant's days-to-civil: (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Howard Hinnant's days-from-civil: days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Number of days in a month of a year, or 0 for a month outside 1..=12.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// An instant written exactly as `yyyy-MM-ddTHH:mm:ssZ`, as the API takes and echoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiTime {
    unix_seconds: i64,
}

impl ApiTime {
    /// Parses the exact API format; anything else (other separators, offsets, fractions,
    /// impossible dates, a 60th second) is `None`.
    pub fn parse(s: &str) -> Option<ApiTime> {
        let b = s.as_bytes();
        if b.len() != 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
            || b[19] != b'Z'
        {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            b[r].iter().try_fold(0u32, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y as i64, mo) {
            return None;
        }
        if h > 23 || mi > 59 || sec > 59 {
            return None;
        }
        let days = days_from_civil(y as i64, mo, d);
        Some(ApiTime {
            unix_seconds: days * 86_400 + (h * 3600 + mi * 60 + sec) as i64,
        })
    }

    /// The instant for a count of seconds since the epoch.
    pub fn from_unix_seconds(unix_seconds: i64) -> ApiTime {
        ApiTime { unix_seconds }
    }

    /// Seconds since the epoch.
    pub fn unix_seconds(self) -> i64 {
        self.unix_seconds
    }

    /// The minute this instant falls in.
    pub fn minute(self) -> Minute {
        Minute::from_unix_seconds(self.unix_seconds)
    }
}

impl fmt::Display for ApiTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = self.minute().to_api_bytes();
        put2(&mut b[17..19], self.unix_seconds.rem_euclid(60) as usize);
        f.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_seed_time_parses_to_its_minute() {
        let t = ApiTime::parse("2019-12-10T20:01:00Z").unwrap();
        assert_eq!(t.unix_seconds(), 1_576_008_060);
        assert_eq!(t.to_string(), "2019-12-10T20:01:00Z");
        assert_eq!(t.minute().to_string(), "2019-12-10T20:01:00Z");
        assert_eq!(t.minute().day().to_string(), "2019-12-10");
    }

    #[test]
    fn near_misses_of_the_format_are_rejected() {
        for s in [
            "2019-12-10T20:01:00",
            "2019-12-10 20:01:00Z",
            "2019-12-10T20:01:00+08:00",
            "2019-12-10T20:01:00.000Z",
            "2019-02-29T00:00:00Z",
            "2019-13-01T00:00:00Z",
            "2019-12-10T24:00:00Z",
            "2019-12-10T20:01:60Z",
            "2019-12-1OT20:01:00Z",
            "٢٠١٩-12-10T20:01:00Z",
            "",
        ] {
            assert!(ApiTime::parse(s).is_none(), "{s}");
        }
        assert!(ApiTime::parse("2020-02-29T23:59:59Z").is_some());
    }

    proptest! {
        #[test]
        fn api_times_round_trip(secs in -62_135_596_800i64..253_402_300_799) {
            let t = ApiTime::from_unix_seconds(secs);
            let s = t.to_string();
            prop_assert_eq!(ApiTime::parse(&s), Some(t));
            let chrono = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
            prop_assert_eq!(s, chrono.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }

        #[test]
        fn days_agree_with_chrono(day in -700_000i32..2_900_000) {
            let d = Day(day);
            let date = d.date().unwrap();
            prop_assert_eq!(d.to_string(), date.format("%Y-%m-%d").to_string());
            prop_assert_eq!(Day::from_date(date), d);
        }

        #[test]
        fn arbitrary_strings_never_panic_the_parser(s in any::<String>()) {
            let _ = ApiTime::parse(&s);
        }
    }
}
