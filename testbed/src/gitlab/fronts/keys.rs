//! The registry token signing key: an RSA key with a self-signed certificate (the registry's
//! `rootcertbundle`), its libtrust key id (the JWT `kid`), and RS256 signing of registry JWTs.

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::process::Command;

use super::FrontsError;

/// `iss` of registry tokens; the registry config's `auth.token.issuer`.
pub(crate) const ISSUER: &str = "gitlab-issuer";
/// `aud` of registry tokens; the registry config's `auth.token.service`.
pub(crate) const SERVICE: &str = "container_registry";
/// Lifetime of registry tokens in seconds (GitLab self-managed default: 5 minutes).
pub(crate) const TOKEN_TTL_SECS: i64 = 300;

/// One granted resource in a registry token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AccessEntry {
    /// `repository` (or `registry` for the catalog).
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name as requested.
    pub name: String,
    /// Granted actions (`pull`, `push`, `delete`, `*`).
    pub actions: Vec<String>,
}

/// Claims of a registry JWT; `aud` is a plain string (distribution 2.8 rejects an array).
#[derive(Debug, Serialize)]
struct RegistryClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    access: &'a [AccessEntry],
}

/// The signing key, its `kid`, and the certificate the registry trusts.
pub(crate) struct TokenSigner {
    key: EncodingKey,
    kid: String,
    cert_path: PathBuf,
}

impl TokenSigner {
    /// Generates an RSA-2048 key and a self-signed certificate in `dir` with `openssl`.
    pub(crate) async fn generate(dir: &Path) -> Result<Self, FrontsError> {
        let key_path = dir.join("registry-token.key");
        let cert_path = dir.join("registry-token.crt");
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
            ])
            .args(["-subj", "/CN=gitlab-emulator-registry-token"])
            .arg("-keyout")
            .arg(&key_path)
            .arg("-out")
            .arg(&cert_path)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| FrontsError::Tool {
                tool: "openssl",
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(FrontsError::Tool {
                tool: "openssl",
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let pem = tokio::fs::read_to_string(&key_path).await?;
        Self::from_pem(&pem, cert_path)
    }

    /// Builds the signer from a PKCS#8 PEM private key whose certificate is at `cert_path`.
    fn from_pem(pem: &str, cert_path: PathBuf) -> Result<Self, FrontsError> {
        let private = RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| FrontsError::Key(e.to_string()))?;
        let spki = private
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| FrontsError::Key(e.to_string()))?;
        let kid = libtrust_key_id(spki.as_bytes());
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| FrontsError::Key(e.to_string()))?;
        Ok(Self { key, kid, cert_path })
    }

    /// The libtrust key id of the signing key.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// Path of the PEM certificate for the registry's `rootcertbundle`.
    pub(crate) fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Signs a registry token for `subject` (`""` when anonymous) with the given access, valid
    /// for [`TOKEN_TTL_SECS`] of real time (the registry checks the real clock).
    pub(crate) fn sign(&self, subject: &str, access: &[AccessEntry]) -> Result<String, FrontsError> {
        let iat = chrono::Utc::now().timestamp();
        let claims = RegistryClaims {
            iss: ISSUER,
            sub: subject,
            aud: SERVICE,
            iat,
            nbf: iat - 5,
            exp: iat + TOKEN_TTL_SECS,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| FrontsError::Key(e.to_string()))
    }
}

/// libtrust key id: SHA-256 of the PKIX SubjectPublicKeyInfo DER, first 30 bytes, base32
/// without padding (48 chars), in 12 groups of 4 joined by `:`.
pub(crate) fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let encoded = data_encoding::BASE32_NOPAD.encode(&digest[..30]);
    let groups: Vec<&str> = (0..encoded.len())
        .step_by(4)
        .map(|i| &encoded[i..(i + 4).min(encoded.len())])
        .collect();
    groups.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kid_matches_the_openssl_pipeline_of_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let signer = TokenSigner::generate(dir.path()).await.unwrap();
        assert_eq!(signer.kid().len(), 48 + 11);
        let script = "openssl x509 -in \"$1\" -pubkey -noout | openssl pkey -pubin -outform DER \
                      | openssl dgst -sha256 -binary | head -c 30 | base32 | tr -d '=\\n' \
                      | fold -w4 | paste -sd: -";
        let out = std::process::Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(signer.cert_path())
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), signer.kid());
    }

    #[tokio::test]
    async fn token_has_kid_header_and_string_audience() {
        let dir = tempfile::tempdir().unwrap();
        let signer = TokenSigner::generate(dir.path()).await.unwrap();
        let access = vec![AccessEntry {
            kind: "repository".into(),
            name: "acme/app".into(),
            actions: vec!["pull".into()],
        }];
        let jwt = signer.sign("alice", &access).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let header: serde_json::Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], signer.kid());
        assert_eq!(claims["aud"], "container_registry");
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["sub"], "alice");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            300
        );
        assert_eq!(claims["access"][0]["type"], "repository");
        assert_eq!(claims["access"][0]["actions"][0], "pull");
    }

    #[test]
    fn key_id_is_twelve_groups_of_four() {
        let id = libtrust_key_id(b"anything");
        let groups: Vec<&str> = id.split(':').collect();
        assert_eq!(groups.len(), 12);
        assert!(groups.iter().all(|g| g.len() == 4));
    }
}
