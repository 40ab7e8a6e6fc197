//! The GitLab client over HTTPS: a `caBundle` is the only trust it extends. A private CA and a
//! server certificate for 127.0.0.1 are minted per test with rcgen; the server is axum over
//! tokio-rustls, all with the ring provider like the operator itself.

use std::{io, net::SocketAddr, sync::Arc};

use axum::{Router, routing::get};
use gitlab_token_operator::gitlab::{ClientConfig, GitLabApi, GitLabClient};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::SecretString;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// A private CA (PEM) and a server certificate chain + key it signed for `127.0.0.1`.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn mint_ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    (params, key, cert.pem())
}

fn pki() -> Pki {
    let (ca_params, ca_key, ca_pem) = mint_ca("gitlab-token-operator test CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "gitlab.test");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_pem,
        chain: vec![leaf_cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// A TCP listener that completes a TLS handshake before handing the stream to axum.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that rejects the certificate aborts the handshake: wait for the next one.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn https_gitlab(pki: &Pki) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    let app = Router::new().route(
        "/api/v4/version",
        get(|| async {
            (
                [("content-type", "application/json")],
                r#"{"version":"17.9.1-ee","revision":"2f4ffd2f9a1"}"#,
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("https://127.0.0.1:{}", addr.port())
}

fn client(url: &str, ca_bundle: Option<String>) -> GitLabClient {
    let mut config = ClientConfig::new(url, SecretString::from("glpat-OPERATORsecretVALUE42"));
    config.ca_bundle = ca_bundle;
    config.retry.max_attempts = 1;
    GitLabClient::new(config).unwrap()
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_through_the_ca_bundle() {
    let pki = pki();
    let url = https_gitlab(&pki).await;

    // Without the bundle the platform trust store does not know the private CA.
    let err = client(&url, None).version().await.unwrap_err();
    assert_eq!(err.reason(), "TransportError", "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "says why: {err}"
    );

    // A bundle with some other CA is not enough either: the bundle replaces, not extends.
    let (_, _, other_ca) = mint_ca("some other CA");
    let err = client(&url, Some(other_ca.clone())).version().await.unwrap_err();
    assert_eq!(err.reason(), "TransportError", "{err}");

    // With the right CA (alone, or among others in the bundle) the same call succeeds.
    let version = client(&url, Some(pki.ca_pem.clone())).version().await.unwrap();
    assert_eq!(version.version, "17.9.1-ee");
    let bundle = format!("{other_ca}\n{}", pki.ca_pem);
    assert_eq!(
        client(&url, Some(bundle)).version().await.unwrap().version,
        "17.9.1-ee"
    );
}

#[tokio::test]
async fn a_bundle_without_certificates_is_a_configuration_error() {
    let mut config = ClientConfig::new("https://gitlab.example.com", SecretString::from("glpat-x"));
    config.ca_bundle = Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into());
    assert_eq!(GitLabClient::new(config).unwrap_err().reason(), "InvalidConfig");
}
