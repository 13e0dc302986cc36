//! The aggregated discovery service, state of the world: each Envoy's
//! stream gets every listener and cluster of the current snapshot for the
//! types it asked for, again whenever the snapshot changes (clusters first,
//! so a listener never names a cluster Envoy does not have yet). An ACK is
//! recorded as the version the Envoy runs; a NACK with Envoy's own message,
//! and the Envoy keeps its last good version (Envoy does that itself: it
//! rejects the update).

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::fleet::{DEFAULT_INSTANCE, Fleet};
use crate::snapshot::{CLUSTER, LISTENER, Snapshot};

/// What one Envoy last said, for the status page.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeState {
    /// The node's cluster (`--service-cluster`).
    pub cluster: String,
    /// The version it acknowledged, per type URL.
    pub acked: BTreeMap<String, String>,
    /// Its last refusal: `(type URL, version, Envoy's message)`.
    pub nacked: Option<(String, String, String)>,
    /// Whether its stream is open.
    pub connected: bool,
}

/// The Envoys seen, by node id.
pub type Nodes = Arc<Mutex<BTreeMap<String, NodeState>>>;

/// The tonic service.
#[derive(Debug, Clone)]
pub struct Ads {
    fleet: Arc<Fleet>,
    nodes: Nodes,
}

impl Ads {
    /// Serves `fleet`'s versions, recording Envoys in `nodes`.
    pub fn new(fleet: Arc<Fleet>, nodes: Nodes) -> Self {
        Self { fleet, nodes }
    }
}

/// The responses of one stream.
#[derive(Debug)]
pub struct Responses(mpsc::Receiver<Result<DiscoveryResponse, Status>>);

impl Stream for Responses {
    type Item = Result<DiscoveryResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// The delta variant's responses (not served yet).
#[derive(Debug)]
pub struct DeltaResponses;

impl Stream for DeltaResponses {
    type Item = Result<DeltaDiscoveryResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(None)
    }
}

/// What a stream has sent of one type.
#[derive(Debug, Default)]
struct Sent {
    nonce: u64,
    version: String,
}

fn response(snapshot: &Snapshot, type_url: &str, nonce: u64) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: snapshot.version.clone(),
        resources: snapshot
            .resources
            .get(type_url)
            .map(|list| list.iter().map(|(_, any)| any.clone()).collect())
            .unwrap_or_default(),
        type_url: type_url.to_owned(),
        nonce: nonce.to_string(),
        ..DiscoveryResponse::default()
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Responses;
    type DeltaAggregatedResourcesStream = DeltaResponses;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Responses>, Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let fleet = self.fleet.clone();
        let nodes = self.nodes.clone();
        tokio::spawn(async move {
            let mut node_id = String::new();
            // The instance's versions, once the first request names the node.
            let mut snapshots: Option<watch::Receiver<Arc<Snapshot>>> = None;
            let mut sent: HashMap<String, Sent> = HashMap::new();
            let mut next_nonce = 0_u64;
            loop {
                tokio::select! {
                    message = requests.message() => {
                        let Ok(Some(request)) = message else { break };
                        if let Some(node) = &request.node {
                            node_id.clone_from(&node.id);
                            let mut nodes = nodes.lock().unwrap_or_else(|e| e.into_inner());
                            let state = nodes.entry(node.id.clone()).or_default();
                            state.cluster.clone_from(&node.cluster);
                            state.connected = true;
                        }
                        if snapshots.is_none() {
                            let instance = request
                                .node
                                .as_ref()
                                .map(|n| n.cluster.as_str())
                                .filter(|c| !c.is_empty())
                                .unwrap_or(DEFAULT_INSTANCE);
                            match fleet.subscribe(instance) {
                                Ok(rx) => snapshots = Some(rx),
                                Err(e) => {
                                    tracing::error!(node = %node_id, instance, error = %e, "no version for the Envoy's instance");
                                    let _ = tx.send(Err(Status::failed_precondition(format!("instance {instance}: {e}")))).await;
                                    break;
                                }
                            }
                        }
                        let Some(current) = snapshots.as_ref() else { break };
                        let type_url = request.type_url.clone();
                        if type_url != LISTENER && type_url != CLUSTER {
                            // Routes, endpoints and secrets travel inline for now.
                            continue;
                        }
                        let answered = sent.get(&type_url);
                        let about_ours = answered.is_some_and(|s| s.nonce.to_string() == request.response_nonce);
                        if about_ours {
                            let version = answered.map(|s| s.version.clone()).unwrap_or_default();
                            let mut nodes = nodes.lock().unwrap_or_else(|e| e.into_inner());
                            let state = nodes.entry(node_id.clone()).or_default();
                            match &request.error_detail {
                                Some(error) => {
                                    tracing::warn!(node = %node_id, type_url, version, message = %error.message, "an Envoy refused a version (NACK); it keeps its last good one");
                                    state.nacked = Some((type_url.clone(), version, error.message.clone()));
                                }
                                None => {
                                    state.acked.insert(type_url.clone(), version);
                                }
                            }
                            continue;
                        }
                        // A new subscription (or a stale nonce): the current version.
                        next_nonce += 1;
                        let snapshot = current.borrow().clone();
                        sent.insert(type_url.clone(), Sent { nonce: next_nonce, version: snapshot.version.clone() });
                        if tx.send(Ok(response(&snapshot, &type_url, next_nonce))).await.is_err() {
                            break;
                        }
                    }
                    changed = async {
                        match snapshots.as_mut() {
                            Some(rx) => rx.changed().await.map(|()| rx.borrow_and_update().clone()),
                            None => std::future::pending().await,
                        }
                    } => {
                        let Ok(snapshot) = changed else { break };
                        // Clusters before listeners.
                        for type_url in [CLUSTER, LISTENER] {
                            if !sent.contains_key(type_url) {
                                continue;
                            }
                            next_nonce += 1;
                            sent.insert(type_url.to_owned(), Sent { nonce: next_nonce, version: snapshot.version.clone() });
                            if tx.send(Ok(response(&snapshot, type_url, next_nonce))).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            if !node_id.is_empty() {
                let mut nodes = nodes.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(state) = nodes.get_mut(&node_id) {
                    state.connected = false;
                }
            }
        });
        Ok(Response::new(Responses(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaResponses>, Status> {
        Err(Status::unimplemented(
            "incremental (delta) xDS is not served yet: use api_type GRPC (state of the world)",
        ))
    }
}
