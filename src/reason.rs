//! Machine-readable reasons (PascalCase) for conditions, events and metrics (DESIGN §7, §8).
//!
//! Every refusal or failure the operator can report has exactly one variant here, with a one-line
//! meaning (`///`) and a hint for the user (`what_to_do`). Normal outcomes (`Issued`, `Rotated`, …)
//! are here too so every condition/event reason string comes from one place.

use std::{fmt, str::FromStr};

/// Whether an event with this reason is `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Something went as intended.
    Normal,
    /// A refusal or failure the user should look at.
    Warning,
}

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal, $sev:ident, $hint:literal; )*) => {
        /// A PascalCase reason for a condition, event or metric label.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Reason {
            $( $(#[$doc])* $variant, )*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),*];

            /// The PascalCase string written to conditions, events and metric labels.
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$variant => $text,)* }
            }

            /// Whether events with this reason are `Normal` or `Warning`.
            pub fn severity(self) -> Severity {
                match self { $(Reason::$variant => Severity::$sev,)* }
            }

            /// What the user (or admin) can do about it, for messages and docs.
            pub fn what_to_do(self) -> &'static str {
                match self { $(Reason::$variant => $hint,)* }
            }
        }
    };
}

reasons! {
    // ---- normal outcomes ----
    /// A new token was created and written to the Secret.
    Issued = "Issued", Normal, "Nothing to do.";
    /// The token was replaced by a new one before expiry.
    Rotated = "Rotated", Normal, "Nothing to do.";
    /// A token was revoked in GitLab (rotation finished, or the request went away).
    Revoked = "Revoked", Normal, "Nothing to do.";
    /// Consumers were asked to re-read the Secret.
    Nudged = "Nudged", Normal, "Nothing to do.";
    /// A token is being issued or rotated right now.
    Issuing = "Issuing", Normal, "Wait; the operator is talking to GitLab.";

    // ---- policy ----
    /// A policy selects the namespace and connection, but none allows the whole request.
    PolicyDenied = "PolicyDenied", Warning,
        "Change the request to fit the closest policy (see the message), or ask an admin to widen a GitLabTokenPolicy.";
    /// No usable GitLabTokenPolicy selects this namespace and connection: denied, not pending.
    NoPolicy = "NoPolicy", Warning,
        "Ask an admin to create a GitLabTokenPolicy whose namespaceSelector and connectionRef select this namespace.";
    /// A GitLabTokenPolicy itself is unusable (bad glob, inconsistent bounds).
    PolicyInvalid = "PolicyInvalid", Warning,
        "Fix the GitLabTokenPolicy named in the message; until then it allows nothing.";

    // ---- the request (annotations, source URL, spec) ----
    /// A `gitlabtokens.io/` annotation has a value the operator cannot use.
    InvalidAnnotation = "InvalidAnnotation", Warning,
        "Fix the annotation named in the message; the accepted values are listed there.";
    /// The source URL is malformed, carries credentials, `..`, encoded slashes, a query, or is not a GitLab URL shape.
    InvalidUrl = "InvalidURL", Warning,
        "Use a plain https://<gitlab host>/<group>/<project>.git style URL without credentials (see the URL rules in docs/tenant-guide.md).";
    /// The URL points at a host (or path root) other than the connection's GitLab or registry host.
    ForeignHost = "ForeignHost", Warning,
        "Point the source at the connection's GitLab/registry host, or pick the right connection with gitlabtokens.io/connection.";
    /// The source uses an SSH URL; project access tokens work over HTTPS only.
    SshNotSupported = "SSHNotSupported", Warning,
        "Use the project's https:// clone URL instead of ssh://.";
    /// The kind, API version or type of the annotated object is not one the operator serves.
    UnsupportedKind = "UnsupportedKind", Warning,
        "Annotate a GitRepository, OCIRepository, HelmRepository, ImageRepository or a Provider of type gitlab.";
    /// The source's `spec.provider` makes Flux ignore a static Secret.
    IncompatibleSourceProvider = "IncompatibleSourceProvider", Warning,
        "Remove spec.provider (or set it to generic) so Flux reads the Secret the operator writes.";
    /// The target Secret name is not a valid Kubernetes object name.
    InvalidSecretName = "InvalidSecretName", Warning,
        "Set gitlabtokens.io/secret-name (or spec.secretRef.name) to a DNS subdomain name of at most 253 characters.";
    /// A registry URL needs the connection's registry host, but the connection has none.
    MissingRegistryHost = "MissingRegistryHost", Warning,
        "Ask an admin to set spec.registryHost on the GitLabConnection.";
    /// Two sources name the same Secret but need different tokens.
    ConflictingRequest = "ConflictingRequest", Warning,
        "Give this source its own gitlabtokens.io/secret-name, or make its needs match the source already served.";
    /// A `gitlabtokens.io/` annotation is ignored: an `inject` value other than "true"/"false", or a key the operator does not know.
    IgnoredAnnotation = "IgnoredAnnotation", Warning,
        "Fix or remove the annotation named in the message (it suggests the one you probably meant).";
    /// The API server refused the `GitLabToken` the shim built for the source (e.g. 422).
    GitLabTokenRejected = "GitLabTokenRejected", Warning,
        "Read the API server's message in the event; shorten or correct the annotation or URL it names.";
    /// The target Secret exists and was not created by the operator.
    SecretNotOwned = "SecretNotOwned", Warning,
        "Delete or rename the existing Secret, or point the request at another Secret name.";

    // ---- connection ----
    /// The named GitLabConnection does not exist.
    ConnectionNotFound = "ConnectionNotFound", Warning,
        "Check gitlabtokens.io/connection / spec.connectionRef against `kubectl get gitlabconnections`.";
    /// The GitLabConnection exists but is not Ready (credentials, TLS, reachability).
    ConnectionNotReady = "ConnectionNotReady", Warning,
        "Ask an admin to look at the GitLabConnection's Ready condition.";
    /// Several connections could serve the request and nothing says which.
    AmbiguousConnection = "AmbiguousConnection", Warning,
        "Name the connection with gitlabtokens.io/connection (or spec.connectionRef).";

    // ---- GitLab ----
    /// GitLab does not know the project (or the operator cannot see it).
    ProjectNotFound = "ProjectNotFound", Warning,
        "Check the project path or id, and that the operator's GitLab user is a Maintainer of it.";
    /// The operator's GitLab user may not create tokens on the project at the requested role.
    InsufficientPermissions = "InsufficientPermissions", Warning,
        "Ask a GitLab admin to make the operator's user Maintainer (or Owner) of the project, and to allow project access tokens.";
    /// GitLab refused the request (400) for a reason it stated.
    GitLabRejected = "GitLabRejected", Warning,
        "Read GitLab's message in the condition; it usually names a setting or limit.";
    /// The operator's own GitLab token was refused (401).
    CredentialsInvalid = "CredentialsInvalid", Warning,
        "Ask an admin to renew the token in the GitLabConnection's credentials Secret.";
    /// GitLab answered 429; the operator waits as GitLab asked.
    RateLimited = "RateLimited", Warning,
        "Nothing; the operator retries after GitLab's Retry-After. Consider a lower rateLimit on the connection.";
    /// GitLab was unreachable, timed out or answered 5xx; existing Secrets are untouched.
    GitLabUnavailable = "GitLabUnavailable", Warning,
        "Nothing; the operator retries with backoff. Check GitLab's health if it persists.";
    /// The token was revoked or expired outside the operator; a new one is issued.
    TokenRevokedExternally = "TokenRevokedExternally", Warning,
        "Nothing; the operator issues a replacement. Find out who revoked it if this repeats.";
    /// The Secret was edited or deleted by someone else; the operator rewrites it with a fresh token.
    SecretModified = "SecretModified", Warning,
        "Do not edit operator-managed Secrets; use gitlabtokens.io/ annotations instead.";
    /// Writing the Secret failed; the new token is kept in flight and retried.
    SecretWriteFailed = "SecretWriteFailed", Warning,
        "Check the operator's RBAC on Secrets in this namespace, and quotas or admission webhooks that refuse Secrets.";
    /// The GitLabConnection is being deleted: every token minted through it is revoked.
    ConnectionDeleted = "ConnectionDeleted", Warning,
        "Point the request at another connection (spec.connectionRef or gitlabtokens.io/connection), or recreate it.";
    /// A renewal or revocation is due and GitLab failed; the Secret in place still works.
    RenewalFailing = "RenewalFailing", Warning,
        "Nothing while the current token is valid; the operator retries with backoff. Check GitLab's health if it persists.";
    /// The token's connection is gone, so it could not be revoked on deletion; it was handed to
    /// the orphan sweep, which revokes it through any connection to the same GitLab.
    HandedToSweep = "HandedToSweep", Warning,
        "Create (or keep) a GitLabConnection to that GitLab so the sweep revokes it, or revoke the token in GitLab by hand (its id is in the event).";
    /// The Application names an AppProject that does not exist in Argo CD's namespace.
    ArgoCdProjectNotFound = "ArgoCDProjectNotFound", Warning,
        "Create the AppProject in Argo CD's namespace, or set the Application's spec.project to an existing one.";
    /// The Application's namespace is not in its AppProject's spec.sourceNamespaces.
    ArgoCdNamespaceNotPermitted = "ArgoCDNamespaceNotPermitted", Warning,
        "An Argo CD admin must list the namespace in the AppProject's spec.sourceNamespaces, or move the Application.";
    /// An argocd-repository token outside Argo CD's namespace (Argo CD reads Secrets only there).
    ArgoCdNamespaceRequired = "ArgoCDNamespaceRequired", Warning,
        "Create argocd-repository GitLabTokens in Argo CD's namespace (the operator's --argocd-namespace).";

    // ---- delegation to GitLab (issue 11) ----
    /// A delegating policy allows the request, but its GitLab identity lacks the role on the project in GitLab.
    GitLabAccessDenied = "GitLabAccessDenied", Warning,
        "Ask a GitLab admin to give the identity named in the message the role on the project (membership or a share), or ask for a lower accessLevel.";
    /// The delegating policy's GitLab identity lost all access to the project: token revoked, Secret removed.
    AccessWithdrawn = "AccessWithdrawn", Warning,
        "GitLab no longer grants the identity named in the message access to the project; ask a GitLab admin to restore it.";
    /// The GitLab identity's role on the project was lowered: the token was re-issued at the new role.
    AccessLowered = "AccessLowered", Warning,
        "Nothing, if the lower role is enough; else ask a GitLab admin to restore the identity's role on the project.";

    // ---- policies kept in GitLab (issue 11) ----
    /// A new version of the connection's GitLab-kept policy file is in force.
    PolicyFileApplied = "PolicyFileApplied", Normal, "Nothing to do.";
    /// The GitLab-kept policy file is invalid at its latest commit: the last valid version stays in force.
    PolicyFileInvalid = "PolicyFileInvalid", Warning,
        "Fix the file in GitLab (the message lists every problem, by document); until then the last valid version applies.";
    /// The GitLab-kept policy file (or its ref, or project) is gone: its grants are withdrawn.
    PolicyFileMissing = "PolicyFileMissing", Warning,
        "Restore the file in GitLab, or remove spec.policyFile from the GitLabConnection.";
    /// The GitLab-kept policy file could not be read (GitLab failed): what was in force stays.
    PolicyFileUnreadable = "PolicyFileUnreadable", Warning,
        "Nothing while GitLab recovers; check that the operator's user may read the project's repository (Reporter+).";

    // ---- credential kinds ----
    /// The credential kind, group, scopes and Secret format of the request do not fit together.
    InvalidCredentialRequest = "InvalidCredentialRequest", Warning,
        "Fix the GitLabToken as the message says (docs/reference.md lists the scopes and formats of each kind).";
    /// The group named for a group-level credential does not exist or is invisible to the operator.
    GroupNotFound = "GroupNotFound", Warning,
        "Check spec.group; the operator's GitLab user must see the group (Owner to mint group tokens).";
    /// The project does not sit below the group the credential would live on.
    ProjectOutsideGroup = "ProjectOutsideGroup", Warning,
        "Name a group the project belongs to, or use a project-level credential.";
    /// A deploy key Secret needs the connection's pinned SSH host keys and none are pinned.
    SshHostKeysMissing = "SSHHostKeysMissing", Warning,
        "Ask an admin to pin GitLab's SSH host keys in the GitLabConnection's spec.sshHostKeys (checked against the published fingerprints).";

    // ---- Argo CD credential templates and CRDs (issue 13) ----
    /// An AppProject asks for a repo-creds template, but none of its annotated Applications uses
    /// a repository of the group yet (the group token needs one of its projects for the policy check).
    ArgoCdGroupUnused = "ArgoCDGroupUnused", Warning,
        "Annotate (gitlabtokens.io/inject) an Application of the AppProject whose repoURL lies below the group; the template follows.";
    /// Argo CD's Application or AppProject CRD is missing, being deleted or just back: tokens no
    /// Application is seen to need are kept, not revoked, until it is back and settled.
    ArgoCdApiMissing = "ArgoCDAPIMissing", Warning,
        "Reinstall Argo CD's CRDs (and restore its Applications); if Argo CD is gone for good, delete the GitLabTokens labelled gitlabtokens.io/argocd=true to revoke them.";
    /// GitLab's SSH server presents a host key the connection did not pin (or the SSH endpoint moved).
    SshHostKeyChanged = "SSHHostKeyChanged", Warning,
        "Check the new key against GitLab's published fingerprints; if it is legitimate, pin it in spec.sshHostKeys or remove status.sshHostKeys so the next check pins again.";
    /// The connection check fetched GitLab's SSH host keys and pinned them in status.
    SshHostKeysPinned = "SSHHostKeysPinned", Normal,
        "Compare the fingerprints in status.sshHostKeys with the ones your GitLab instance publishes.";
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a known reason"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn reasons_are_unique_pascal_case_and_round_trip() {
        let mut seen = BTreeSet::new();
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(seen.insert(s), "duplicate {s}");
            assert!(
                s.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
                "{s} not PascalCase"
            );
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s} not PascalCase");
            assert_eq!(s.parse::<Reason>().unwrap(), *r);
            assert!(!r.what_to_do().is_empty());
        }
        assert!("Nope".parse::<Reason>().is_err());
    }

    #[test]
    fn design_names_are_spelled_exactly() {
        let table = [
            (Reason::PolicyDenied, "PolicyDenied", Severity::Warning),
            (Reason::ProjectNotFound, "ProjectNotFound", Severity::Warning),
            (Reason::ForeignHost, "ForeignHost", Severity::Warning),
            (Reason::SshNotSupported, "SSHNotSupported", Severity::Warning),
            (Reason::SecretNotOwned, "SecretNotOwned", Severity::Warning),
            (Reason::InvalidAnnotation, "InvalidAnnotation", Severity::Warning),
            (Reason::InvalidUrl, "InvalidURL", Severity::Warning),
            (Reason::Issued, "Issued", Severity::Normal),
            (Reason::Rotated, "Rotated", Severity::Normal),
            (Reason::Revoked, "Revoked", Severity::Normal),
            (Reason::Nudged, "Nudged", Severity::Normal),
        ];
        for (r, s, sev) in table {
            assert_eq!(r.as_str(), s);
            assert_eq!(r.to_string(), s);
            assert_eq!(r.severity(), sev);
        }
    }
}
