//! The aggregated discovery service, in both variants. State of the world:
//! each Envoy's stream gets, for each type it asked for, every cluster and
//! listener of the current snapshot, and the endpoints and routes it names;
//! again whenever the snapshot changes, in the order of [`TYPES`] (a
//! resource never names one Envoy does not have yet). Incremental (delta):
//! only the resources whose own version changed, and the names of those
//! gone. An ACK is recorded as the version the Envoy runs; a NACK with
//! Envoy's own message, and the Envoy keeps its last good version (Envoy
//! does that itself: it rejects the update).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use tokio::sync::{mpsc, watch};
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::fleet::Fleet;
use crate::snapshot::{Snapshot, TYPES, is_wildcard};

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

/// The incremental variant's responses.
#[derive(Debug)]
pub struct DeltaResponses(mpsc::Receiver<Result<DeltaDiscoveryResponse, Status>>);

impl Stream for DeltaResponses {
    type Item = Result<DeltaDiscoveryResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// What an incremental stream's Envoy holds of one type: name to version.
type Holds = BTreeMap<String, String>;

/// The resources of `type_url` in `snapshot` an Envoy asked for: every one
/// of a wildcard type, else those `names` names.
fn wanted<'a>(
    snapshot: &'a Snapshot,
    type_url: &str,
    names: &'a BTreeSet<String>,
) -> impl Iterator<Item = &'a crate::snapshot::Item> {
    let wildcard = is_wildcard(type_url);
    snapshot
        .resources
        .get(type_url)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter(move |item| wildcard || names.contains(&item.name))
}

/// The names of `type_url` a change is sent for: those the Envoy asked
/// for, and every one of the new snapshot. The endpoints of a cluster the
/// change adds then arrive right after the cluster, before the listeners
/// and routes that send to it (the order the xDS protocol recommends), so
/// no request meets a cluster still waiting for its endpoints; Envoy took
/// the name when it took the cluster.
fn pushed(snapshot: &Snapshot, type_url: &str, asked: &BTreeSet<String>) -> BTreeSet<String> {
    let mut names = asked.clone();
    names.extend(
        snapshot
            .resources
            .get(type_url)
            .into_iter()
            .flatten()
            .map(|item| item.name.clone()),
    );
    names
}

/// The response taking an Envoy that holds `held` to `snapshot`'s
/// resources of `type_url` that it asked for (`names`, unless the type is a
/// wildcard one): what changed or is new, and what is gone; or `None` when
/// it holds them all already. `held` becomes what it will hold.
fn delta(
    snapshot: &Snapshot,
    type_url: &str,
    names: &BTreeSet<String>,
    held: &mut Holds,
    nonce: u64,
) -> Option<DeltaDiscoveryResponse> {
    let items: Vec<&crate::snapshot::Item> = wanted(snapshot, type_url, names).collect();
    let resources: Vec<Resource> = items
        .iter()
        .filter(|item| held.get(&item.name) != Some(&item.version))
        .map(|item| Resource {
            name: item.name.clone(),
            version: item.version.clone(),
            resource: Some(item.resource.clone()),
            ..Resource::default()
        })
        .collect();
    // Only clusters and listeners are ever removed: an Envoy that refused
    // a new listener or cluster keeps the old one, and with it the routes
    // or endpoints it names (Envoy ignores an RDS removal anyway).
    let removed: Vec<String> = if is_wildcard(type_url) {
        held.keys()
            .filter(|name| !items.iter().any(|item| &item.name == *name))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    if resources.is_empty() && removed.is_empty() {
        return None;
    }
    if is_wildcard(type_url) {
        held.clear();
    }
    held.extend(
        items
            .iter()
            .map(|item| (item.name.clone(), item.version.clone())),
    );
    Some(DeltaDiscoveryResponse {
        system_version_info: snapshot.version.clone(),
        resources,
        type_url: type_url.to_owned(),
        removed_resources: removed,
        nonce: nonce.to_string(),
        ..DeltaDiscoveryResponse::default()
    })
}

/// What a stream has sent of one type, and for which names.
#[derive(Debug, Default, Clone)]
struct Sent {
    nonce: u64,
    version: String,
    names: BTreeSet<String>,
}

/// One Envoy's stream, as both variants keep it: who it is, its
/// instance's versions, and what it said.
struct Peer {
    fleet: Arc<Fleet>,
    nodes: Nodes,
    node_id: String,
    /// The instance's versions, once the first request names the node.
    snapshots: Option<watch::Receiver<Arc<Snapshot>>>,
}

impl Peer {
    fn new(fleet: Arc<Fleet>, nodes: Nodes) -> Self {
        Self {
            fleet,
            nodes,
            node_id: String::new(),
            snapshots: None,
        }
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, NodeState>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes the node a request names and, at the first, subscribes to its
    /// instance's versions (the node cluster; `default` without one).
    fn hello(&mut self, node: Option<&Node>) -> Result<&watch::Receiver<Arc<Snapshot>>, Status> {
        if let Some(node) = node {
            self.node_id.clone_from(&node.id);
            let mut nodes = self.nodes();
            let state = nodes.entry(node.id.clone()).or_default();
            state.cluster.clone_from(&node.cluster);
            state.connected = true;
        }
        if self.snapshots.is_none() {
            let instance = node
                .map(|n| n.cluster.as_str())
                .filter(|c| !c.is_empty())
                .unwrap_or(self.fleet.default_instance())
                .to_owned();
            let instance = instance.as_str();
            let rx = self.fleet.subscribe(instance).map_err(|e| {
                tracing::error!(node = %self.node_id, instance, error = %e, "no version for the Envoy's instance");
                Status::failed_precondition(format!("instance {instance}: {e}"))
            })?;
            self.snapshots = Some(rx);
        }
        self.snapshots
            .as_ref()
            .ok_or_else(|| Status::internal("no versions"))
    }

    /// Records the Envoy's answer to `version` of `type_url`: an ACK, or a
    /// NACK with Envoy's message (it keeps its last good version).
    fn answer(
        &self,
        type_url: &str,
        version: String,
        error: Option<&envoy_types::pb::google::rpc::Status>,
    ) {
        let mut nodes = self.nodes();
        let state = nodes.entry(self.node_id.clone()).or_default();
        match error {
            Some(error) => {
                tracing::warn!(node = %self.node_id, type_url, version, message = %error.message, "an Envoy refused a version (NACK); it keeps its last good one");
                state.nacked = Some((type_url.to_owned(), version, error.message.clone()));
            }
            None => {
                state.acked.insert(type_url.to_owned(), version);
            }
        }
    }

    /// The next version of the instance, once there is one.
    async fn changed(&mut self) -> Option<Arc<Snapshot>> {
        match self.snapshots.as_mut() {
            Some(rx) => rx
                .changed()
                .await
                .ok()
                .map(|()| rx.borrow_and_update().clone()),
            None => std::future::pending().await,
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if !self.node_id.is_empty() {
            let id = self.node_id.clone();
            if let Some(state) = self.nodes().get_mut(&id) {
                state.connected = false;
            }
        }
    }
}

fn response(
    snapshot: &Snapshot,
    type_url: &str,
    names: &BTreeSet<String>,
    nonce: u64,
) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: snapshot.version.clone(),
        resources: wanted(snapshot, type_url, names)
            .map(|item| item.resource.clone())
            .collect(),
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
            let mut peer = Peer::new(fleet, nodes);
            let mut sent: HashMap<String, Sent> = HashMap::new();
            let mut next_nonce = 0_u64;
            loop {
                tokio::select! {
                    message = requests.message() => {
                        let Ok(Some(request)) = message else { break };
                        let current = match peer.hello(request.node.as_ref()) {
                            Ok(current) => current.clone(),
                            Err(status) => {
                                let _ = tx.send(Err(status)).await;
                                break;
                            }
                        };
                        let type_url = request.type_url.clone();
                        if !TYPES.contains(&type_url.as_str()) {
                            // A type this server does not serve: nothing
                            // it sends names one.
                            continue;
                        }
                        let names: BTreeSet<String> = request.resource_names.iter().cloned().collect();
                        let answered = sent.get(&type_url).cloned();
                        if let Some(answered) = answered.filter(|s| s.nonce.to_string() == request.response_nonce) {
                            peer.answer(&type_url, answered.version, request.error_detail.as_ref());
                            // An answer that also asks for other endpoints or
                            // routes (a new cluster or listener names them)
                            // is answered with them.
                            if is_wildcard(&type_url) || answered.names == names {
                                continue;
                            }
                        }
                        // A new subscription (or a stale nonce): the current version.
                        next_nonce += 1;
                        let snapshot = current.borrow().clone();
                        let reply = response(&snapshot, &type_url, &names, next_nonce);
                        sent.insert(type_url.clone(), Sent { nonce: next_nonce, version: snapshot.version.clone(), names });
                        if tx.send(Ok(reply)).await.is_err() {
                            break;
                        }
                    }
                    changed = peer.changed() => {
                        let Some(snapshot) = changed else { break };
                        for type_url in TYPES {
                            let Some(asked) = sent.get(type_url).map(|s| s.names.clone()) else {
                                continue;
                            };
                            let names = pushed(&snapshot, type_url, &asked);
                            next_nonce += 1;
                            let reply = response(&snapshot, type_url, &names, next_nonce);
                            sent.insert(type_url.to_owned(), Sent { nonce: next_nonce, version: snapshot.version.clone(), names });
                            if tx.send(Ok(reply)).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        Ok(Response::new(Responses(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaResponses>, Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let fleet = self.fleet.clone();
        let nodes = self.nodes.clone();
        tokio::spawn(async move {
            let mut peer = Peer::new(fleet, nodes);
            // Per type: what the Envoy holds, the names it asked for (of
            // endpoints and routes), and the last nonce and version sent.
            let mut holds: HashMap<String, Holds> = HashMap::new();
            let mut subscribed: HashMap<String, BTreeSet<String>> = HashMap::new();
            let mut sent: HashMap<String, Sent> = HashMap::new();
            let mut next_nonce = 0_u64;
            loop {
                tokio::select! {
                    message = requests.message() => {
                        let Ok(Some(request)) = message else { break };
                        let current = match peer.hello(request.node.as_ref()) {
                            Ok(current) => current.clone(),
                            Err(status) => {
                                let _ = tx.send(Err(status)).await;
                                break;
                            }
                        };
                        let type_url = request.type_url.clone();
                        if !TYPES.contains(&type_url.as_str()) {
                            continue;
                        }
                        let first = !subscribed.contains_key(&type_url);
                        let names = subscribed.entry(type_url.clone()).or_default();
                        let held = holds.entry(type_url.clone()).or_default();
                        let mut asks_more = false;
                        for name in &request.resource_names_subscribe {
                            if names.insert(name.clone()) {
                                // Sent again even when pushed already: an
                                // Envoy may have dropped what it had not
                                // asked for yet.
                                held.remove(name);
                                asks_more = true;
                            }
                        }
                        for name in &request.resource_names_unsubscribe {
                            names.remove(name);
                            held.remove(name);
                        }
                        if first {
                            // What the Envoy says it holds (a reconnection).
                            held.extend(request.initial_resource_versions.clone());
                        }
                        if !request.response_nonce.is_empty() {
                            // An answer to one of ours.
                            let version = sent.get(&type_url).map(|s| s.version.clone()).unwrap_or_default();
                            if request.error_detail.is_some() {
                                // What it holds is unknown now: the next version sends it all.
                                held.clear();
                            }
                            peer.answer(&type_url, version, request.error_detail.as_ref());
                            if !asks_more {
                                continue;
                            }
                        }
                        // A subscription: what it asked for and does not hold.
                        next_nonce += 1;
                        let snapshot = current.borrow().clone();
                        let response = match delta(&snapshot, &type_url, names, held, next_nonce) {
                            Some(response) => response,
                            // The first answer of a type even when empty:
                            // Envoy waits for it before it starts.
                            None if first => DeltaDiscoveryResponse {
                                system_version_info: snapshot.version.clone(),
                                type_url: type_url.clone(),
                                nonce: next_nonce.to_string(),
                                ..DeltaDiscoveryResponse::default()
                            },
                            None => continue,
                        };
                        sent.insert(type_url.clone(), Sent { nonce: next_nonce, version: snapshot.version.clone(), names: BTreeSet::new() });
                        if tx.send(Ok(response)).await.is_err() {
                            break;
                        }
                    }
                    changed = peer.changed() => {
                        let Some(snapshot) = changed else { break };
                        for type_url in TYPES {
                            let Some(asked) = subscribed.get(type_url) else {
                                continue;
                            };
                            let names = pushed(&snapshot, type_url, asked);
                            let held = holds.entry(type_url.to_owned()).or_default();
                            next_nonce += 1;
                            // Clusters and listeners answer every version,
                            // even with nothing in it: the Envoy's CDS and
                            // LDS version then name the version it runs.
                            let response = delta(&snapshot, type_url, &names, held, next_nonce)
                                .or_else(|| is_wildcard(type_url).then(|| DeltaDiscoveryResponse {
                                    system_version_info: snapshot.version.clone(),
                                    type_url: type_url.to_owned(),
                                    nonce: next_nonce.to_string(),
                                    ..DeltaDiscoveryResponse::default()
                                }));
                            if let Some(response) = response {
                                sent.insert(type_url.to_owned(), Sent { nonce: next_nonce, version: snapshot.version.clone(), names: BTreeSet::new() });
                                if tx.send(Ok(response)).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        });
        Ok(Response::new(DeltaResponses(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Item, LISTENER, ROUTE};
    use envoy_types::pb::google::protobuf::Any;

    fn snapshot(items: &[(&str, &str)]) -> Snapshot {
        let mut s = Snapshot {
            version: "v".into(),
            ..Snapshot::default()
        };
        s.resources.insert(
            LISTENER,
            items
                .iter()
                .map(|(name, version)| Item {
                    name: (*name).into(),
                    version: (*version).into(),
                    resource: Any::default(),
                })
                .collect(),
        );
        s
    }

    #[test]
    fn an_incremental_envoy_gets_what_changed_and_what_is_gone() {
        let all = BTreeSet::new();
        let mut held: Holds = [("a".into(), "1".into()), ("b".into(), "1".into())].into();
        let next = snapshot(&[("a", "1"), ("c", "2")]);
        let response = delta(&next, LISTENER, &all, &mut held, 7).expect("a change");
        let names: Vec<&str> = response.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["c"], "a is unchanged");
        assert_eq!(response.removed_resources, ["b"]);
        assert_eq!(response.nonce, "7");
        // It holds the snapshot now: the same snapshot again sends nothing.
        assert!(delta(&next, LISTENER, &all, &mut held, 8).is_none());
        // A changed version of a resource it holds is sent again.
        let changed = snapshot(&[("a", "3"), ("c", "2")]);
        let response = delta(&changed, LISTENER, &all, &mut held, 9).expect("a change");
        assert_eq!(response.resources.len(), 1);
        assert_eq!(response.resources[0].version, "3");
    }

    #[test]
    fn routes_and_endpoints_go_only_to_an_envoy_that_names_them() {
        let mut s = snapshot(&[]);
        s.resources.insert(
            ROUTE,
            ["r1", "r2"]
                .iter()
                .map(|name| Item {
                    name: (*name).into(),
                    version: "1".into(),
                    resource: Any::default(),
                })
                .collect(),
        );
        let names: BTreeSet<String> = ["r2".to_owned()].into();
        assert_eq!(response(&s, ROUTE, &names, 1).resources.len(), 1);
        assert_eq!(response(&s, ROUTE, &BTreeSet::new(), 2).resources.len(), 0);
        let mut held = Holds::new();
        let d = delta(&s, ROUTE, &names, &mut held, 3).expect("r2");
        assert_eq!(d.resources[0].name, "r2");
        assert_eq!(held.keys().collect::<Vec<_>>(), ["r2"]);
    }
}
