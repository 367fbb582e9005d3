//! Signature checks against vectors made by the official Alibaba Cloud SDK's own signing code
//! (`tests/data/official_sdk_signatures.json`, from alibabacloud-tea-openapi's
//! `get_rpcsignature` and `get_authorization`), and the replay, clock and rate rules.

use proptest::prelude::*;
use serde_json::Value;
use srctraffic::ApiError;
use srctraffic::auth::credentials::Credentials;
use srctraffic::auth::{AuthInput, Authenticator, Principal, v1, v3};
use srctraffic::time::ApiTime;

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/official_sdk_signatures.json")).unwrap()
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

/// The in-process guard never waits, so its future is driven here without a runtime.
trait AuthenticateNow {
    fn authenticate_now<'s>(
        &'s self,
        req: &AuthInput<'_>,
        now: i64,
        now_ms: i64,
    ) -> Result<Principal<'s>, ApiError>;
}

impl AuthenticateNow for Authenticator {
    fn authenticate_now<'s>(
        &'s self,
        req: &AuthInput<'_>,
        now: i64,
        now_ms: i64,
    ) -> Result<Principal<'s>, ApiError> {
        futures_util::FutureExt::now_or_never(self.authenticate(req, now, now_ms))
            .expect("the in-process guard never waits")
    }
}

fn authenticator(secret: &str) -> Authenticator {
    let json = serde_json::json!({"keys": [
        {"access_key_id": "testid", "access_key_secret": secret, "domains": ["*"]},
        {"access_key_id": "other", "access_key_secret": secret, "domains": ["*"]},
    ]});
    Authenticator::new(Credentials::from_json(json.to_string().as_bytes()).unwrap())
}

/// One signed request, owned, in the shape the function hands over.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    at: i64,
}

impl Req {
    fn input(&self) -> AuthInput<'_> {
        AuthInput {
            method: &self.method,
            params: &self.params,
            query: &self.query,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

fn v1_requests() -> Vec<(Req, String)> {
    vectors()["v1"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let mut params = pairs(&v["params"]);
            let at = ApiTime::parse(v["params"]["Timestamp"].as_str().unwrap())
                .unwrap()
                .unix_seconds();
            params.push(("Signature".into(), v["signature"].as_str().unwrap().into()));
            let req = Req {
                method: v["method"].as_str().unwrap().into(),
                params,
                query: vec![],
                headers: vec![],
                body: vec![],
                at,
            };
            (req, v["secret"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn v3_requests() -> Vec<(Req, String)> {
    vectors()["v3"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let mut headers = pairs(&v["headers"]);
            let at = ApiTime::parse(v["headers"]["x-acs-date"].as_str().unwrap())
                .unwrap()
                .unix_seconds();
            headers.push((
                "Authorization".into(),
                v["authorization"].as_str().unwrap().into(),
            ));
            let query = pairs(&v["query"]);
            let req = Req {
                method: v["method"].as_str().unwrap().into(),
                params: query.clone(),
                query,
                headers,
                body: v["body"].as_str().unwrap().as_bytes().to_vec(),
                at,
            };
            (req, v["secret"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn v1_signatures_of_the_official_sdk_verify() {
    for v in vectors()["v1"].as_array().unwrap() {
        let sts = v1::string_to_sign(v["method"].as_str().unwrap(), &pairs(&v["params"]));
        assert_eq!(
            v1::sign(&sts, v["secret"].as_str().unwrap()),
            v["signature"].as_str().unwrap()
        );
    }
}

#[test]
fn v3_signatures_of_the_official_sdk_verify() {
    for v in vectors()["v3"].as_array().unwrap() {
        let a = v3::parse_authorization(v["authorization"].as_str().unwrap()).unwrap();
        let canonical = v3::canonical_request(
            v["method"].as_str().unwrap(),
            &pairs(&v["query"]),
            &pairs(&v["headers"]),
            &a.signed_headers,
            v["body"].as_str().unwrap().as_bytes(),
        )
        .unwrap();
        assert_eq!(
            v3::sign(
                &v3::string_to_sign(&canonical),
                v["secret"].as_str().unwrap()
            ),
            a.signature
        );
    }
}

#[test]
fn signed_requests_pass_once_and_replays_fail() {
    for (req, secret) in v1_requests().into_iter().chain(v3_requests()) {
        let auth = authenticator(&secret);
        let p = auth.authenticate_now(&req.input(), req.at, 0).unwrap();
        assert_eq!(p.key_id, "testid");
        assert_eq!(
            auth.authenticate_now(&req.input(), req.at + 1, 5_000)
                .unwrap_err(),
            ApiError::NonceUsed
        );
    }
}

#[test]
fn a_timestamp_sixteen_minutes_off_is_expired_and_fourteen_is_fine() {
    for (req, secret) in v1_requests().into_iter().chain(v3_requests()) {
        let auth = authenticator(&secret);
        assert_eq!(
            auth.authenticate_now(&req.input(), req.at + 16 * 60, 0)
                .unwrap_err(),
            ApiError::TimestampExpired
        );
        assert_eq!(
            auth.authenticate_now(&req.input(), req.at - 16 * 60, 0)
                .unwrap_err(),
            ApiError::TimestampExpired
        );
        assert!(
            auth.authenticate_now(&req.input(), req.at + 14 * 60, 0)
                .is_ok()
        );
    }
}

#[test]
fn each_failure_has_its_code() {
    let (req, secret) = v1_requests().remove(0);
    // Wrong secret: the message carries the server's string to sign after a colon.
    let err = authenticator("wrong")
        .authenticate_now(&req.input(), req.at, 0)
        .unwrap_err();
    assert_eq!(err.code(), "SignatureDoesNotMatch");
    let msg = err.message();
    let (_, sts) = msg.split_once(':').unwrap();
    assert_eq!(sts, v1::string_to_sign(&req.method, &req.params));
    // Unknown key.
    let mut unknown = req.clone();
    unknown
        .params
        .iter_mut()
        .find(|(k, _)| k == "AccessKeyId")
        .unwrap()
        .1 = "nobody".into();
    assert_eq!(
        authenticator(&secret)
            .authenticate_now(&unknown.input(), req.at, 0)
            .unwrap_err(),
        ApiError::AccessKeyNotFound
    );
    // Missing or malformed pieces.
    for drop in [
        "Signature",
        "SignatureNonce",
        "Timestamp",
        "SignatureMethod",
        "AccessKeyId",
    ] {
        let mut r = req.clone();
        r.params.retain(|(k, _)| k != drop);
        assert_eq!(
            authenticator(&secret)
                .authenticate_now(&r.input(), req.at, 0)
                .unwrap_err(),
            ApiError::IncompleteSignature,
            "{drop}"
        );
    }
    let (mut v3req, secret) = v3_requests().remove(0);
    v3req
        .headers
        .iter_mut()
        .find(|(k, _)| k == "Authorization")
        .unwrap()
        .1 = "ACS3-HMAC-SHA256 Credential=testid".into();
    assert_eq!(
        authenticator(&secret)
            .authenticate_now(&v3req.input(), v3req.at, 0)
            .unwrap_err(),
        ApiError::IncompleteSignature
    );
}

#[test]
fn the_eleventh_call_in_one_second_by_one_key_is_throttled_and_another_key_is_not() {
    let (req, secret) = v1_requests().remove(0);
    let auth = authenticator(&secret);
    let sign = |key: &str, nonce: usize| {
        let mut r = req.clone();
        r.params.retain(|(k, _)| k != "Signature");
        r.params
            .iter_mut()
            .find(|(k, _)| k == "AccessKeyId")
            .unwrap()
            .1 = key.into();
        r.params
            .iter_mut()
            .find(|(k, _)| k == "SignatureNonce")
            .unwrap()
            .1 = format!("n{nonce}");
        let sig = v1::sign(&v1::string_to_sign(&r.method, &r.params), &secret);
        r.params.push(("Signature".into(), sig));
        r
    };
    for i in 0..10 {
        assert!(
            auth.authenticate_now(&sign("testid", i).input(), req.at, 1_000 + i as i64)
                .is_ok(),
            "call {i}"
        );
    }
    assert_eq!(
        auth.authenticate_now(&sign("testid", 10).input(), req.at, 1_500)
            .unwrap_err(),
        ApiError::Throttled
    );
    assert!(
        auth.authenticate_now(&sign("other", 11).input(), req.at, 1_500)
            .is_ok()
    );
    assert!(
        auth.authenticate_now(&sign("testid", 12).input(), req.at, 2_001)
            .is_ok()
    );
}

/// A V1 signer written apart from the crate's, straight from the SPEC's words.
fn independent_v1(method: &str, params: &[(String, String)], secret: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    let mut sorted: Vec<_> = params.to_vec();
    sorted.sort();
    let canonical = sorted
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let sts = format!("{method}&{}&{}", enc("/"), enc(&canonical));
    let mut mac =
        hmac::Hmac::<sha1::Sha1>::new_from_slice(format!("{secret}&").as_bytes()).unwrap();
    mac.update(sts.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_single_byte_change_to_a_signed_part_fails(
        which in 0usize..4,
        pick in any::<usize>(),
        pos in any::<usize>(),
        byte in proptest::char::range('!', '~'),
    ) {
        let all: Vec<(Req, String)> = v1_requests().into_iter().chain(v3_requests()).collect();
        let (mut req, secret) = all[pick % all.len()].clone();
        let is_v3 = req.headers.iter().any(|(k, _)| k == "Authorization");
        let change = |s: &mut String| {
            let mut b = s.clone().into_bytes();
            if b.is_empty() { b.push(byte as u8); } else {
                let i = pos % b.len();
                b[i] = if b[i] == byte as u8 { if byte == '!' { b'"' } else { b'!' } } else { byte as u8 };
            }
            *s = String::from_utf8_lossy(&b).into_owned();
        };
        match which {
            // A parameter's value (V1: any parameter; V3: the query).
            0 | 1 => {
                let list = if is_v3 { &mut req.query } else { &mut req.params };
                let n = list.len();
                let entry = &mut list[pos % n];
                if which == 0 { change(&mut entry.1) } else { change(&mut entry.0) }
                if is_v3 { req.params = req.query.clone(); }
            }
            // A signed header's value.
            2 if is_v3 => {
                let n = req.headers.len() - 1;
                let h = &mut req.headers[pos % n];
                change(&mut h.1);
            }
            // The body.
            _ => {
                if is_v3 {
                    let mut body = String::from_utf8(req.body.clone()).unwrap();
                    change(&mut body);
                    req.body = body.into_bytes();
                } else {
                    let n = req.params.len();
                    change(&mut req.params[pos % n].1);
                }
            }
        }
        let auth = authenticator(&secret);
        let verified = auth.authenticate_now(&req.input(), req.at, 0).is_ok();
        prop_assert!(!verified, "a changed request verified: {:?}", req);
    }

    #[test]
    fn what_an_independent_v1_signer_signs_verifies(
        domain in "[a-z0-9.,-]{1,40}",
        extra in proptest::collection::vec(("[A-Za-z]{1,8}", "\\PC{0,12}"), 0..4),
        post in any::<bool>(),
        nonce in "[a-zA-Z0-9-]{1,36}",
    ) {
        let method = if post { "POST" } else { "GET" };
        let mut params: Vec<(String, String)> = vec![
            ("AccessKeyId".into(), "testid".into()),
            ("Action".into(), "DescribeDomainRealTimeSrcTrafficData".into()),
            ("DomainName".into(), domain),
            ("SignatureMethod".into(), "HMAC-SHA1".into()),
            ("SignatureNonce".into(), nonce),
            ("SignatureVersion".into(), "1.0".into()),
            ("Timestamp".into(), "2019-12-10T20:05:00Z".into()),
        ];
        for (k, v) in extra {
            if !params.iter().any(|(p, _)| *p == k) && k != "Signature" {
                params.push((k, v));
            }
        }
        let sig = independent_v1(method, &params, "s3cr3t");
        params.push(("Signature".into(), sig));
        let req = Req { method: method.into(), params, query: vec![], headers: vec![], body: vec![], at: 1_576_008_300 };
        prop_assert!(authenticator("s3cr3t").authenticate_now(&req.input(), req.at, 0).is_ok());
    }

    #[test]
    fn arbitrary_authorization_headers_never_panic(h in "\\PC{0,200}") {
        let _ = v3::parse_authorization(&h);
        let headers = vec![("authorization".to_owned(), h)];
        let req = Req { method: "GET".into(), params: vec![], query: vec![], headers, body: vec![], at: 0 };
        prop_assert!(authenticator("x").authenticate_now(&req.input(), 0, 0).is_err());
    }
}
