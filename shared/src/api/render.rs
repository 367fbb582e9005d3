//! The only place that turns answers into bytes: the seed's success document and the error
//! document, each in JSON and in XML.

use super::error::ApiError;
use super::request::{Format, QueryRequest};
use crate::time::Minute;
use quick_xml::escape::escape;
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

/// One answered slot: its start and its total bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// The slot's start.
    pub slot: Minute,
    /// Total bytes in the slot over all requested domains (wide: a sum of many `u64`s).
    pub bytes: u128,
}

/// A rendered answer, ready for any HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The document.
    pub body: Vec<u8>,
}

const XML_DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Renders the success document of the seed, fields in the seed's order.
pub fn render_success(
    req: &QueryRequest,
    points: &[Point],
    format: Format,
    request_id: &str,
) -> Rendered {
    let interval = req.interval.seconds().to_string();
    let (start, end) = (req.start.to_string(), req.end.to_string());
    let body = match format {
        Format::Json => {
            let doc = SuccessJson {
                domain_name: &req.domain_param,
                data_interval: &interval,
                real_time_src_traffic_data_per_interval: Modules {
                    data_module: PointsJson(points),
                },
                request_id,
                start_time: &start,
                end_time: &end,
            };
            // Serialising plain strings and integers into a Vec cannot fail.
            serde_json::to_vec(&doc).unwrap_or_default()
        }
        Format::Xml => {
            let mut out = String::with_capacity(256 + points.len() * 96);
            out.push_str(XML_DECL);
            out.push_str("<DescribeDomainRealTimeSrcTrafficDataResponse>");
            element(&mut out, "DomainName", &req.domain_param);
            element(&mut out, "DataInterval", &interval);
            out.push_str("<RealTimeSrcTrafficDataPerInterval>");
            for p in points {
                out.push_str("<DataModule><TimeStamp>");
                out.push_str(&p.slot.to_string());
                out.push_str("</TimeStamp><Value>");
                out.push_str(&p.bytes.to_string());
                out.push_str("</Value></DataModule>");
            }
            out.push_str("</RealTimeSrcTrafficDataPerInterval>");
            element(&mut out, "RequestId", request_id);
            element(&mut out, "StartTime", &start);
            element(&mut out, "EndTime", &end);
            out.push_str("</DescribeDomainRealTimeSrcTrafficDataResponse>");
            out.into_bytes()
        }
    };
    Rendered {
        status: 200,
        content_type: format.content_type(),
        body,
    }
}

/// Renders an error document: `RequestId`, `HostId`, `Code`, `Message`, `Recommend`.
pub fn render_error(err: &ApiError, format: Format, request_id: &str, host_id: &str) -> Rendered {
    let message = err.message();
    let recommend = recommend(err);
    let body = match format {
        Format::Json => {
            let doc = ErrorJson {
                request_id,
                host_id,
                code: err.code(),
                message: &message,
                recommend: &recommend,
            };
            serde_json::to_vec(&doc).unwrap_or_default()
        }
        Format::Xml => {
            let mut out = String::with_capacity(512);
            out.push_str(XML_DECL);
            out.push_str("<Error>");
            element(&mut out, "RequestId", request_id);
            element(&mut out, "HostId", host_id);
            element(&mut out, "Code", err.code());
            element(&mut out, "Message", &message);
            element(&mut out, "Recommend", &recommend);
            out.push_str("</Error>");
            out.into_bytes()
        }
    };
    Rendered {
        status: err.http_status(),
        content_type: format.content_type(),
        body,
    }
}

/// The hint sent with an error: Alibaba's troubleshooting link for the code.
pub fn recommend(err: &ApiError) -> String {
    format!(
        "https://api.aliyun.com/troubleshoot?q={}&product=Cdn",
        err.code()
    )
}

fn element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(text));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SuccessJson<'a> {
    domain_name: &'a str,
    data_interval: &'a str,
    real_time_src_traffic_data_per_interval: Modules<'a>,
    request_id: &'a str,
    start_time: &'a str,
    end_time: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Modules<'a> {
    data_module: PointsJson<'a>,
}

struct PointsJson<'a>(&'a [Point]);

impl Serialize for PointsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for p in self.0 {
            seq.serialize_element(&PointJson(p))?;
        }
        seq.end()
    }
}

struct PointJson<'a>(&'a Point);

impl Serialize for PointJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ts = self.0.slot.to_api_bytes();
        let mut st = s.serialize_struct("DataModule", 2)?;
        st.serialize_field("TimeStamp", std::str::from_utf8(&ts).unwrap_or_default())?;
        st.serialize_field("Value", &Decimal(self.0.bytes))?;
        st.end()
    }
}

/// A total serialised as a decimal string without an intermediate `String`.
struct Decimal(u128);

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorJson<'a> {
    request_id: &'a str,
    host_id: &'a str,
    code: &'a str,
    message: &'a str,
    recommend: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_errors_escape_what_they_echo() {
        let r = render_error(&ApiError::DomainNameMalformed, Format::Xml, "ID", "a<b>&c");
        let body = String::from_utf8(r.body).unwrap();
        assert!(body.starts_with(XML_DECL));
        assert!(body.contains("<HostId>a&lt;b&gt;&amp;c</HostId>"));
        assert!(body.contains("q=InvalidDomainName.Malformed&amp;product=Cdn"));
        assert_eq!(r.content_type, "text/xml;charset=utf-8");
    }

    #[test]
    fn json_errors_keep_the_documented_field_order() {
        let r = render_error(&ApiError::EndTimeMismatch, Format::Json, "ID", "h");
        let body = String::from_utf8(r.body).unwrap();
        assert!(body.starts_with(r#"{"RequestId":"ID","HostId":"h","Code":"InvalidEndTime.Mismatch","Message":"Specified end time does not math the specified start time.","Recommend":"#));
        assert_eq!(r.status, 400);
    }
}
