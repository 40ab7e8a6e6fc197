//! TLS for GitLab connections: rustls with the ring provider (the one kube uses, so the binary
//! carries a single provider), handed to reqwest preconfigured so no process-wide default
//! provider has to be installed first.
//!
//! Trust: with a `caBundle`, exactly the CAs in that PEM bundle (the CRD's contract: "in
//! addition to none other"); without one, the platform verifier (the OS trust store), which
//! reqwest's `rustls-no-provider` feature already builds in.

use std::sync::Arc;

use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};
use rustls_platform_verifier::BuilderVerifierExt;

use super::GitLabError;

/// A rustls client configuration trusting `ca_bundle` (PEM) alone, or the platform's roots.
pub fn tls_config(ca_bundle: Option<&str>) -> Result<ClientConfig, GitLabError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS setup failed: {e}")))?;
    let mut config = match ca_bundle {
        Some(pem) => {
            let roots = root_store(pem)?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .with_platform_verifier()
            .map_err(|e| invalid(format!("cannot load the platform's trust store: {e}")))?
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Every certificate of a PEM bundle as a root store; a bundle without certificates is an error.
fn root_store(pem: &str) -> Result<RootCertStore, GitLabError> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
        let cert = cert.map_err(|e| {
            invalid(format!(
                "caBundle: certificate {} is not valid PEM: {e}",
                index + 1
            ))
        })?;
        roots.add(cert).map_err(|e| {
            invalid(format!(
                "caBundle: certificate {} is not a usable CA: {e}",
                index + 1
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(invalid("caBundle contains no PEM certificate".into()));
    }
    Ok(roots)
}

fn invalid(message: String) -> GitLabError {
    GitLabError::InvalidConfig { message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_without_certificates_are_refused() {
        for bad in [
            "",
            "not pem at all",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        ] {
            let err = tls_config(Some(bad)).unwrap_err();
            assert_eq!(err.reason(), "InvalidConfig", "{bad:?}");
        }
    }
}
