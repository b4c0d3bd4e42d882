//! The ES256 signing key: generated or derived from a seed, published as a JWKS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::SecretKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot encode the signing key: {0}")]
    Encode(String),
    #[error("cannot build the verification key: {0}")]
    Decode(#[from] jsonwebtoken::errors::Error),
}

/// The provider's signing key and everything derived from it.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        Self::from_secret_material(&rand::random::<[u8; 32]>())
    }

    /// The same key for the same seed, so runs can be reproduced.
    pub fn from_seed(seed: &str) -> Result<Self, KeyError> {
        Self::from_secret_material(seed.as_bytes())
    }

    /// Hashes the material until it is a valid P-256 scalar (the first try
    /// almost always is: the odds of failure are about 2^-32).
    fn from_secret_material(material: &[u8]) -> Result<Self, KeyError> {
        let mut counter = 0u32;
        let secret = loop {
            let digest = Sha256::new()
                .chain_update(b"mock-idp signing key")
                .chain_update(counter.to_be_bytes())
                .chain_update(material)
                .finalize();
            if let Ok(secret) = SecretKey::from_slice(&digest) {
                break secret;
            }
            counter += 1;
        };
        let der = secret
            .to_pkcs8_der()
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        let point = secret.public_key().to_encoded_point(false);
        let (x, y) = match (point.x(), point.y()) {
            (Some(x), Some(y)) => (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)),
            _ => return Err(KeyError::Encode("public key is the identity".into())),
        };
        // RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
        let thumbprint_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
        let decoding = DecodingKey::from_ec_components(&x, &y)?;
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": kid, "use": "sig", "alg": "ES256",
        });
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            decoding,
            jwk,
        })
    }

    /// Key id carried in every token header and in the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JSON Web Key Set served at the JWKS endpoint.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// Signs claims as a compact JWS.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }

    /// The public key for verification.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_key() {
        let a = SigningKey::from_seed("run-42").expect("key");
        let b = SigningKey::from_seed("run-42").expect("key");
        let c = SigningKey::from_seed("run-43").expect("key");
        assert_eq!(a.kid(), b.kid());
        assert_eq!(a.jwks(), b.jwks());
        assert_ne!(a.kid(), c.kid());
    }

    #[test]
    fn a_signed_token_verifies_with_the_published_key() {
        let key = SigningKey::generate().expect("key");
        let token = key.sign(&json!({"sub": "x"})).expect("sign");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(&token, key.decoding_key(), &validation)
            .expect("verifies");
        assert_eq!(data.claims["sub"], "x");
        assert_eq!(data.header.kid.as_deref(), Some(key.kid()));
    }
}
