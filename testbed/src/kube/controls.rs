//! Test controls: injected latency and errors per verb/resource, dropping watches, compacting
//! history, and request counters per verb/resource/identity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

use super::store::Store;

/// One injected-error rule.
#[derive(Debug, Clone)]
struct ErrorRule {
    verb: String,
    resource: String,
    rate: f64,
    code: u16,
}

/// Key of a request counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// RBAC verb (`get`, `list`, `watch`, …) or the HTTP method for non-resource paths.
    pub verb: String,
    /// Plural resource (with `/sub`), or the path for non-resource requests.
    pub resource: String,
    /// Authenticated user name.
    pub user: String,
}

/// A validating admission webhook that denies every create, update and patch of a resource
/// (dry runs included, as for a webhook with `sideEffects: None`), answering like the real API
/// server: `admission webhook "<webhook>" denied the request: <message>` with the webhook's code.
#[derive(Debug, Clone)]
pub struct AdmissionDenial {
    /// The webhook's name as the API server reports it.
    pub webhook: String,
    /// Plural resource it matches (`secrets`); subresources are not matched.
    pub resource: String,
    /// Namespace it matches (`*` = any).
    pub namespace: String,
    /// HTTP code the webhook returns (400 when it sets none; 403 and 422 are common).
    pub code: u16,
    /// The webhook's message.
    pub message: String,
}

impl AdmissionDenial {
    /// The API error the API server answers with.
    pub(crate) fn to_error(&self) -> super::status::ApiError {
        let reason = match self.code {
            403 => "Forbidden",
            422 => "Invalid",
            _ => "BadRequest",
        };
        super::status::ApiError::new(
            self.code,
            reason,
            format!(
                "admission webhook {:?} denied the request: {}",
                self.webhook, self.message
            ),
        )
    }
}

#[derive(Default)]
struct Inner {
    latency: Duration,
    latency_rules: Vec<(String, String, Duration)>,
    errors: Vec<ErrorRule>,
    denials: Vec<AdmissionDenial>,
    counters: HashMap<CounterKey, u64>,
}

/// Controls for tests; cheap to clone.
#[derive(Clone)]
pub struct Controls {
    inner: Arc<Mutex<Inner>>,
    drop_tx: Arc<watch::Sender<u64>>,
    store: Arc<Store>,
}

impl Controls {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        let (drop_tx, _) = watch::channel(0);
        Controls {
            inner: Arc::default(),
            drop_tx: Arc::new(drop_tx),
            store,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds this latency before every request is answered.
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// Adds this latency to requests matching `verb` and `resource` (`*` = any), on top of the
    /// global [`Controls::set_latency`] (the larger applies).
    pub fn set_latency_for(&self, verb: &str, resource: &str, d: Duration) {
        let mut inner = self.lock();
        inner
            .latency_rules
            .retain(|(v, r, _)| !(v == verb && r == resource));
        inner.latency_rules.push((verb.into(), resource.into(), d));
    }

    /// Fails a fraction (`rate` in 0..=1) of requests matching `verb` and `resource` (`*` = any)
    /// with HTTP `code` (e.g. 500, 503, 429).
    pub fn inject_errors(&self, verb: &str, resource: &str, rate: f64, code: u16) {
        let rate = if rate.is_finite() {
            rate.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.lock().errors.push(ErrorRule {
            verb: verb.into(),
            resource: resource.into(),
            rate,
            code,
        });
    }

    /// Removes every injected-error rule.
    pub fn clear_errors(&self) {
        self.lock().errors.clear();
    }

    /// Installs an admission webhook that denies writes (see [`AdmissionDenial`]).
    pub fn deny_admission(&self, denial: AdmissionDenial) {
        self.lock().denials.push(denial);
    }

    /// Removes every admission denial.
    pub fn clear_admission_denials(&self) {
        self.lock().denials.clear();
    }

    /// The denial that applies to a request that passed authorization, if any.
    pub(crate) fn admission(&self, verb: &str, resource: &str, namespace: &str) -> Option<AdmissionDenial> {
        if !matches!(verb, "create" | "update" | "patch") {
            return None;
        }
        self.lock()
            .denials
            .iter()
            .find(|d| d.resource == resource && (d.namespace == "*" || d.namespace == namespace))
            .cloned()
    }

    /// Ends every open watch stream now (clients see a clean end of stream).
    pub fn drop_watches(&self) {
        self.drop_tx.send_modify(|n| *n += 1);
    }

    /// Compacts the event history: watches and continue tokens from older revisions get 410.
    pub fn compact(&self) {
        self.store.compact();
    }

    /// Number of requests seen for (verb, resource, user); `*` matches any value.
    pub fn count(&self, verb: &str, resource: &str, user: &str) -> u64 {
        let m = |pat: &str, v: &str| pat == "*" || pat == v;
        self.lock()
            .counters
            .iter()
            .filter(|(k, _)| m(verb, &k.verb) && m(resource, &k.resource) && m(user, &k.user))
            .map(|(_, n)| n)
            .sum()
    }

    /// A copy of all counters.
    pub fn counters(&self) -> HashMap<CounterKey, u64> {
        self.lock().counters.clone()
    }

    pub(crate) fn drop_signal(&self) -> watch::Receiver<u64> {
        self.drop_tx.subscribe()
    }

    /// Records a request and returns (latency, injected error code).
    pub(crate) fn on_request(&self, verb: &str, resource: &str, user: &str) -> (Duration, Option<u16>) {
        let mut inner = self.lock();
        let key = CounterKey {
            verb: verb.into(),
            resource: resource.into(),
            user: user.into(),
        };
        *inner.counters.entry(key).or_default() += 1;
        let m = |pat: &str, v: &str| pat == "*" || pat == v;
        let base = resource.split('/').next().unwrap_or(resource);
        let code = inner
            .errors
            .iter()
            .find(|r| {
                m(&r.verb, verb)
                    && (m(&r.resource, resource) || m(&r.resource, base))
                    && rand::rng().random_bool(r.rate.clamp(0.0, 1.0))
            })
            .map(|r| r.code);
        let latency = inner
            .latency_rules
            .iter()
            .filter(|(v, r, _)| m(v, verb) && (m(r, resource) || m(r, base)))
            .map(|(_, _, d)| *d)
            .fold(inner.latency, Duration::max);
        (latency, code)
    }
}
