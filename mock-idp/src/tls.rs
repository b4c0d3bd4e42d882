//! TLS for the HTTPS listener: a generated CA and server certificate, or PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot read {what} from {path}: {message}")]
    Read {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("cannot write the CA certificate to {path}: {source}")]
    WriteCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid TLS certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A server certificate chain and key, and the CA certificate clients should trust.
pub struct TlsMaterial {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca_pem: Option<String>,
}

impl TlsMaterial {
    /// A new CA and a server certificate signed by it for `localhost`,
    /// `127.0.0.1` and `::1`. Clients trust the CA, not the server
    /// certificate itself (webpki refuses a CA used as an end entity).
    pub fn generate() -> Result<Self, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mock-idp test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server_params =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "mock-idp");
        let server_cert = server_params.signed_by(&server_key, &ca)?;
        Ok(Self {
            chain: vec![server_cert.der().clone(), ca_cert.der().clone()],
            key: PrivateKeyDer::try_from(server_key.serialize_der())
                .map_err(|e| rcgen::Error::PemError(e.to_string()))?,
            ca_pem: Some(ca_cert.pem()),
        })
    }

    /// A chain and key from PEM files. The CA is then the caller's own.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read_err = |what, path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
            what,
            path: path.to_owned(),
            message: e.to_string(),
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| read_err("certificates", cert, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read_err("certificates", cert, &e))?;
        if chain.is_empty() {
            return Err(read_err("certificates", cert, &"no CERTIFICATE block"));
        }
        let key_der =
            PrivateKeyDer::from_pem_file(key).map_err(|e| read_err("private key", key, &e))?;
        Ok(Self {
            chain,
            key: key_der,
            ca_pem: None,
        })
    }

    /// PEM of the generated CA, when this material was generated.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Writes the CA certificate for clients (`SSL_CERT_FILE`, `NODE_EXTRA_CA_CERTS`).
    pub fn write_ca(&self, path: &Path) -> Result<bool, TlsError> {
        let Some(pem) = &self.ca_pem else {
            return Ok(false);
        };
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, pem)
        };
        write().map_err(|source| TlsError::WriteCa {
            path: path.to_owned(),
            source,
        })?;
        Ok(true)
    }

    /// A rustls server configuration. The crypto provider is named here rather
    /// than taken from the process default, which is ambiguous (and panics)
    /// when more than one provider is compiled in.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
