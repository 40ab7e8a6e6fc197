//! Seeding the registry over the real distribution API (reference §3.2): blobs with
//! `POST` + `PUT` uploads, then the manifest, authorised by an internal admin JWT.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::FrontsError;
use super::keys::{AccessEntry, TokenSigner};
use super::tarball::{ChartMeta, chart_tgz, gzip, tar};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
const HELM_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// Subject of the internal seeding token (appears in registry logs).
const SEED_SUBJECT: &str = "testbed-seeder";

/// A reqwest client for plain HTTP on 127.0.0.1 (rustls with ring, no roots, no global provider).
pub(crate) fn plain_http_client() -> Result<reqwest::Client, FrontsError> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| FrontsError::Http(e.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .map_err(|e| FrontsError::Http(e.to_string()))
}

/// `sha256:<hex>` of `data`.
pub(crate) fn digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// A blob with its media type.
struct Blob {
    media_type: &'static str,
    data: Vec<u8>,
}

impl Blob {
    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": digest(&self.data), "size": self.data.len()})
    }
}

/// Pushes artifacts into one registry with an admin token per repository.
pub(crate) struct Pusher<'a> {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Signs the admin token.
    pub signer: &'a TokenSigner,
    /// HTTP client.
    pub client: reqwest::Client,
}

impl Pusher<'_> {
    /// Pushes a one-layer OCI image (file `hello.txt` naming repository and tag); returns the
    /// manifest digest.
    pub(crate) async fn push_image(&self, repository: &str, tag: &str) -> Result<String, FrontsError> {
        let content = format!("hello from {repository}:{tag}\n");
        let layer_tar = tar(&[("hello.txt".to_owned(), content.into_bytes())])?;
        let layer = Blob {
            media_type: OCI_LAYER,
            data: gzip(&layer_tar)?,
        };
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [digest(&layer_tar)]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "testbed seed"}],
        });
        let config = Blob {
            media_type: OCI_CONFIG,
            data: serde_json::to_vec(&config)?,
        };
        self.push(repository, tag, config, vec![layer], json!({})).await
    }

    /// Pushes a Helm chart as an OCI artifact (`<repository>` should end in the chart name; tag =
    /// version with `+` as `_`); returns the manifest digest.
    pub(crate) async fn push_chart(&self, repository: &str, meta: &ChartMeta) -> Result<String, FrontsError> {
        let layer = Blob {
            media_type: HELM_LAYER,
            data: chart_tgz(meta)?,
        };
        let config = Blob {
            media_type: HELM_CONFIG,
            data: serde_json::to_vec(meta)?,
        };
        let annotations = json!({
            "org.opencontainers.image.title": meta.name,
            "org.opencontainers.image.version": meta.version,
            "org.opencontainers.image.description": meta.description,
        });
        let tag = meta.version.replace('+', "_");
        self.push(repository, &tag, config, vec![layer], annotations)
            .await
    }

    async fn push(
        &self,
        repository: &str,
        tag: &str,
        config: Blob,
        layers: Vec<Blob>,
        annotations: serde_json::Value,
    ) -> Result<String, FrontsError> {
        let access = [AccessEntry {
            kind: "repository".into(),
            name: repository.to_owned(),
            actions: vec!["pull".into(), "push".into()],
        }];
        let token = self.signer.sign(SEED_SUBJECT, &access)?;
        for blob in std::iter::once(&config).chain(&layers) {
            self.upload_blob(repository, &token, blob).await?;
        }
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        if annotations.as_object().is_some_and(|a| !a.is_empty()) {
            manifest["annotations"] = annotations;
        }
        let bytes = serde_json::to_vec(&manifest)?;
        let url = format!("http://{}/v2/{repository}/manifests/{tag}", self.host);
        let resp = self
            .client
            .put(&url)
            .bearer_auth(&token)
            .header("Content-Type", OCI_MANIFEST)
            .body(bytes.clone())
            .send()
            .await
            .map_err(|e| FrontsError::Http(e.to_string()))?;
        expect_status(resp, StatusCode::CREATED, "PUT manifest").await?;
        Ok(digest(&bytes))
    }

    async fn upload_blob(&self, repository: &str, token: &str, blob: &Blob) -> Result<(), FrontsError> {
        let d = digest(&blob.data);
        let base = format!("http://{}/v2/{repository}/blobs/", self.host);
        let head = self
            .client
            .head(format!("{base}{d}"))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| FrontsError::Http(e.to_string()))?;
        if head.status() == StatusCode::OK {
            return Ok(());
        }
        let resp = self
            .client
            .post(format!("{base}uploads/"))
            .bearer_auth(token)
            .header("Content-Length", "0")
            .send()
            .await
            .map_err(|e| FrontsError::Http(e.to_string()))?;
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let resp = expect_status(resp, StatusCode::ACCEPTED, "POST blob upload").await?;
        let location =
            location.ok_or_else(|| FrontsError::Registry("blob upload without Location".into()))?;
        let mut url = url::Url::parse(resp.url().as_str())
            .and_then(|u| u.join(&location))
            .map_err(|e| FrontsError::Registry(format!("bad upload Location: {e}")))?;
        url.query_pairs_mut().append_pair("digest", &d);
        let resp = self
            .client
            .put(url)
            .bearer_auth(token)
            .header("Content-Type", "application/octet-stream")
            .body(blob.data.clone())
            .send()
            .await
            .map_err(|e| FrontsError::Http(e.to_string()))?;
        expect_status(resp, StatusCode::CREATED, "PUT blob").await?;
        Ok(())
    }
}

async fn expect_status(
    resp: reqwest::Response,
    want: StatusCode,
    what: &str,
) -> Result<reqwest::Response, FrontsError> {
    if resp.status() == want {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    Err(FrontsError::Registry(format!(
        "{what}: {status}: {}",
        body.trim()
    )))
}
