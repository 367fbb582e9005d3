//! Signature V1 (RPC, HMAC-SHA1): the canonical query of every parameter but `Signature`,
//! signed with the secret plus `&` over `METHOD&%2F&pct(canonical)`.

use super::encode::pct;
use base64::Engine;
use hmac::{Hmac, Mac};

/// The string the client signed.
pub fn string_to_sign(method: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<&(String, String)> =
        params.iter().filter(|(k, _)| k != "Signature").collect();
    // The SDKs sort by the raw parameter name.
    pairs.sort();
    let canonical: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect();
    format!("{method}&%2F&{}", pct(&canonical.join("&")))
}

/// Base64 of HMAC-SHA1 with key `secret&`.
pub fn sign(string_to_sign: &str, secret: &str) -> String {
    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(format!("{secret}&").as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}
