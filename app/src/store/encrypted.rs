//! Encryption at rest: AES-256-GCM around any store, with key ids so keys can rotate.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use hkdf::Hkdf;
use sha2::Sha256;

use super::{Expect, Record, Store, StoreError, StoreSize};

/// Format tag of an encrypted record: `MAGIC | kid length | kid | nonce | ciphertext+tag`.
const MAGIC: &[u8; 2] = b"e1";
const NONCE_LEN: usize = 12;

/// Data keys by id: new records use `current`; any known key decrypts.
pub struct Keyring {
    current: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl Keyring {
    /// Keys from raw 32-byte secrets; `current` must be one of them.
    pub fn new(keys: &[(&str, [u8; 32])], current: &str) -> Result<Self, StoreError> {
        let keys: HashMap<String, Aes256Gcm> = keys
            .iter()
            .map(|(kid, secret)| ((*kid).to_owned(), Aes256Gcm::new(secret.into())))
            .collect();
        if !keys.contains_key(current) {
            return Err(StoreError::Config(format!(
                "current key id {current:?} is not in the keyring"
            )));
        }
        if current.is_empty() || current.len() > 255 {
            return Err(StoreError::Config("a key id is 1 to 255 bytes".into()));
        }
        Ok(Self {
            current: current.to_owned(),
            keys,
        })
    }

    /// A 32-byte key derived from a shared secret with HKDF-SHA256, so every
    /// app instance given the same secret and key id has the same key.
    pub fn derive_key(secret: &[u8], kid: &str) -> [u8; 32] {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"cache-topology-harness at-rest key"), secret)
            .expand(kid.as_bytes(), &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        key
    }

    fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let cipher = &self.keys[&self.current];
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Corrupt("encryption failed".into()))?;
        let mut out = Vec::with_capacity(3 + self.current.len() + NONCE_LEN + ciphertext.len());
        out.extend_from_slice(MAGIC);
        out.push(self.current.len() as u8);
        out.extend_from_slice(self.current.as_bytes());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// The plaintext, or why not; never panics on any input.
    fn open(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>, &'static str> {
        let rest = sealed
            .strip_prefix(MAGIC.as_slice())
            .ok_or("not an encrypted record")?;
        let (&kid_len, rest) = rest.split_first().ok_or("truncated")?;
        let kid_len = usize::from(kid_len);
        if rest.len() < kid_len + NONCE_LEN {
            return Err("truncated");
        }
        let (kid, rest) = rest.split_at(kid_len);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let kid = std::str::from_utf8(kid).map_err(|_| "bad key id")?;
        let cipher = self.keys.get(kid).ok_or("unknown key id")?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| "truncated")?;
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| "authentication failed")
    }
}

/// Encrypts every record of an inner store. A record that does not decrypt
/// (tampered, truncated, or under an unknown key) reads as a miss and is counted.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    keys: Keyring,
    undecryptable: AtomicU64,
}

impl EncryptedStore {
    pub fn new(inner: Arc<dyn Store>, keys: Keyring) -> Self {
        Self {
            inner,
            keys,
            undecryptable: AtomicU64::new(0),
        }
    }

    /// Records that were found but could not be decrypted.
    pub fn undecryptable(&self) -> u64 {
        self.undecryptable.load(Ordering::Relaxed)
    }

    fn decrypt(&self, key: &str, record: Option<Record>) -> Option<Record> {
        let record = record?;
        // The store key is the associated data: a ciphertext moved to another key fails.
        match self.keys.open(key, &record.data) {
            Ok(data) => Some(Record { data, ..record }),
            Err(reason) => {
                self.undecryptable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    reason,
                    "an encrypted record did not decrypt; treating it as missing"
                );
                None
            }
        }
    }
}

#[async_trait]
impl Store for EncryptedStore {
    fn kind(&self) -> String {
        format!("encrypted({})", self.inner.kind())
    }

    async fn load(&self, key: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.decrypt(key, self.inner.load(key).await?))
    }

    async fn load_many(&self, keys: &[&str]) -> Result<Vec<Option<Record>>, StoreError> {
        let records = self.inner.load_many(keys).await?;
        Ok(keys
            .iter()
            .zip(records)
            .map(|(key, r)| self.decrypt(key, r))
            .collect())
    }

    async fn save(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Option<Duration>,
    ) -> Result<u64, StoreError> {
        self.inner
            .save(key, &self.keys.seal(key, data)?, expect, ttl)
            .await
    }

    async fn save_if_newer(
        &self,
        key: &str,
        data: &[u8],
        version: u64,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.inner
            .save_if_newer(key, &self.keys.seal(key, data)?, version, ttl)
            .await
    }

    async fn versions(&self, keys: &[&str]) -> Result<Vec<Option<u64>>, StoreError> {
        self.inner.versions(keys).await
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.inner.expire(key, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.delete(key).await
    }

    async fn size(&self) -> Result<StoreSize, StoreError> {
        self.inner.size().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        let old = Keyring::derive_key(b"secret", "k1");
        let new = Keyring::derive_key(b"secret", "k2");
        Keyring::new(&[("k1", old), ("k2", new)], "k2").expect("keyring")
    }

    #[test]
    fn sealed_records_open_only_with_their_key_and_store_key() {
        let keys = ring();
        let sealed = keys.seal("sess:a", b"hello").expect("seal");
        assert_eq!(keys.open("sess:a", &sealed).expect("open"), b"hello");
        assert_eq!(keys.open("sess:b", &sealed), Err("authentication failed"));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(keys.open("sess:a", &flipped), Err("authentication failed"));
        for cut in 0..sealed.len() {
            assert!(keys.open("sess:a", &sealed[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            keys.open("sess:a", b"plain json"),
            Err("not an encrypted record")
        );
    }

    #[test]
    fn a_rotated_keyring_still_opens_records_of_the_old_key() {
        let old_only =
            Keyring::new(&[("k1", Keyring::derive_key(b"secret", "k1"))], "k1").expect("keyring");
        let sealed = old_only.seal("tc:x", b"tokens").expect("seal");
        assert_eq!(
            ring().open("tc:x", &sealed).expect("old key opens"),
            b"tokens"
        );
        let without_old =
            Keyring::new(&[("k2", Keyring::derive_key(b"secret", "k2"))], "k2").expect("keyring");
        assert_eq!(without_old.open("tc:x", &sealed), Err("unknown key id"));
    }
}
