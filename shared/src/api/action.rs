//! The back-to-origin family (SPEC.md section 8): seven actions over the same per-minute cells,
//! each one row of [`ACTIONS`]: its name, its rules (real-time or not), which measure it sums
//! and how its answer is shaped. The request pipeline, the query and the renderer read the row;
//! no action has code of its own.

/// What an action answers per slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Origin bytes, as a decimal string.
    Bytes,
    /// Origin bytes x 8 / interval seconds, as a rate.
    Bits,
    /// Origin requests / interval seconds, as a rate.
    Requests,
    /// Origin requests per status code, with each code's share.
    Codes,
}

/// One action's row.
#[derive(Debug, PartialEq, Eq)]
pub struct ActionSpec {
    /// The `Action` parameter (or `x-acs-action` header).
    pub name: &'static str,
    /// Real-time rules (section 3: `DomainName` required, at most 100, any interval, at most
    /// 10,080 points) or the others' (`DomainName` optional, at most 500, 300 s and up, a
    /// longest span per interval).
    pub real_time: bool,
    /// What each slot carries.
    pub measure: Measure,
    /// Whether slots carry `HttpsValue` beside `Value`.
    pub https: bool,
    /// The data element (`RealTimeSrcTrafficDataPerInterval`).
    pub data: &'static str,
    /// The element each slot is in (`DataModule`, `UsageData`).
    pub item: &'static str,
    /// For [`Measure::Codes`]: the element each code is in, inside `Value`.
    pub code_item: &'static str,
}

/// An action this service answers: an index into [`ACTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Action(u8);

/// Every action, in SPEC.md's order; the first is the one the project started from.
pub const ACTIONS: [ActionSpec; 7] = [
    ActionSpec {
        name: "DescribeDomainRealTimeSrcTrafficData",
        real_time: true,
        measure: Measure::Bytes,
        https: false,
        data: "RealTimeSrcTrafficDataPerInterval",
        item: "DataModule",
        code_item: "",
    },
    ActionSpec {
        name: "DescribeDomainRealTimeSrcBpsData",
        real_time: true,
        measure: Measure::Bits,
        https: false,
        data: "RealTimeSrcBpsDataPerInterval",
        item: "DataModule",
        code_item: "",
    },
    ActionSpec {
        name: "DescribeDomainSrcTrafficData",
        real_time: false,
        measure: Measure::Bytes,
        https: true,
        data: "SrcTrafficDataPerInterval",
        item: "DataModule",
        code_item: "",
    },
    ActionSpec {
        name: "DescribeDomainSrcBpsData",
        real_time: false,
        measure: Measure::Bits,
        https: true,
        data: "SrcBpsDataPerInterval",
        item: "DataModule",
        code_item: "",
    },
    ActionSpec {
        name: "DescribeDomainSrcQpsData",
        real_time: false,
        measure: Measure::Requests,
        https: false,
        data: "SrcQpsDataPerInterval",
        item: "DataModule",
        code_item: "",
    },
    ActionSpec {
        name: "DescribeDomainRealTimeSrcHttpCodeData",
        real_time: true,
        measure: Measure::Codes,
        https: false,
        data: "RealTimeSrcHttpCodeData",
        item: "UsageData",
        code_item: "RealTimeSrcCodeProportionData",
    },
    ActionSpec {
        name: "DescribeDomainSrcHttpCodeData",
        real_time: false,
        measure: Measure::Codes,
        https: false,
        data: "HttpCodeData",
        item: "UsageData",
        code_item: "CodeProportionData",
    },
];

impl Action {
    /// `DescribeDomainRealTimeSrcTrafficData`, the seed's action.
    pub const REAL_TIME_SRC_TRAFFIC: Action = Action(0);

    /// The action of that exact name.
    pub fn from_name(name: &str) -> Option<Action> {
        ACTIONS
            .iter()
            .position(|a| a.name == name)
            .map(|i| Action(i as u8))
    }

    /// Every action, in [`ACTIONS`] order.
    pub fn all() -> impl Iterator<Item = Action> {
        (0..ACTIONS.len() as u8).map(Action)
    }

    /// Its row.
    pub fn spec(self) -> &'static ActionSpec {
        &ACTIONS[usize::from(self.0)]
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The XML root of its answer.
    pub fn response_root(self) -> String {
        format!("{}Response", self.name())
    }
}

/// Appends a rate as SPEC.md section 8 formats it: two digits after the point, correctly
/// rounded (ties to even, as Rust's float formatting does), then trailing zeros and a bare point
/// dropped.
pub fn write_rate(out: &mut Vec<u8>, x: f64) {
    use std::io::Write;
    let start = out.len();
    // Writing into a `Vec` cannot fail.
    let _ = write!(out, "{x:.2}");
    // Only a number with a point has zeros to drop (`{:.2}` of a finite value always has one).
    if !out[start..].contains(&b'.') {
        return;
    }
    let mut end = out.len();
    while out[end - 1] == b'0' {
        end -= 1;
    }
    if out[end - 1] == b'.' {
        end -= 1;
    }
    out.truncate(end);
}

/// `num / den` as a double, each side converted once: exact below 2^53, as the SDK tests'
/// Python computes it.
pub fn ratio(num: u128, den: u128) -> f64 {
    if den == 0 {
        return 0.0;
    }
    num as f64 / den as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn format_rate(x: f64) -> String {
        let mut out = Vec::new();
        write_rate(&mut out, x);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn names_are_distinct_and_round_trip() {
        for a in Action::all() {
            assert_eq!(Action::from_name(a.name()), Some(a));
        }
        assert_eq!(Action::from_name("DescribeDomainSrcTopUrlVisit"), None);
        assert_eq!(
            Action::REAL_TIME_SRC_TRAFFIC.name(),
            "DescribeDomainRealTimeSrcTrafficData"
        );
    }

    #[test]
    fn rates_keep_two_digits_and_drop_trailing_zeros() {
        assert_eq!(format_rate(0.0), "0");
        assert_eq!(format_rate(12.0), "12");
        assert_eq!(format_rate(1_066.666_666), "1066.67");
        assert_eq!(format_rate(0.5), "0.5");
        assert_eq!(format_rate(66.05), "66.05");
        assert_eq!(format_rate(0.001), "0");
        // 0.125 is exact in binary: a tie, to even.
        assert_eq!(format_rate(0.125), "0.12");
        assert_eq!(format_rate(0.375), "0.38");
        assert_eq!(format_rate(1e20), "100000000000000000000");
    }

    proptest! {
        #[test]
        fn a_rate_reads_back_within_half_a_cent(x in 0.0f64..1e12) {
            let s = format_rate(x);
            let back: f64 = s.parse().unwrap();
            prop_assert!((back - x).abs() <= 0.005 + x * 1e-15, "{x} -> {s}");
            prop_assert!(!s.ends_with('.'));
            prop_assert!(!(s.contains('.') && s.ends_with('0')));
        }
    }
}
