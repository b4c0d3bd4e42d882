//! Store keys derived from session ids with a keyed hash (HMAC-SHA256), so a
//! key name read from Redis, Postgres or a backup is useless as a cookie.
//!
//! Every instance given the same secret derives the same keys. Keys rotate
//! as the encryption keys do: each key id yields its own HMAC key (HKDF from
//! the secret); new sessions are stored under the current one, and a session
//! created under an earlier key id is still found (and kept under that digest
//! until it ends), as long as that id stays listed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC keys by id, the current one first.
#[derive(Clone)]
pub struct StoreKeys {
    keys: Vec<Hmac<Sha256>>,
}

impl StoreKeys {
    /// Keys derived from `secret` for `current` and then each of `previous`.
    pub fn derive(secret: &[u8], current: &str, previous: &[String]) -> Self {
        let keys = std::iter::once(current)
            .chain(previous.iter().map(String::as_str))
            .map(|kid| {
                let mut key = [0u8; 32];
                Hkdf::<Sha256>::new(Some(b"cache-topology-harness store-key"), secret)
                    .expand(kid.as_bytes(), &mut key)
                    .expect("32 bytes is a valid HKDF-SHA256 output length");
                Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length")
            })
            .collect();
        Self { keys }
    }

    /// The digest new records of `session_id` are stored under (43 characters).
    pub fn digest(&self, session_id: &str) -> String {
        Self::digest_with(&self.keys[0], session_id)
    }

    /// The digests to look `session_id` up under: the current key's, then
    /// each earlier key's.
    pub fn candidates<'a>(&'a self, session_id: &'a str) -> impl Iterator<Item = String> + 'a {
        self.keys
            .iter()
            .map(move |key| Self::digest_with(key, session_id))
    }

    /// A tag over `payload` under the current key, for a value the server
    /// gets back from the browser (the sign-in in progress). Domain-separated
    /// from the store digests (session ids hold no NUL).
    pub fn sign(&self, payload: &[u8]) -> String {
        Self::tag_with(&self.keys[0], payload)
    }

    /// Whether `tag` is [`StoreKeys::sign`]'s for `payload` under any listed key (constant time).
    pub fn verify(&self, payload: &[u8], tag: &[u8]) -> bool {
        self.keys.iter().any(|key| {
            let mut mac = key.clone();
            mac.update(b"\0signed\0");
            mac.update(payload);
            mac.verify_slice(tag).is_ok()
        })
    }

    fn tag_with(key: &Hmac<Sha256>, payload: &[u8]) -> String {
        let mut mac = key.clone();
        mac.update(b"\0signed\0");
        mac.update(payload);
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn digest_with(key: &Hmac<Sha256>, session_id: &str) -> String {
        let mut mac = key.clone();
        mac.update(session_id.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_depend_on_the_secret_and_key_id_and_rotation_keeps_old_ones_findable() {
        let k1 = StoreKeys::derive(b"secret", "k1", &[]);
        let same = StoreKeys::derive(b"secret", "k1", &[]);
        assert_eq!(
            k1.digest("sid"),
            same.digest("sid"),
            "every instance agrees"
        );
        assert_eq!(k1.digest("sid").len(), 43);
        assert_ne!(k1.digest("sid"), k1.digest("sie"));
        assert_ne!(
            k1.digest("sid"),
            StoreKeys::derive(b"other", "k1", &[]).digest("sid")
        );
        let rotated = StoreKeys::derive(b"secret", "k2", &["k1".into()]);
        assert_ne!(rotated.digest("sid"), k1.digest("sid"));
        let found: Vec<String> = rotated.candidates("sid").collect();
        assert_eq!(found, [rotated.digest("sid"), k1.digest("sid")]);
        // A digest is not a key of itself: replaying it as an id finds nothing.
        let digest = k1.digest("sid");
        assert!(!k1.candidates(&digest).any(|d| d == digest));
    }
}
