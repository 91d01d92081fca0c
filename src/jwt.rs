//! The HS256 token GitLab's internal mail_room API expects in the
//! `Gitlab-Mailroom-Api-Request` header.
//!
//! Claims as mail_room sends them: `iss = "gitlab-mailroom"`, an integer
//! `iat` and a random 24-hex-digit `nonce`. GitLab allows no clock leeway
//! for an `iat` in the future, so the caller passes a time one second in
//! the past. A new token is made for every request.

use crate::secret::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The issuer GitLab checks.
pub const ISSUER: &str = "gitlab-mailroom";

/// A signed token for `iat` (seconds since the Unix epoch).
pub fn token(secret: &Secret, iat: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = format!(r#"{{"iss":"{ISSUER}","iat":{iat},"nonce":"{}"}}"#, nonce());
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.key()).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// 12 random bytes as 24 hex digits. Falls back to the clock only if the
/// kernel has no randomness to give; GitLab does not check the nonce.
fn nonce() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::getrandom(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes.copy_from_slice(&t.to_le_bytes()[..12]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::decode(b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap()
    }

    #[test]
    fn token_has_three_parts_and_the_claims() {
        let t = token(&secret(), 1_700_000_000);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert!(claims.starts_with(r#"{"iss":"gitlab-mailroom","iat":1700000000,"nonce":""#));
        let nonce = claims.split('"').nth(9).unwrap();
        assert_eq!(nonce.len(), 24);
        assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn signature_verifies_with_the_raw_key() {
        let t = token(&secret(), 1);
        let (input, sig) = t.rsplit_once('.').unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret().key()).unwrap();
        mac.update(input.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
    }

    #[test]
    fn each_token_is_new() {
        assert_ne!(token(&secret(), 1), token(&secret(), 1));
    }
}
