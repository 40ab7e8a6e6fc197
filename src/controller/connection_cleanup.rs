//! Deleting a `GitLabConnection` withdraws every token minted through it: the connection keeps a
//! finalizer (`gitlabtokens.io/revoke`) while it exists; on deletion it is marked as deleting, the
//! token controller revokes each token whose ledger names it (reason `ConnectionDeleted`), and the
//! finalizer is released once no ledger names the connection any more. Only then are the
//! connection's credentials forgotten.
//!
//! An admin who must let go of a connection whose GitLab can no longer be reached removes the
//! finalizer by hand (docs/admin-guide.md): a process that still holds the connection's client
//! revokes through it; otherwise each
//! `GitLabToken` deleted when no running process knows the connection hands them to the orphan
//! sweep (`HandedToSweep`, [`super::handover`]) before releasing its own finalizer.

use std::{sync::Arc, time::Duration};

use kube::{
    Api, ResourceExt,
    api::ListParams,
    runtime::{
        controller::Action,
        finalizer::{Error as FinalizerError, Event, finalizer},
    },
};

use super::{connection, context::Context, token::ledger};
use crate::crd::{FINALIZER, GitLabConnection, GitLabToken};

/// How often a deleting connection re-counts the tokens still recorded on it.
const RECOUNT: Duration = Duration::from_secs(5);

/// Why a connection reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Tokens minted through the connection are not revoked yet.
    #[error("{0} GitLabToken(s) still hold tokens minted through this connection")]
    TokensRemain(usize),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// Reconciles one connection under its finalizer.
pub async fn reconcile(conn: Arc<GitLabConnection>, ctx: Arc<Context>) -> Result<Action, ConnectionError> {
    let api: Api<GitLabConnection> = Api::all(ctx.client.clone());
    let name = conn.name_any();
    ctx.connections
        .set_deleting(&name, conn.metadata.deletion_timestamp.is_some());
    finalizer(&api, FINALIZER, conn, |event| async {
        match event {
            Event::Apply(c) => connection::reconcile(c, ctx.clone())
                .await
                .map_err(ConnectionError::from),
            Event::Cleanup(c) => cleanup(c, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        FinalizerError::ApplyFailed(inner) | FinalizerError::CleanupFailed(inner) => inner,
        other => ConnectionError::Finalizer(other.to_string()),
    })
}

/// Backoff after a failed connection reconcile.
pub fn error_policy(_conn: Arc<GitLabConnection>, error: &ConnectionError, _ctx: Arc<Context>) -> Action {
    match error {
        ConnectionError::TokensRemain(_) => Action::requeue(RECOUNT),
        _ => Action::requeue(Duration::from_secs(15)),
    }
}

async fn cleanup(conn: Arc<GitLabConnection>, ctx: &Context) -> Result<Action, ConnectionError> {
    let name = conn.name_any();
    let tokens = Api::<GitLabToken>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    let remaining = tokens
        .items
        .iter()
        .filter(|t| {
            t.status
                .as_ref()
                .is_some_and(|s| ledger::locations(s).iter().any(|l| l.connection == name))
        })
        .count();
    if remaining > 0 {
        tracing::info!(connection = %name, remaining, "connection deleted; waiting for its tokens to be revoked");
        return Err(ConnectionError::TokensRemain(remaining));
    }
    tracing::info!(connection = %name, "connection deleted; no token minted through it remains");
    ctx.connections.set_deleting(&name, false);
    ctx.connections.remove(&name);
    Ok(Action::await_change())
}
