//! Running `git http-backend` as a CGI: request body streamed to stdin while stdout is read,
//! CGI response head parsed, body streamed back.

use std::path::Path;
use std::process::Stdio;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Largest CGI response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Why the CGI could not produce a response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CgiError {
    /// Spawning or talking to the process failed.
    #[error("git http-backend: {0}")]
    Io(#[from] std::io::Error),
    /// The output did not start with a valid CGI head.
    #[error("git http-backend: malformed CGI response: {0}")]
    Malformed(String),
}

/// Where the head ends: `(head length, body start)`; `\r\n\r\n` or, as a fallback, `\n\n`.
pub(crate) fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Parses a CGI head into the status (from `Status:`, else 200) and the other headers.
pub(crate) fn parse_head(head: &[u8]) -> Result<(StatusCode, Vec<(HeaderName, HeaderValue)>), CgiError> {
    let text = std::str::from_utf8(head).map_err(|e| CgiError::Malformed(e.to_string()))?;
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    for line in text
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
    {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| CgiError::Malformed(format!("header line without colon: {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| CgiError::Malformed(format!("bad status {value:?}")))?;
        } else {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|e| CgiError::Malformed(e.to_string()))?;
            let value = HeaderValue::from_str(value).map_err(|e| CgiError::Malformed(e.to_string()))?;
            headers.push((name, value));
        }
    }
    Ok((status, headers))
}

/// Runs `git http-backend` with exactly `env` (after `env_clear`), feeding it `body`.
pub(crate) async fn run(
    git: &Path,
    env: Vec<(&'static str, String)>,
    body: Body,
) -> Result<Response, CgiError> {
    let mut child = Command::new(git)
        .arg("http-backend")
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(CgiError::Malformed("missing child pipes".into()));
    };
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    if stdin.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "git request body ended with an error");
                    break;
                }
            }
        }
        let _ = stdin.shutdown().await;
    });
    tokio::spawn(async move {
        let mut text = String::new();
        if stderr.read_to_string(&mut text).await.is_ok() && !text.trim().is_empty() {
            tracing::debug!(stderr = %text.trim(), "git http-backend stderr");
        }
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let (head_len, body_start) = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(CgiError::Malformed("head too large".into()));
        }
        let n = stdout.read(&mut chunk).await?;
        if n == 0 {
            let status = child.wait().await?;
            return Err(CgiError::Malformed(format!("no CGI head before exit ({status})")));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let (status, headers) = parse_head(&buf[..head_len])?;
    let rest = bytes::Bytes::copy_from_slice(&buf[body_start..]);
    let stream = async_stream::stream! {
        if !rest.is_empty() {
            yield Ok::<_, std::io::Error>(rest);
        }
        loop {
            match stdout.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => yield Ok(bytes::Bytes::copy_from_slice(&chunk[..n])),
                Err(e) => {
                    yield Err(e);
                    break;
                }
            }
        }
        match child.wait().await {
            Ok(s) if !s.success() => tracing::debug!(status = %s, "git http-backend exited"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "waiting for git http-backend failed"),
        }
    };
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    for (name, value) in headers {
        response.headers_mut().append(name, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_head_end_by_table() {
        type Case<'a> = (&'a [u8], Option<(usize, usize)>);
        let cases: &[Case] = &[
            (b"A: b\r\n\r\nbody", Some((4, 8))),
            (b"A: b\n\nbody", Some((4, 6))),
            (b"A: b\r\n", None),
            (b"\r\n\r\n", Some((0, 4))),
        ];
        for (buf, want) in cases {
            assert_eq!(find_head_end(buf), *want, "{:?}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn parses_status_and_headers() {
        let (status, headers) =
            parse_head(b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\nExpires: Fri, 01 Jan 1980")
                .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0].0, "content-type");
        let (status, _) = parse_head(b"Content-Type: application/x-git-upload-pack-advertisement").unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(parse_head(b"garbage").is_err());
        assert!(parse_head(b"Status: abc").is_err());
    }
}
