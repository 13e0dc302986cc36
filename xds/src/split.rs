//! The rendered bootstrap's static resources as xDS serves them: each
//! listener's routes as a RouteConfiguration of their own (RDS), and each
//! cluster of IP endpoints with its endpoints as a ClusterLoadAssignment
//! (EDS). A change to routes alone then reaches Envoy without touching the
//! listener (no filter chain drained, kept-alive connections see the new
//! routes), and a change to endpoints alone without rebuilding the cluster
//! (its connection pools stay). Clusters Envoy resolves by DNS keep their
//! endpoints inline: EDS cannot name a host.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The resources of one version, each type in its own list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    /// Clusters; those of IP endpoints say `type: EDS`.
    pub clusters: Vec<Value>,
    /// The endpoints of the EDS clusters, by cluster name.
    pub endpoints: Vec<Value>,
    /// Listeners, each HTTP connection manager naming its routes (`rds`).
    pub listeners: Vec<Value>,
    /// The routes, by name.
    pub routes: Vec<Value>,
}

/// Where Envoy takes a resource a resource names: the same ADS stream.
fn ads() -> Value {
    json!({ "ads": {}, "resource_api_version": "V3" })
}

/// Splits the `static_resources` of a rendered bootstrap.
#[must_use]
pub fn split(bootstrap: &Value) -> Split {
    let mut out = Split::default();
    let resources = &bootstrap["static_resources"];
    for cluster in resources["clusters"].as_array().into_iter().flatten() {
        let mut cluster = cluster.clone();
        // A cluster without a type is STATIC, as in Envoy.
        let is_static = cluster
            .get("type")
            .is_none_or(|t| t.as_str() == Some("STATIC"));
        let assignment = is_static
            .then(|| cluster.as_object_mut()?.remove("load_assignment"))
            .flatten();
        if let Some(assignment) = assignment {
            let name = cluster["name"].clone();
            cluster["type"] = json!("EDS");
            cluster["eds_cluster_config"] = json!({ "eds_config": ads(), "service_name": name });
            let mut assignment = assignment;
            assignment["cluster_name"] = name;
            out.endpoints.push(assignment);
        }
        out.clusters.push(cluster);
    }
    // Route configurations by name. The name holds a digest of the
    // connection manager the routes were rendered with: an Envoy that
    // refuses a new listener keeps the old one with the old routes, never
    // the old filters with the new routes. Chains whose managers are alike
    // but whose routes differ (a TLS listener's Hosts) add a digest of the
    // routes, so a name never stands for other routes than it did.
    let mut routes: BTreeMap<String, Value> = BTreeMap::new();
    for listener in resources["listeners"].as_array().into_iter().flatten() {
        let mut listener = listener.clone();
        let listener_name = listener["name"].as_str().unwrap_or_default().to_owned();
        let mut found: Vec<(String, Value)> = Vec::new();
        for_each_manager(&mut listener, |config| {
            if let Some(route_config) = config
                .as_object_mut()
                .and_then(|c| c.remove("route_config"))
            {
                let base = format!(
                    "{listener_name}/{}/{:08x}",
                    route_config["name"].as_str().unwrap_or("routes"),
                    digest(&config.to_string()) as u32
                );
                found.push((base, route_config));
                // Marks the manager for the second pass.
                config["rds"] = Value::Null;
            }
        });
        let names: Vec<String> = found
            .iter()
            .map(|(base, routes)| {
                let alike = found
                    .iter()
                    .any(|(other, theirs)| other == base && theirs != routes);
                if alike {
                    format!("{base}-{:08x}", digest(&routes.to_string()) as u32)
                } else {
                    base.clone()
                }
            })
            .collect();
        let mut next = names.iter().zip(found);
        for_each_manager(&mut listener, |config| {
            if let Some((name, (_, mut route_config))) = next.next() {
                route_config["name"] = json!(name);
                routes.insert(name.clone(), route_config);
                config["rds"] = json!({ "route_config_name": name, "config_source": ads() });
            }
        });
        out.listeners.push(listener);
    }
    out.routes = routes.into_values().collect();
    out
}

/// Calls `f` with the configuration of every HTTP connection manager of
/// `listener` that has inline routes (the first time) or had them (the
/// second), in order.
fn for_each_manager(listener: &mut Value, mut f: impl FnMut(&mut Value)) {
    for chain in listener["filter_chains"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        for filter in chain["filters"].as_array_mut().into_iter().flatten() {
            let config = &mut filter["typed_config"];
            if config.get("route_config").is_some() || config.get("rds").is_some() {
                f(config);
            }
        }
    }
}

/// A certificate and key a listener serves, as files Envoy would read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFiles {
    /// The secret's name: the certificate's path.
    pub name: String,
    /// The certificate chain (PEM).
    pub cert: String,
    /// The private key (PEM).
    pub key: String,
}

/// Makes every listener take its certificates and keys as secrets (SDS)
/// over the same stream instead of reading files: each
/// `tls_certificates` entry of files becomes an SDS reference by name.
/// Returns the files, for the server to read.
pub fn secrets(split: &mut Split) -> Vec<SecretFiles> {
    fn walk(value: &mut Value, out: &mut Vec<SecretFiles>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(certificates)) = map.get("tls_certificates") {
                    let files: Vec<SecretFiles> = certificates
                        .iter()
                        .filter_map(|c| {
                            let cert = c["certificate_chain"]["filename"].as_str()?;
                            let key = c["private_key"]["filename"].as_str()?;
                            Some(SecretFiles {
                                name: cert.to_owned(),
                                cert: cert.to_owned(),
                                key: key.to_owned(),
                            })
                        })
                        .collect();
                    if files.len() == certificates.len() {
                        map.remove("tls_certificates");
                        map.insert(
                            "tls_certificate_sds_secret_configs".into(),
                            files
                                .iter()
                                .map(|f| json!({ "name": f.name, "sds_config": ads() }))
                                .collect(),
                        );
                        for f in files {
                            if !out.contains(&f) {
                                out.push(f);
                            }
                        }
                    }
                }
                map.values_mut().for_each(|v| walk(v, out));
            }
            Value::Array(list) => list.iter_mut().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for listener in &mut split.listeners {
        walk(listener, &mut out);
    }
    out
}

/// FNV-1a, 64 bits (names, not a security boundary).
fn digest(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bootstrap() -> Value {
        let hcm = |routes: &str| {
            json!({ "name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "x",
                "route_config": { "name": "gatehouse_tls", "virtual_hosts": [{ "name": routes, "domains": ["*"] }] },
            }})
        };
        json!({ "static_resources": {
            "clusters": [
                { "name": "app", "type": "STATIC", "load_assignment": { "cluster_name": "app", "endpoints": [] } },
                { "name": "auth.example", "type": "STRICT_DNS", "load_assignment": { "cluster_name": "auth.example", "endpoints": [] } },
            ],
            "listeners": [{ "name": "https", "filter_chains": [
                { "filters": [hcm("a")] },
                { "filters": [hcm("b")] },
                { "filters": [hcm("a")] },
            ] }],
        }})
    }

    #[test]
    fn certificates_in_files_become_secrets_by_name() {
        let mut bootstrap = bootstrap();
        bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = json!({
            "typed_config": { "common_tls_context": { "tls_certificates": [{
                "certificate_chain": { "filename": "/s/shop/tls.crt" },
                "private_key": { "filename": "/s/shop/tls.key" },
            }] } }
        });
        let mut split = split(&bootstrap);
        let files = secrets(&mut split);
        assert_eq!(
            files,
            [SecretFiles {
                name: "/s/shop/tls.crt".into(),
                cert: "/s/shop/tls.crt".into(),
                key: "/s/shop/tls.key".into(),
            }]
        );
        let context = &split.listeners[0]["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"];
        assert!(context.get("tls_certificates").is_none());
        assert_eq!(
            context["tls_certificate_sds_secret_configs"][0]["name"],
            "/s/shop/tls.crt"
        );
        assert!(
            !split.listeners[0].to_string().contains("tls.key"),
            "the key's file is named nowhere in the listener"
        );
    }

    #[test]
    fn routes_rendered_with_other_filters_have_another_name() {
        let one = split(&bootstrap());
        let mut changed = bootstrap();
        changed["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["stat_prefix"] = json!("y");
        let two = split(&changed);
        let name = |s: &Split, chain: usize| {
            s.listeners[0]["filter_chains"][chain]["filters"][0]["typed_config"]["rds"]
                ["route_config_name"]
                .clone()
        };
        assert_ne!(name(&one, 0), name(&two, 0), "its filters changed");
        for chain in [1, 2] {
            assert_eq!(
                name(&one, chain),
                name(&two, chain),
                "chain {chain} did not change: its routes keep their name"
            );
        }
        // Every name stands for the same routes in both versions.
        for routes in &two.routes {
            if let Some(before) = one.routes.iter().find(|r| r["name"] == routes["name"]) {
                assert_eq!(before, routes);
            }
        }
    }

    #[test]
    fn ip_clusters_take_their_endpoints_over_eds_and_dns_ones_keep_them() {
        let split = split(&bootstrap());
        assert_eq!(split.clusters[0]["type"], "EDS");
        assert_eq!(
            split.clusters[0]["eds_cluster_config"]["service_name"],
            "app"
        );
        assert!(split.clusters[0].get("load_assignment").is_none());
        assert_eq!(split.endpoints.len(), 1);
        assert_eq!(split.endpoints[0]["cluster_name"], "app");
        assert_eq!(split.clusters[1]["type"], "STRICT_DNS");
        assert!(split.clusters[1].get("load_assignment").is_some());
    }

    #[test]
    fn each_listeners_routes_are_named_once_per_content() {
        let split = split(&bootstrap());
        let names: Vec<&str> = split
            .routes
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(names.len(), 2);
        assert!(names[0].starts_with("https/gatehouse_tls/"), "{names:?}");
        assert_ne!(names[0], names[1]);
        let named: Vec<&str> = split.listeners[0]["filter_chains"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["filters"][0]["typed_config"]["rds"]["route_config_name"].as_str())
            .collect();
        assert_eq!(
            named[0], named[2],
            "the same routes share one configuration"
        );
        assert_ne!(named[0], named[1]);
        assert!(
            split.listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]
                .get("route_config")
                .is_none()
        );
    }
}
