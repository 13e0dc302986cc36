//! A version of the edge as xDS serves it: the resources read from the
//! directories, rendered, and converted to Envoy's protobuf. Building one is
//! the whole check: a change that does not read, render or convert never
//! becomes a snapshot, so it never reaches an Envoy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use envoy_types::pb::google::protobuf::Any;
use gatehouse_config::{
    Instance, RenderOptions, Rendered, Resources, render, resource_files as files,
};
use serde_json::Value;

use crate::proto::Protos;

/// xDS type URL of listeners.
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// xDS type URL of clusters.
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// xDS type URL of a cluster's endpoints (EDS).
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// xDS type URL of routes (RDS).
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// xDS type URL of secrets (SDS): a listener's certificates and keys.
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Every type served, in the order a change is sent: a resource never
/// names one Envoy does not have yet (clusters before the endpoints they
/// take and the routes that send to them; secrets before the listeners
/// that serve them; listeners before their routes).
pub const TYPES: [&str; 5] = [CLUSTER, ENDPOINT, SECRET, LISTENER, ROUTE];

/// Whether Envoy asks for every resource of `type_url` (clusters,
/// listeners) rather than for those others name (endpoints, routes).
#[must_use]
pub fn is_wildcard(type_url: &str) -> bool {
    type_url == CLUSTER || type_url == LISTENER
}

/// One version of every resource, by type URL, each `(name, resource)`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// A digest of the resources: the same edge has the same version on
    /// every server and after a restart.
    pub version: String,
    /// Resources by type URL.
    pub resources: BTreeMap<&'static str, Vec<Item>>,
    /// The services' configurations rendered from the same resources
    /// (`authz.yaml`, gatehouse-ratelimit's files; no bootstrap).
    pub services: Rendered,
    /// The certificate and key files read for secrets: a change to one is
    /// a change of the edge.
    pub files: Vec<PathBuf>,
}

/// Where the resources come from: files and directories, the `${NAME}`
/// values filled in, and the Ambassador namespace.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// Resource files and directories.
    pub paths: Vec<PathBuf>,
    /// `--set NAME=VALUE`.
    pub vars: Vec<(String, String)>,
    /// The instances' namespace.
    pub namespace: String,
    /// Listeners' certificates and keys as secrets (SDS), read from their
    /// files by the server, rather than as files on the Envoys' side.
    pub sds: bool,
}

/// One resource: its name, its own version (for the incremental variant)
/// and the resource.
#[derive(Debug, Clone)]
pub struct Item {
    /// The resource's name.
    pub name: String,
    /// A digest of this resource alone.
    pub version: String,
    /// The resource.
    pub resource: Any,
}

/// Reads, renders and converts the resources of `paths` for the Ambassador
/// instance `instance` (an Envoy's node cluster): the resources whose
/// `spec.ambassador_id` names it, or that name none when it is `default`.
///
/// # Errors
/// The first thing that fails, naming the file, document and field (as
/// `gatehouse render` does) or the resource and path that Envoy's protobuf
/// refuses.
pub fn build(
    source: &Source,
    instance: &str,
    options: &RenderOptions,
    protos: &Protos,
) -> Result<Snapshot, String> {
    let instance = Instance {
        ambassador_id: instance.to_owned(),
        namespace: source.namespace.clone(),
    };
    let resources = gatehouse_config::load_files(&source.paths, &instance, &source.vars)?;
    from_resources(&resources, options, protos, source.sds)
}

/// The snapshot of loaded resources.
///
/// # Errors
/// As [`build`].
pub fn from_resources(
    resources: &Resources,
    options: &RenderOptions,
    protos: &Protos,
    sds: bool,
) -> Result<Snapshot, String> {
    let rendered = render(resources, options).map_err(|e| e.to_string())?;
    let bootstrap: Value = serde_yaml_ng::from_str(&rendered.envoy).map_err(|e| e.to_string())?;
    let mut split = crate::split::split(&bootstrap);
    let mut snapshot = Snapshot::default();
    let mut secrets = Vec::new();
    if sds {
        for files in crate::split::secrets(&mut split) {
            let read = |path: &str| {
                std::fs::read_to_string(path)
                    .map_err(|e| format!("secret {}: reading {path}: {e}", files.name))
            };
            secrets.push(serde_json::json!({
                "name": files.name,
                "tls_certificate": {
                    "certificate_chain": { "inline_string": read(&files.cert)? },
                    "private_key": { "inline_string": read(&files.key)? },
                },
            }));
            snapshot
                .files
                .extend([PathBuf::from(&files.cert), PathBuf::from(&files.key)]);
        }
    }
    let mut digest = Fnv::default();
    for (type_url, key, message, list_of) in [
        (
            CLUSTER,
            "clusters",
            "envoy.config.cluster.v3.Cluster",
            &split.clusters,
        ),
        (
            ENDPOINT,
            "endpoints",
            "envoy.config.endpoint.v3.ClusterLoadAssignment",
            &split.endpoints,
        ),
        (
            SECRET,
            "secrets",
            "envoy.extensions.transport_sockets.tls.v3.Secret",
            &secrets,
        ),
        (
            LISTENER,
            "listeners",
            "envoy.config.listener.v3.Listener",
            &split.listeners,
        ),
        (
            ROUTE,
            "routes",
            "envoy.config.route.v3.RouteConfiguration",
            &split.routes,
        ),
    ] {
        let mut list = Vec::new();
        for resource in list_of {
            let name = resource["name"]
                .as_str()
                .or_else(|| resource["cluster_name"].as_str())
                .unwrap_or_default()
                .to_owned();
            let value = protos
                .encode(message, resource)
                .map_err(|e| format!("{key} {name}: {e}"))?;
            // The JSON, not the encoding: protobuf maps encode in any order.
            let json = resource.to_string();
            digest.write(json.as_bytes());
            let mut own = Fnv::default();
            own.write(json.as_bytes());
            list.push(Item {
                name,
                version: format!("{:016x}", own.0),
                resource: Any {
                    type_url: type_url.to_owned(),
                    value,
                },
            });
        }
        snapshot.resources.insert(type_url, list);
    }
    // The services' configurations are part of the version: a change to a
    // rate limit alone is a new version too.
    for text in rendered.authz.iter().chain(rendered.ratelimit.values()) {
        digest.write(text.as_bytes());
    }
    snapshot.version = format!("{:016x}", digest.0);
    snapshot.services = Rendered {
        envoy: String::new(),
        ..rendered
    };
    Ok(snapshot)
}

/// FNV-1a, 64 bits: a stable digest for versions (not a security boundary).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// When any of `paths`' files last changed, and how many there are: a
/// change of either means the resources may have changed.
#[must_use]
pub fn stamp(paths: &[PathBuf]) -> Vec<(PathBuf, Option<std::time::SystemTime>, u64)> {
    files(paths)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(Path::new(&p)).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map_or(0, |m| m.len());
            (p, modified, len)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGE: &str = "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: app}
spec: {prefix: /app/, service: '127.0.0.1:9000'}
";

    #[test]
    fn the_same_edge_has_the_same_version_and_a_change_another() {
        let protos = Protos::load().expect("descriptors");
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("edge.yaml"), EDGE).expect("write");
        let paths = Source {
            paths: vec![dir.path().to_path_buf()],
            ..Source::default()
        };
        let options = RenderOptions::default();
        let one = build(&paths, "default", &options, &protos).expect("builds");
        assert_eq!(one.resources[LISTENER].len(), 1);
        assert_eq!(
            one.version,
            build(&paths, "default", &options, &protos)
                .expect("builds")
                .version
        );
        std::fs::write(dir.path().join("edge.yaml"), EDGE.replace("/app/", "/web/"))
            .expect("write");
        let two = build(&paths, "default", &options, &protos).expect("builds");
        assert_ne!(one.version, two.version);
        // A change that does not render is no snapshot, and says why.
        std::fs::write(
            dir.path().join("edge.yaml"),
            EDGE.replace("prefix", "prefx"),
        )
        .expect("write");
        let e = build(&paths, "default", &options, &protos).expect_err("refused");
        assert!(e.contains("prefx"), "{e}");
    }
}
