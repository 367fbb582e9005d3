//! Every error the API answers with: one variant per (status, code, message) triple, so the
//! table in SPEC.md sections 3 and 5 and the seed's error table live in exactly one place.

use thiserror::Error;

/// An error that is answered to the caller with the documented status, code and message.
///
/// `Display` gives the message that is sent to the client, and nothing else: details of
/// internal failures go to the log at the point where they happen, never into this type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApiError {
    /// A mandatory parameter (`Action` or `DomainName`) is absent or empty.
    #[error(
        "The input parameter \"{0}\" that is mandatory for processing this request is not supplied."
    )]
    MissingParameter(&'static str),
    /// Only one of `StartTime` and `EndTime` was given.
    #[error("StartTime and EndTime can not be single.")]
    StartEndNotPaired,
    /// `StartTime` is not exactly `yyyy-MM-ddTHH:mm:ssZ`.
    #[error("Specified StartTime is malformed.")]
    StartTimeMalformed,
    /// `EndTime` is not exactly `yyyy-MM-ddTHH:mm:ssZ`.
    #[error("Specified EndTime is malformed.")]
    EndTimeMalformed,
    /// `EndTime` is not later than `StartTime`. The typo "math" is the real API's message.
    #[error("Specified end time does not math the specified start time.")]
    EndTimeMismatch,
    /// `StartTime` lies more than 90 days before now, or after now.
    #[error("The specified value of parameter StartTime is not supported.")]
    StartTimeNotSupported,
    /// A name in `DomainName` is not a valid host name.
    #[error("Specified DomainName is malformed.")]
    DomainNameMalformed,
    /// `DomainName` lists more distinct names than the action takes (100 real-time, 500 else).
    #[error("The number of domain names exceeds the limit of {0}.")]
    DomainNameOverLimit(usize),
    /// The range at the interval would return more than 10,080 points.
    #[error(
        "The time span between StartTime and EndTime at this Interval exceeds 10080 data points."
    )]
    TimeSpanTooLarge,
    /// `Interval` is not one of 60, 300, 3600 or 86400.
    #[error("Specified Interval is not valid: use 60, 300, 3600 or 86400.")]
    IntervalInvalid,
    /// A non-real-time action was asked for an `Interval` other than 300, 3600 or 86400.
    #[error("Specified Interval is not valid for this action: use 300, 3600 or 86400.")]
    IntervalNotOffered,
    /// A non-real-time action was asked for a span longer than its interval allows.
    #[error(
        "The time span between StartTime and EndTime exceeds {days} days at Interval {interval}."
    )]
    TimeSpanTooLong {
        /// The longest span at that interval, in days.
        days: u16,
        /// The interval asked for, in seconds.
        interval: u32,
    },
    /// `Format` is neither `JSON` nor `XML`.
    #[error("Specified Format is not valid: use JSON or XML.")]
    FormatInvalid,
    /// The action is none of the family's (`api::action::ACTIONS`), or the method is not GET/POST.
    #[error("Specified api is not found, please check your url and method.")]
    ActionNotFound,
    /// A version other than `2018-05-10` was asked for.
    #[error("Specified parameter Version is not valid.")]
    VersionInvalid,
    /// A signature parameter or header is missing or malformed.
    #[error("The request signature does not conform to Aliyun standards.")]
    IncompleteSignature,
    /// The AccessKeyId is not in the credentials.
    #[error("Specified access key is not found.")]
    AccessKeyNotFound,
    /// The signature does not match; carries the server's string to sign, after the colon the
    /// core SDK splits on to tell its user the secret is wrong.
    #[error(
        "Specified signature is not matched with our calculation. server string to sign is:{0}"
    )]
    SignatureMismatch(String),
    /// The timestamp is more than 15 minutes from the server clock.
    #[error("Specified time stamp or date value is expired.")]
    TimestampExpired,
    /// The nonce was seen within the last 15 minutes.
    #[error("The request signature nonce has been used.")]
    NonceUsed,
    /// More than 10 calls in one second by one AccessKeyId.
    #[error("Request was denied due to user flow control.")]
    Throttled,
    /// A domain the caller does not own, whether or not it exists.
    #[error("The domain provided does not belong to you.")]
    DomainNotOwned,
    /// An unexpected failure; its detail was logged where it happened.
    #[error("The request processing has failed due to some unknown error, exception or failure.")]
    Internal,
    /// The store could not be reached.
    #[error("The request has failed due to a temporary failure of the server.")]
    ServiceUnavailable,
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::ActionNotFound | Self::AccessKeyNotFound | Self::DomainNotOwned => 404,
            Self::Internal => 500,
            Self::ServiceUnavailable => 503,
            _ => 400,
        }
    }

    /// The Alibaba Cloud error code, as the SDKs surface it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingParameter(_) | Self::StartEndNotPaired => "MissingParameter",
            Self::StartTimeMalformed => "InvalidStartTime.Malformed",
            Self::EndTimeMalformed => "InvalidEndTime.Malformed",
            Self::EndTimeMismatch => "InvalidEndTime.Mismatch",
            Self::StartTimeNotSupported => "InvalidStartTime.ValueNotSupported",
            Self::DomainNameMalformed => "InvalidDomainName.Malformed",
            Self::DomainNameOverLimit(_) => "InvalidDomainName.OverLimit",
            Self::TimeSpanTooLarge | Self::TimeSpanTooLong { .. } => "InvalidTimeSpan",
            Self::IntervalInvalid | Self::IntervalNotOffered => "InvalidParameter.Interval",
            Self::FormatInvalid => "InvalidParameter.Format",
            Self::ActionNotFound => "InvalidAction.NotFound",
            Self::VersionInvalid => "InvalidVersion",
            Self::IncompleteSignature => "IncompleteSignature",
            Self::AccessKeyNotFound => "InvalidAccessKeyId.NotFound",
            Self::SignatureMismatch(_) => "SignatureDoesNotMatch",
            Self::TimestampExpired => "InvalidTimeStamp.Expired",
            Self::NonceUsed => "SignatureNonceUsed",
            Self::Throttled => "Throttling.User",
            Self::DomainNotOwned => "InvalidDomain.NotFound",
            Self::Internal => "InternalError",
            Self::ServiceUnavailable => "ServiceUnavailable",
        }
    }

    /// The human message sent to the client.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// Every error the query API can answer with, one of each; for exhaustive tests.
    pub fn all() -> Vec<ApiError> {
        vec![
            Self::MissingParameter("DomainName"),
            Self::MissingParameter("Action"),
            Self::StartEndNotPaired,
            Self::StartTimeMalformed,
            Self::EndTimeMalformed,
            Self::EndTimeMismatch,
            Self::StartTimeNotSupported,
            Self::DomainNameMalformed,
            Self::DomainNameOverLimit(100),
            Self::DomainNameOverLimit(500),
            Self::TimeSpanTooLarge,
            Self::TimeSpanTooLong {
                days: 3,
                interval: 300,
            },
            Self::IntervalInvalid,
            Self::IntervalNotOffered,
            Self::FormatInvalid,
            Self::ActionNotFound,
            Self::VersionInvalid,
            Self::IncompleteSignature,
            Self::AccessKeyNotFound,
            Self::SignatureMismatch("GET&%2F&AccessKeyId%3Dk".to_owned()),
            Self::TimestampExpired,
            Self::NonceUsed,
            Self::Throttled,
            Self::DomainNotOwned,
            Self::Internal,
            Self::ServiceUnavailable,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_errors_keep_their_exact_codes_and_messages() {
        let seed = [
            (
                Self_::StartEndNotPaired,
                "MissingParameter",
                "StartTime and EndTime can not be single.",
            ),
            (
                Self_::StartTimeMalformed,
                "InvalidStartTime.Malformed",
                "Specified StartTime is malformed.",
            ),
            (
                Self_::EndTimeMalformed,
                "InvalidEndTime.Malformed",
                "Specified EndTime is malformed.",
            ),
            (
                Self_::EndTimeMismatch,
                "InvalidEndTime.Mismatch",
                "Specified end time does not math the specified start time.",
            ),
            (
                Self_::StartTimeNotSupported,
                "InvalidStartTime.ValueNotSupported",
                "The specified value of parameter StartTime is not supported.",
            ),
        ];
        for (err, code, message) in seed {
            assert_eq!(err.http_status(), 400);
            assert_eq!(err.code(), code);
            assert_eq!(err.message(), message);
        }
    }

    #[test]
    fn missing_domain_name_uses_the_spec_message() {
        assert_eq!(
            ApiError::MissingParameter("DomainName").message(),
            "The input parameter \"DomainName\" that is mandatory for processing this request is not supplied."
        );
    }

    #[test]
    fn only_unknown_action_internal_and_unavailable_leave_the_400s() {
        for e in ApiError::all() {
            let expected = match e {
                ApiError::ActionNotFound
                | ApiError::AccessKeyNotFound
                | ApiError::DomainNotOwned => 404,
                ApiError::Internal => 500,
                ApiError::ServiceUnavailable => 503,
                _ => 400,
            };
            assert_eq!(e.http_status(), expected, "{e:?}");
        }
    }

    use ApiError as Self_;
}
