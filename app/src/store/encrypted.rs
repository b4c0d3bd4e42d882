//! Encryption at rest: AES-256-GCM around any store, with key ids so keys can rotate.
//!
//! The associated data binds a ciphertext to its record kind (the key's
//! prefix: `sess`, `tc`), its key, and the version it is stored at: a
//! ciphertext moved to another key, or written back under another version
//! (a replayed older copy given the current version), does not decrypt.
//! So the version a write will get is needed before it is sealed: one more
//! than the expected version for a compare-and-set, 1 for a create; a store
//! that numbers otherwise (a create over a tombstone) makes the record be
//! sealed again at its number, and a last-writer-wins write becomes a
//! compare-and-set on the version just read.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use hkdf::Hkdf;
use sha2::Sha256;

use super::{Expect, Fence, Record, Store, StoreError, StoreSize};

/// Format tag of an encrypted record: `MAGIC | kid length | kid | nonce | ciphertext+tag`.
/// (`e1`, before the version was bound, is no longer read.)
const MAGIC: &[u8; 2] = b"e2";
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

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let cipher = &self.keys[&self.current];
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad,
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
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, &'static str> {
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
                    aad,
                },
            )
            .map_err(|_| "authentication failed")
    }
}

impl Keyring {
    /// The plaintext of a record as stored under `key` at `version`, or why
    /// not: for a reader of the stores' raw contents (the harness's probe),
    /// which goes around the store layer and so around [`EncryptedStore`].
    pub fn open_record(
        &self,
        key: &str,
        version: u64,
        sealed: &[u8],
    ) -> Result<Vec<u8>, &'static str> {
        self.open(&associated(key, version), sealed)
    }
}

/// The associated data of a record: its kind, key and version.
fn associated(key: &str, version: u64) -> Vec<u8> {
    let kind = key.split_once(':').map_or(key, |(kind, _)| kind);
    let mut aad = Vec::with_capacity(kind.len() + key.len() + 10);
    aad.extend_from_slice(kind.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// How many times a write is sealed again at the version the store gave it.
const RESEAL_ATTEMPTS: usize = 4;

/// Encrypts every record of an inner store. A record that does not decrypt
/// (tampered, truncated, replayed under another version, or under an
/// unknown key) is read again from the truth ([`Store::load_many_latest`]:
/// a bad cache copy is not served); if that does not decrypt either it
/// reads as a miss, and is counted.
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

    fn decrypt(&self, key: &str, record: Record) -> Result<Record, &'static str> {
        let data = self
            .keys
            .open(&associated(key, record.version), &record.data)?;
        Ok(Record { data, ..record })
    }

    /// Decrypts what was read; records that do not decrypt are read again
    /// from the truth, and what still does not is counted and missing.
    async fn decrypt_all(
        &self,
        keys: &[&str],
        records: Vec<Option<Record>>,
    ) -> Result<Vec<Option<Record>>, StoreError> {
        let mut out = Vec::with_capacity(records.len());
        let mut failed = Vec::new();
        for (i, (key, record)) in keys.iter().zip(records).enumerate() {
            match record.map(|r| self.decrypt(key, r)) {
                None => out.push(None),
                Some(Ok(record)) => out.push(Some(record)),
                Some(Err(_)) => {
                    out.push(None);
                    failed.push(i);
                }
            }
        }
        if failed.is_empty() {
            return Ok(out);
        }
        let again: Vec<&str> = failed.iter().map(|&i| keys[i]).collect();
        let reread = self.inner.load_many_latest(&again).await?;
        for (i, record) in failed.into_iter().zip(reread) {
            out[i] = match record.map(|r| self.decrypt(keys[i], r)) {
                None => None,
                Some(Ok(record)) => Some(record),
                Some(Err(reason)) => {
                    self.undecryptable.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        reason,
                        "an encrypted record did not decrypt; treating it as missing"
                    );
                    None
                }
            };
        }
        Ok(out)
    }

    /// Seals `data` at the version the write will get and writes it with
    /// `write`; a store that gave another version gets the record sealed
    /// again at that one (see the module doc).
    async fn sealed_write<'a, W, Fut>(
        &'a self,
        key: &'a str,
        data: &'a [u8],
        expect: Expect,
        write: W,
    ) -> Result<u64, StoreError>
    where
        W: Fn(Vec<u8>, Expect) -> Fut,
        Fut: Future<Output = Result<u64, StoreError>>,
    {
        let mut expect = match expect {
            Expect::Any => match self.inner.versions(&[key]).await?.pop().flatten() {
                Some(current) => Expect::Version(current),
                None => Expect::Absent,
            },
            other => other,
        };
        for _ in 0..RESEAL_ATTEMPTS {
            let predicted = match expect {
                Expect::Version(v) => v + 1,
                Expect::Absent | Expect::Any => 1,
            };
            let sealed = self.keys.seal(&associated(key, predicted), data)?;
            let version = write(sealed, expect).await?;
            if version == predicted {
                return Ok(version);
            }
            expect = Expect::Version(version);
        }
        Err(StoreError::Conflict { current: None })
    }
}

#[async_trait]
impl Store for EncryptedStore {
    fn kind(&self) -> String {
        format!("encrypted({})", self.inner.kind())
    }

    async fn load(&self, key: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.load_many(&[key]).await?.pop().flatten())
    }

    async fn load_many(&self, keys: &[&str]) -> Result<Vec<Option<Record>>, StoreError> {
        let records = self.inner.load_many(keys).await?;
        self.decrypt_all(keys, records).await
    }

    async fn load_many_latest(&self, keys: &[&str]) -> Result<Vec<Option<Record>>, StoreError> {
        let records = self.inner.load_many_latest(keys).await?;
        self.decrypt_all(keys, records).await
    }

    async fn save(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Option<Duration>,
    ) -> Result<u64, StoreError> {
        self.sealed_write(key, data, expect, |sealed, expect| async move {
            self.inner.save(key, &sealed, expect, ttl).await
        })
        .await
    }

    async fn save_renewing(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Duration,
        renew: &[&str],
    ) -> Result<u64, StoreError> {
        self.sealed_write(key, data, expect, |sealed, expect| async move {
            self.inner
                .save_renewing(key, &sealed, expect, ttl, renew)
                .await
        })
        .await
    }

    async fn save_fenced(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Option<Duration>,
        fence: &Fence,
    ) -> Result<u64, StoreError> {
        self.sealed_write(key, data, expect, |sealed, expect| async move {
            self.inner
                .save_fenced(key, &sealed, expect, ttl, fence)
                .await
        })
        .await
    }

    async fn save_if_newer(
        &self,
        key: &str,
        data: &[u8],
        version: u64,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let sealed = self.keys.seal(&associated(key, version), data)?;
        self.inner.save_if_newer(key, &sealed, version, ttl).await
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
        let at = |key, version| associated(key, version);
        let sealed = keys.seal(&at("sess:a", 3), b"hello").expect("seal");
        assert_eq!(
            keys.open(&at("sess:a", 3), &sealed).expect("open"),
            b"hello"
        );
        assert_eq!(
            keys.open(&at("sess:b", 3), &sealed),
            Err("authentication failed")
        );
        // Another version: an older ciphertext given the current version.
        assert_eq!(
            keys.open(&at("sess:a", 4), &sealed),
            Err("authentication failed")
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            keys.open(&at("sess:a", 3), &flipped),
            Err("authentication failed")
        );
        for cut in 0..sealed.len() {
            assert!(
                keys.open(&at("sess:a", 3), &sealed[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert_eq!(
            keys.open(&at("sess:a", 3), b"plain json"),
            Err("not an encrypted record")
        );
        // The kind is bound too, beside the key that names it.
        assert_ne!(at("sess:a", 3), at("tc:a", 3));
    }

    #[test]
    fn a_rotated_keyring_still_opens_records_of_the_old_key() {
        let old_only =
            Keyring::new(&[("k1", Keyring::derive_key(b"secret", "k1"))], "k1").expect("keyring");
        let aad = associated("tc:x", 1);
        let sealed = old_only.seal(&aad, b"tokens").expect("seal");
        assert_eq!(
            ring().open(&aad, &sealed).expect("old key opens"),
            b"tokens"
        );
        let without_old =
            Keyring::new(&[("k2", Keyring::derive_key(b"secret", "k2"))], "k2").expect("keyring");
        assert_eq!(without_old.open(&aad, &sealed), Err("unknown key id"));
    }
}
