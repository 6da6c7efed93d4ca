//! `?consistency=all` on a command to a CRDT entity: once its change is
//! durable, the host asks every other live host to merge it
//! ([`PATH`], host to host, under the cluster token) and replies once they
//! all have, so a command on any host afterwards sees it (read your writes
//! anywhere). A host that does not confirm in time is named in the reply's
//! [`UNMERGED`] header: the change is durable all the same, and reaches
//! that host with its commit notification, or its next load.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{ApiError, AppState};

/// The route other hosts ask this one to merge a CRDT entity at.
pub const PATH: &str = "/v1/cluster/merges";

/// The reply header naming the hosts that did not confirm a merge.
pub const UNMERGED: &str = "wasmstate-unmerged";

/// How long a host has to confirm a merge.
const MERGE_TIMEOUT: Duration = Duration::from_secs(5);

/// What another host asks this one to merge.
#[derive(Deserialize)]
pub struct MergeRequest {
    service: String,
    entity: String,
}

/// `POST /v1/cluster/merges`, from another host of the cluster only:
/// merges what that host committed to a CRDT entity before this host runs
/// another command on it; 204 once merged.
pub async fn merge(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(request): Json<MergeRequest>,
) -> Result<StatusCode, ApiError> {
    if !super::forward::from_another_host(&state, &headers)? {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "only another host of the cluster may ask",
        ));
    }
    state.invoker.merge_crdt(&request.service, &request.entity).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Asks every other live host to merge `service/entity`, all at once;
/// answers the ids of those that did not confirm.
pub async fn merge_everywhere(state: &AppState, service: &str, entity: &str) -> Vec<String> {
    let peers: Vec<_> = state.cluster.live().into_iter().filter(|host| !host.is_self).map(|host| host.record).collect();
    let Some(forwarder) = &state.forwarder else {
        return peers.into_iter().map(|peer| peer.id).collect();
    };
    let asks = peers.iter().map(|peer| async move {
        let merged = tokio::time::timeout(MERGE_TIMEOUT, forwarder.merge(peer, service, entity)).await;
        match merged {
            Ok(Ok(())) => None,
            Ok(Err(error)) => {
                tracing::warn!(host = %peer.id, %error, "a host did not merge a CRDT change");
                Some(peer.id.clone())
            }
            Err(_) => {
                tracing::warn!(host = %peer.id, "a host did not merge a CRDT change in time");
                Some(peer.id.clone())
            }
        }
    });
    futures_util::future::join_all(asks).await.into_iter().flatten().collect()
}
