//! The token GitLab's internal mail_room API expects in the
//! `Gitlab-Mailroom-Api-Request` header: HS256 with the mailbox's shared
//! secret, or ES256 with its signing key.
//!
//! Claims as mail_room sends them: `iss = "gitlab-mailroom"`, an integer
//! `iat` and a random 24-hex-digit `nonce`. GitLab allows no clock leeway
//! for an `iat` in the future, so the caller backdates it (see
//! `gitlab::IAT_BACKDATE_SECS`). A new token is made for every request.
//!
//! GitLab routes on the header: a token with a `kid` is checked as ES256
//! against the mailbox's `public_key_files`, one without as HS256 against
//! its `secret_file`. So an HS256 token never carries a `kid`.

use crate::es256::{KeyError, SigningKey};
use crate::secret::{Secret, SecretError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The issuer GitLab checks.
pub const ISSUER: &str = "gitlab-mailroom";

/// How a mailbox's tokens are signed, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// HS256 with GitLab's shared secret (`secret_file`).
    Secret(PathBuf),
    /// ES256 with a private key (`signing_key_file`). A `secret_file` given
    /// as well is checked but not used to sign.
    SigningKey {
        /// The PEM private key.
        key_file: PathBuf,
        /// The secret file, when also configured.
        secret_file: Option<PathBuf>,
    },
}

impl Credential {
    /// The file the signing material is read from.
    pub fn file(&self) -> &Path {
        match self {
            Credential::Secret(path) => path,
            Credential::SigningKey { key_file, .. } => key_file,
        }
    }

    /// `HS256` or `ES256`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Credential::Secret(_) => "HS256",
            Credential::SigningKey { .. } => "ES256",
        }
    }

    /// Reads and checks the file, naming it and the setting in the error.
    pub fn load(&self) -> Result<Signer, String> {
        match self {
            Credential::Secret(path) => Secret::load(path)
                .map(Signer::Hs256)
                .map_err(|e: SecretError| format!("secret_file {}: {e}", path.display())),
            Credential::SigningKey { key_file, .. } => SigningKey::load(key_file)
                .map(|k| Signer::Es256(Arc::new(k)))
                .map_err(|e: KeyError| format!("signing_key_file {}: {e}", key_file.display())),
        }
    }
}

/// Loaded signing material; cheap to clone.
#[derive(Debug, Clone)]
pub enum Signer {
    /// The HMAC key.
    Hs256(Secret),
    /// The ECDSA P-256 key.
    Es256(Arc<SigningKey>),
}

/// A signed token for `iat` (seconds since the Unix epoch).
pub fn token(signer: &Signer, iat: u64) -> Result<String, KeyError> {
    let header = match signer {
        Signer::Hs256(_) => r#"{"alg":"HS256","typ":"JWT"}"#.to_string(),
        // The kid is hex digits: nothing in it needs JSON escaping.
        Signer::Es256(key) => format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{}"}}"#, key.kid()),
    };
    let claims = format!(r#"{{"iss":"{ISSUER}","iat":{iat},"nonce":"{}"}}"#, nonce());
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = match signer {
        Signer::Hs256(secret) => {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret.key()).expect("HMAC takes any key length");
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Signer::Es256(key) => key.sign(signing_input.as_bytes())?,
    };
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
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

    fn hs256() -> Signer {
        Signer::Hs256(secret())
    }

    fn header(token: &str) -> String {
        let part = token.split('.').next().unwrap();
        String::from_utf8(URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn token_has_three_parts_and_the_claims() {
        let t = token(&hs256(), 1_700_000_000).unwrap();
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
        let t = token(&hs256(), 1).unwrap();
        let (input, sig) = t.rsplit_once('.').unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret().key()).unwrap();
        mac.update(input.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
    }

    #[test]
    fn each_token_is_new() {
        assert_ne!(token(&hs256(), 1).unwrap(), token(&hs256(), 1).unwrap());
    }

    #[test]
    fn hs256_never_carries_a_kid() {
        let t = token(&hs256(), 1).unwrap();
        assert_eq!(header(&t), r#"{"alg":"HS256","typ":"JWT"}"#);
    }

    #[test]
    fn es256_names_its_key_and_verifies_with_the_public_key() {
        use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
        let (key, pem) = SigningKey::generate().unwrap();
        let t = token(&Signer::Es256(Arc::new(key)), 1_700_000_000).unwrap();
        let key = SigningKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(
            header(&t),
            format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{}"}}"#, key.kid())
        );
        let (input, sig) = t.rsplit_once('.').unwrap();
        let spki = key.public_key_pem();
        let b64: String = spki.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        // The point is the last 65 bytes of the SubjectPublicKeyInfo.
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &der[26..])
            .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .expect("the signature verifies with the public key");
    }
}
