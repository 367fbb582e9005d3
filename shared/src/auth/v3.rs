//! Signature V3 (`ACS3-HMAC-SHA256`): a canonical request of method, `/`, the sorted encoded
//! query, the signed headers as received, their names, and the body's SHA-256; its SHA-256 is
//! signed with HMAC-SHA256 keyed by the secret.

use super::encode::pct;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The scheme name in the `Authorization` header.
pub const SCHEME: &str = "ACS3-HMAC-SHA256";

/// The parts of an `Authorization: ACS3-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// `Credential`: the AccessKeyId.
    pub key_id: String,
    /// `SignedHeaders`, lower case, in order.
    pub signed_headers: Vec<String>,
    /// `Signature`, hex.
    pub signature: String,
}

/// Parses the header; `None` if it is not a well-formed V3 authorization.
pub fn parse_authorization(h: &str) -> Option<Authorization> {
    let rest = h.trim().strip_prefix(SCHEME)?.trim_start();
    let (mut key_id, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "Credential" => key_id = Some(v.trim().to_owned()),
            "SignedHeaders" => {
                signed = Some(
                    v.trim()
                        .split(';')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .collect::<Vec<_>>(),
                )
            }
            "Signature" => signature = Some(v.trim().to_owned()),
            _ => return None,
        }
    }
    let a = Authorization {
        key_id: key_id?,
        signed_headers: signed?,
        signature: signature?,
    };
    let ok = !a.key_id.is_empty()
        && !a.signature.is_empty()
        && a.signed_headers.iter().all(|h| !h.is_empty());
    ok.then_some(a)
}

/// The canonical request, or `None` if a signed header is missing.
pub fn canonical_request(
    method: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    signed: &[String],
    body: &[u8],
) -> Option<String> {
    let mut pairs: Vec<&(String, String)> = query.iter().collect();
    pairs.sort();
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect();
    let mut canon_headers = String::new();
    for name in signed {
        let mut values: Vec<&str> = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect();
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        canon_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Some(format!(
        "{method}\n/\n{}\n{canon_headers}\n{}\n{}",
        query.join("&"),
        signed.join(";"),
        hex::encode(Sha256::digest(body))
    ))
}

/// The string the client signed.
pub fn string_to_sign(canonical_request: &str) -> String {
    format!(
        "{SCHEME}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// Hex of HMAC-SHA256 keyed by the secret.
pub fn sign(string_to_sign: &str, secret: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}
