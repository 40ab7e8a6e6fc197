//! Watch streams: resourceVersion semantics, synthetic initial events, selector transitions,
//! bookmarks (incl. the initial-events-end one), timeouts, in-stream 410, and test-driven drops.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::output::{Shape, render_one};
use super::resources::ResourceDef;
use super::selector::{FieldSelector, LabelSelector};
use super::state::State;
use super::store::{Event, EventType};

/// A validated watch request.
pub struct WatchReq {
    /// Resource watched.
    pub def: Arc<ResourceDef>,
    /// Namespace filter.
    pub ns: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// `resourceVersion` parameter.
    pub rv: Option<String>,
    /// `sendInitialEvents=true`.
    pub send_initial: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<u64>,
    /// Response representation.
    pub shape: Shape,
}

impl WatchReq {
    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.ns
            && obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    fn line(&self, ty: &str, obj: &Value) -> Bytes {
        let rendered = render_one(&self.def, obj, self.shape);
        let mut s = json!({"type": ty, "object": rendered}).to_string();
        s.push('\n');
        Bytes::from(s)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let (kind, av) = match self.shape {
            Shape::Meta => ("PartialObjectMetadata".to_string(), "meta.k8s.io/v1".to_string()),
            _ => (self.def.kind.clone(), self.def.api_version()),
        };
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let mut s =
            json!({"type":"BOOKMARK","object":{"kind":kind,"apiVersion":av,"metadata":meta}}).to_string();
        s.push('\n');
        Bytes::from(s)
    }

    /// Translates a store event into this watcher's view (selector transitions included).
    fn translate(&self, ev: &Event) -> Option<Bytes> {
        if ev.storage != self.def.storage {
            return None;
        }
        let now = self.matches(&ev.obj);
        let before = ev.prev.as_ref().is_some_and(|p| self.matches(p));
        let ty = match ev.kind {
            EventType::Added if now => "ADDED",
            EventType::Modified if now && before => "MODIFIED",
            EventType::Modified if now => "ADDED",
            EventType::Modified if before => "DELETED",
            EventType::Deleted if now => "DELETED",
            _ => return None,
        };
        let verbatim = self.shape == Shape::Full
            && self.def.group != "events.k8s.io"
            && ev.obj.get("apiVersion").and_then(Value::as_str) == Some(self.def.api_version().as_str());
        if !verbatim {
            return Some(self.line(ty, &ev.obj));
        }
        let obj = ev
            .json
            .get_or_init(|| super::kinds::read_view(&self.def, &ev.obj).to_string());
        Some(Bytes::from(format!("{{\"type\":\"{ty}\",\"object\":{obj}}}\n")))
    }
}

fn error_line(code: u16, reason: &str, message: &str) -> Bytes {
    let mut s =
        json!({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
        "message":message,"reason":reason,"code":code}})
        .to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Starts a watch and returns the streaming HTTP response.
pub fn watch(st: Arc<State>, w: WatchReq) -> Response {
    let from = match (w.rv.as_deref(), w.send_initial) {
        (None | Some("0"), _) | (_, true) => None,
        (Some(n), false) => n.parse::<u64>().ok(),
    };
    let bad_rv =
        w.rv.as_deref()
            .is_some_and(|r| r != "0" && r.parse::<u64>().is_err());
    let too_large = from.is_some_and(|n| n > st.store.rv());
    let start = st.store.watch_from(&w.def.storage, from, w.ns.as_deref());
    let mut drop_rx = st.controls.drop_signal();
    let bookmark_every = st.config.bookmark_interval.max(Duration::from_millis(10));
    let stream = async_stream::stream! {
        if bad_rv {
            yield Ok::<Bytes, Infallible>(error_line(400, "BadRequest", &format!("invalid resource version: {}", w.rv.as_deref().unwrap_or_default())));
            return;
        }
        if too_large {
            tokio::time::sleep(Duration::from_secs(3)).await;
            if from.is_some_and(|n| n > st.store.rv()) {
                yield Ok(error_line(504, "Timeout", "Timeout: Too large resource version"));
                return;
            }
        }
        let (mut last, initial, backlog, mut rx) = match start {
            Ok(s) => s,
            Err(old) => {
                let msg = format!("too old resource version: {} ({})", w.rv.as_deref().unwrap_or_default(), old.oldest);
                yield Ok(error_line(410, "Expired", &msg));
                return;
            }
        };
        for obj in &initial {
            if w.matches(obj) {
                yield Ok(w.line("ADDED", obj));
            }
        }
        if w.send_initial && w.bookmarks {
            yield Ok(w.bookmark(last, true));
        }
        for ev in &backlog {
            if let Some(line) = w.translate(ev) {
                yield Ok(line);
            }
            last = last.max(ev.rv);
        }
        let deadline = tokio::time::sleep(Duration::from_secs(w.timeout.unwrap_or(1800)));
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + bookmark_every, bookmark_every);
        loop {
            tokio::select! {
                biased;
                _ = &mut deadline => {
                    if w.bookmarks { yield Ok(w.bookmark(last, false)); }
                    break;
                }
                _ = drop_rx.changed() => break,
                _ = ticker.tick(), if w.bookmarks => yield Ok(w.bookmark(last, false)),
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= last { continue; }
                        last = ev.rv;
                        if let Some(line) = w.translate(&ev) { yield Ok(line); }
                    }
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
                },
            }
        }
    };
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
