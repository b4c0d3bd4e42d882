//! The Redis store over TLS (`rediss://`), against a private redis-server with a generated CA.

use std::process::{Command, Stdio};

use app::store::redis::RedisStore;
use app::store::{Expect, Store, StoreError};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::common::{Guard, free_port, wait_for_port};

#[tokio::test]
async fn rediss_urls_talk_tls_and_trust_only_the_given_ca() {
    // redis-rs and reqwest bring different rustls providers into this test binary.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("dir");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "redis test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let ca = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().expect("key");
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("params")
        .signed_by(&server_key, &ca)
        .expect("server cert");
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let (cert, key, ca_file) = (
        write("server.pem", server.pem()),
        write("server.key", server_key.serialize_pem()),
        write("ca.pem", ca_cert.pem()),
    );
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--tls-port",
            &port.to_string(),
            "--tls-auth-clients",
            "no",
        ])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--tls-ca-cert-file")
        .arg(&ca_file)
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    let _guard = Guard(child);
    wait_for_port(port);

    let url = format!("rediss://127.0.0.1:{port}");
    let store =
        RedisStore::connect_with_ca(&url, "tls:", Some(ca_cert.pem().into_bytes())).expect("store");
    assert_eq!(
        store
            .save("k", b"over tls", Expect::Absent, None)
            .await
            .expect("save"),
        1
    );
    assert_eq!(
        store.load("k").await.expect("load").expect("present").data,
        b"over tls"
    );

    let untrusting = RedisStore::connect(&url, "tls:").expect("store");
    assert!(
        matches!(untrusting.load("k").await, Err(StoreError::Unavailable(_))),
        "a CA the client does not trust fails the handshake"
    );
    let plain = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), "tls:").expect("store");
    assert!(
        plain.load("k").await.is_err(),
        "plain text to a TLS port fails"
    );
}
