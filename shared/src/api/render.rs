//! The only place that turns answers into bytes: each action's success document and the error
//! document, each in JSON and in XML, from one description written once through [`Doc`].

use super::action::{Measure, ratio, write_rate};
use super::error::ApiError;
use super::request::{Format, QueryRequest};
use crate::time::Minute;
use quick_xml::escape::escape;
use std::io::Write;

/// One answered slot: its start and its sums over all requested domains (wide: each a sum of
/// many `u64`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// The slot's start.
    pub slot: Minute,
    /// Origin bytes.
    pub bytes: u128,
    /// Origin bytes of https lines.
    pub https: u128,
    /// Origin requests.
    pub requests: u128,
    /// Origin requests per status code, ascending by code; filled for the status actions only.
    pub codes: Vec<(u16, u128)>,
}

impl Point {
    /// A slot with nothing in it yet.
    pub fn empty(slot: Minute) -> Point {
        Point {
            slot,
            bytes: 0,
            https: 0,
            requests: 0,
            codes: Vec::new(),
        }
    }
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

/// Renders an action's success document: `DomainName`, `DataInterval`, the action's data
/// element, `RequestId`, `StartTime`, `EndTime`, as the seed's sample orders them.
pub fn render_success(
    req: &QueryRequest,
    points: &[Point],
    format: Format,
    request_id: &str,
) -> Rendered {
    let spec = req.action.spec();
    let secs = req.interval.seconds() as u128;
    let mut doc = Doc::new(format, &req.action.response_root(), 256 + points.len() * 96);
    doc.text("DomainName", &req.domain_param);
    doc.number("DataInterval", secs);
    doc.open(spec.data);
    doc.open_list(spec.item);
    for p in points {
        doc.open_item(spec.item);
        doc.raw_bytes("TimeStamp", &p.slot.to_api_bytes());
        match spec.measure {
            Measure::Bytes => {
                doc.number("Value", p.bytes);
                if spec.https {
                    doc.number("HttpsValue", p.https);
                }
            }
            Measure::Bits => {
                doc.rate("Value", ratio(p.bytes * 8, secs));
                if spec.https {
                    doc.rate("HttpsValue", ratio(p.https * 8, secs));
                }
            }
            Measure::Requests => {
                doc.rate("Value", ratio(p.requests, secs));
            }
            Measure::Codes => {
                doc.open("Value");
                doc.open_list(spec.code_item);
                // Shares of all the slot's fetches, those without a status too.
                if p.requests > 0 {
                    for &(code, count) in &p.codes {
                        doc.open_item(spec.code_item);
                        doc.number("Code", code);
                        doc.rate("Proportion", ratio(count * 100, p.requests));
                        doc.number("Count", count);
                        doc.close_item(spec.code_item);
                    }
                }
                doc.close_list();
                doc.close("Value");
            }
        }
        doc.close_item(spec.item);
    }
    doc.close_list();
    doc.close(spec.data);
    doc.text("RequestId", request_id);
    doc.raw("StartTime", &req.start.to_string());
    doc.raw("EndTime", &req.end.to_string());
    Rendered {
        status: 200,
        content_type: format.content_type(),
        body: doc.finish(),
    }
}

/// Renders an error document: `RequestId`, `HostId`, `Code`, `Message`, `Recommend`.
pub fn render_error(err: &ApiError, format: Format, request_id: &str, host_id: &str) -> Rendered {
    let mut doc = Doc::new(format, "Error", 512);
    doc.text("RequestId", request_id);
    doc.text("HostId", host_id);
    doc.text("Code", err.code());
    doc.text("Message", &err.message());
    doc.text("Recommend", &recommend(err));
    Rendered {
        status: err.http_status(),
        content_type: format.content_type(),
        body: doc.finish(),
    }
}

/// The hint sent with an error: Alibaba's troubleshooting link for the code.
pub fn recommend(err: &ApiError) -> String {
    format!(
        "https://api.aliyun.com/troubleshoot?q={}&product=Cdn",
        err.code()
    )
}

/// One document written as JSON or as XML from the same calls. Objects are elements; a list is
/// a JSON array under its item name, and in XML its items repeated by that name (as the seed's
/// `DataModule`). JSON values are all strings, as the SDK models declare them.
struct Doc {
    json: bool,
    root: String,
    out: Vec<u8>,
    /// A JSON value was written at this level: the next needs a comma.
    comma: bool,
}

impl Doc {
    fn new(format: Format, root: &str, capacity: usize) -> Doc {
        let json = format == Format::Json;
        let mut out = Vec::with_capacity(capacity);
        if json {
            out.push(b'{');
        } else {
            out.extend_from_slice(XML_DECL.as_bytes());
            tag(&mut out, root, false);
        }
        Doc {
            json,
            root: root.to_owned(),
            out,
            comma: false,
        }
    }

    fn key(&mut self, name: &str) {
        if self.comma {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A text field from outside (escaped as the format needs).
    fn text(&mut self, name: &str, value: &str) {
        if self.json {
            self.key(name);
            // Writing a `str` into a `Vec` cannot fail.
            let _ = serde_json::to_writer(&mut self.out, value);
            self.comma = true;
        } else {
            tag(&mut self.out, name, false);
            self.out.extend_from_slice(escape(value).as_bytes());
            tag(&mut self.out, name, true);
        }
    }

    /// A field whose text needs no escaping in either format (numbers, times).
    fn raw(&mut self, name: &str, value: &str) {
        self.raw_bytes(name, value.as_bytes());
    }

    /// A number, as a decimal string.
    fn number(&mut self, name: &str, value: impl std::fmt::Display) {
        self.value_with(name, |out| {
            let _ = write!(out, "{value}");
        });
    }

    /// A rate ([`write_rate`]).
    fn rate(&mut self, name: &str, value: f64) {
        self.value_with(name, |out| write_rate(out, value));
    }

    fn raw_bytes(&mut self, name: &str, value: &[u8]) {
        self.value_with(name, |out| out.extend_from_slice(value));
    }

    fn value_with(&mut self, name: &str, write: impl FnOnce(&mut Vec<u8>)) {
        if self.json {
            self.key(name);
            self.out.push(b'"');
            write(&mut self.out);
            self.out.push(b'"');
            self.comma = true;
        } else {
            tag(&mut self.out, name, false);
            write(&mut self.out);
            tag(&mut self.out, name, true);
        }
    }

    fn open(&mut self, name: &str) {
        if self.json {
            self.key(name);
            self.out.push(b'{');
            self.comma = false;
        } else {
            tag(&mut self.out, name, false);
        }
    }

    fn close(&mut self, name: &str) {
        if self.json {
            self.out.push(b'}');
            self.comma = true;
        } else {
            tag(&mut self.out, name, true);
        }
    }

    fn open_list(&mut self, item: &str) {
        if self.json {
            self.key(item);
            self.out.push(b'[');
            self.comma = false;
        }
    }

    fn close_list(&mut self) {
        if self.json {
            self.out.push(b']');
            self.comma = true;
        }
    }

    fn open_item(&mut self, item: &str) {
        if self.json {
            if self.comma {
                self.out.push(b',');
            }
            self.out.push(b'{');
            self.comma = false;
        } else {
            tag(&mut self.out, item, false);
        }
    }

    fn close_item(&mut self, item: &str) {
        self.close(item);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.json {
            self.out.push(b'}');
        } else {
            let root = std::mem::take(&mut self.root);
            tag(&mut self.out, &root, true);
        }
        self.out
    }
}

fn tag(out: &mut Vec<u8>, name: &str, closing: bool) {
    let _ = if closing {
        write!(out, "</{name}>")
    } else {
        write!(out, "<{name}>")
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::action::Action;
    use crate::api::request::{RawRequest, parse_request};

    fn request(action: &str, extra: &str) -> QueryRequest {
        let q = format!(
            "Action={action}&StartTime=2019-12-10T20:00:00Z&EndTime=2019-12-10T20:05:00Z{extra}"
        );
        let raw = RawRequest {
            method: "GET",
            query: Some(&q),
            ..Default::default()
        };
        parse_request(&raw, 1_576_022_400).1.unwrap()
    }

    fn slot(bytes: u128, https: u128, requests: u128, codes: &[(u16, u128)]) -> Point {
        Point {
            slot: crate::time::ApiTime::parse("2019-12-10T20:00:00Z")
                .unwrap()
                .minute(),
            bytes,
            https,
            requests,
            codes: codes.to_vec(),
        }
    }

    fn body(req: &QueryRequest, points: &[Point], format: Format) -> String {
        String::from_utf8(render_success(req, points, format, "ID").body).unwrap()
    }

    #[test]
    fn the_seed_document_is_unchanged() {
        let req = request(
            Action::REAL_TIME_SRC_TRAFFIC.name(),
            "&DomainName=example.com",
        );
        assert_eq!(
            body(&req, &[slot(7, 0, 0, &[])], Format::Json),
            r#"{"DomainName":"example.com","DataInterval":"60","RealTimeSrcTrafficDataPerInterval":{"DataModule":[{"TimeStamp":"2019-12-10T20:00:00Z","Value":"7"}]},"RequestId":"ID","StartTime":"2019-12-10T20:00:00Z","EndTime":"2019-12-10T20:05:00Z"}"#
        );
        assert_eq!(
            body(&req, &[], Format::Xml),
            r#"<?xml version="1.0" encoding="UTF-8"?><DescribeDomainRealTimeSrcTrafficDataResponse><DomainName>example.com</DomainName><DataInterval>60</DataInterval><RealTimeSrcTrafficDataPerInterval></RealTimeSrcTrafficDataPerInterval><RequestId>ID</RequestId><StartTime>2019-12-10T20:00:00Z</StartTime><EndTime>2019-12-10T20:05:00Z</EndTime></DescribeDomainRealTimeSrcTrafficDataResponse>"#
        );
    }

    #[test]
    fn traffic_and_bandwidth_carry_https_values_and_rates() {
        let req = request("DescribeDomainSrcBpsData", "");
        // 300 s: 40,000 bytes are 1066.67 bit/s; 300 bytes over https are 8 bit/s.
        assert_eq!(
            body(&req, &[slot(40_000, 300, 3, &[])], Format::Json),
            r#"{"DomainName":"","DataInterval":"300","SrcBpsDataPerInterval":{"DataModule":[{"TimeStamp":"2019-12-10T20:00:00Z","Value":"1066.67","HttpsValue":"8"}]},"RequestId":"ID","StartTime":"2019-12-10T20:00:00Z","EndTime":"2019-12-10T20:05:00Z"}"#
        );
        let req = request("DescribeDomainSrcTrafficData", "&DomainName=a.com");
        assert!(
            body(&req, &[slot(40_000, 300, 3, &[])], Format::Xml).contains(
                "<SrcTrafficDataPerInterval><DataModule><TimeStamp>2019-12-10T20:00:00Z</TimeStamp><Value>40000</Value><HttpsValue>300</HttpsValue></DataModule></SrcTrafficDataPerInterval>"
            )
        );
        let req = request("DescribeDomainSrcQpsData", "");
        assert!(body(&req, &[slot(1, 0, 4, &[])], Format::Json).contains(r#""SrcQpsDataPerInterval":{"DataModule":[{"TimeStamp":"2019-12-10T20:00:00Z","Value":"0.01"}]}"#));
    }

    #[test]
    fn status_codes_carry_count_and_percentage_of_every_fetch() {
        let req = request("DescribeDomainSrcHttpCodeData", "");
        // 3 fetches, 2 with a 200, 1 without a status: 66.67% and nothing else.
        let points = [slot(5, 0, 3, &[(200, 2)]), slot(0, 0, 0, &[])];
        let json = body(&req, &points, Format::Json);
        assert!(json.contains(r#""HttpCodeData":{"UsageData":[{"TimeStamp":"2019-12-10T20:00:00Z","Value":{"CodeProportionData":[{"Code":"200","Proportion":"66.67","Count":"2"}]}},{"TimeStamp":"2019-12-10T20:00:00Z","Value":{"CodeProportionData":[]}}]}"#), "{json}");
        let req = request("DescribeDomainRealTimeSrcHttpCodeData", "&DomainName=a.com");
        let xml = body(&req, &[slot(5, 0, 4, &[(200, 3), (404, 1)])], Format::Xml);
        assert!(xml.contains("<RealTimeSrcHttpCodeData><UsageData><TimeStamp>2019-12-10T20:00:00Z</TimeStamp><Value><RealTimeSrcCodeProportionData><Code>200</Code><Proportion>75</Proportion><Count>3</Count></RealTimeSrcCodeProportionData><RealTimeSrcCodeProportionData><Code>404</Code><Proportion>25</Proportion><Count>1</Count></RealTimeSrcCodeProportionData></Value></UsageData></RealTimeSrcHttpCodeData>"), "{xml}");
        assert!(xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><DescribeDomainRealTimeSrcHttpCodeDataResponse><DomainName>a.com</DomainName>"#));
    }

    #[test]
    fn echoed_text_is_escaped_in_both_formats() {
        let mut req = request("DescribeDomainSrcTrafficData", "");
        req.domain_param = "a\"<b>".to_owned();
        assert!(body(&req, &[], Format::Json).starts_with(r#"{"DomainName":"a\"<b>","#));
        assert!(body(&req, &[], Format::Xml).contains("<DomainName>a&quot;&lt;b&gt;</DomainName>"));
    }

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
