//! Reading resources: multi-document YAML, `gatehouse.dev/v1alpha1` or
//! `getambassador.io/v3alpha1`, each document handed to its kind's parser
//! (`mapping`, `host`, `policy`, `limits`) and collected in [`Resources`].

use serde::Deserialize;

use crate::doc::{RawDoc, ResourceError, parse_document};
use crate::host::{Host, Listener, RawHostSpec, RawListenerSpec, host, listener};
use crate::limits::{
    RateLimit, RateLimitService, RawRateLimitServiceSpec, RawRateLimitSpec, rate_limit,
    rate_limit_service,
};
use crate::mapping::{Mapping, RawMappingSpec, mapping};
use crate::policy::{Filter, FilterPolicy, RawFilterSpec, RawPolicySpec, filter, policy};

/// Every resource of a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// The Mappings, in file order.
    pub mappings: Vec<Mapping>,
    /// The Listeners (none: one HTTP listener from the render options).
    pub listeners: Vec<Listener>,
    /// The Hosts.
    pub hosts: Vec<Host>,
    /// The Filters.
    pub filters: Vec<Filter>,
    /// The FilterPolicies, in file order.
    pub policies: Vec<FilterPolicy>,
    /// The RateLimits.
    pub rate_limits: Vec<RateLimit>,
    /// The RateLimitService, if a document names one.
    pub rate_limit_service: Option<RateLimitService>,
    /// The `ambassador` Module, if a document holds it.
    pub module: Option<crate::module::Module>,
}

#[derive(Debug, Deserialize)]
struct Head {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

const API_VERSIONS: [&str; 2] = ["gatehouse.dev/v1alpha1", "getambassador.io/v3alpha1"];

/// The Ambassador instance resources are read for: which `ambassador_id`
/// it answers to and which namespace it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Ambassador's `AMBASSADOR_ID`: a resource is served when its
    /// `spec.ambassador_id` names it (or `_automatic_`); a resource without
    /// one belongs to `default`.
    pub ambassador_id: String,
    /// Ambassador's `AMBASSADOR_NAMESPACE`: a Mapping in another namespace
    /// sends `service: quote` to `quote.<its namespace>`.
    pub namespace: String,
}

impl Default for Instance {
    fn default() -> Self {
        Self {
            ambassador_id: "default".into(),
            namespace: "default".into(),
        }
    }
}

/// Reads every document of `text` (from `file`) into `into`, for the
/// default instance (`ambassador_id` and namespace `default`).
///
/// # Errors
/// [`ResourceError`] naming file, document, field and the alternative.
pub fn load(text: &str, file: &str, into: &mut Resources) -> Result<(), ResourceError> {
    load_for(&Instance::default(), text, file, into)
}

/// Reads the documents of `text` (from `file`) that `instance` serves into
/// `into`; documents for other `ambassador_id`s are skipped, as Ambassador
/// skips them.
///
/// # Errors
/// [`ResourceError`] naming file, document, field and the alternative.
pub fn load_for(
    instance: &Instance,
    text: &str,
    file: &str,
    into: &mut Resources,
) -> Result<(), ResourceError> {
    for_each_document(text, file, |value, at| {
        one(instance, value, at, file, into).map(|_| ())
    })
}

/// What became of one document ([`report`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Read: it will be rendered.
    Read,
    /// For other instances (`ambassador_id`), so not read, as in Ambassador.
    Skipped,
    /// Refused, and why.
    Refused(ResourceError),
}

/// Every document of `text` (from `file`) with what becomes of it, read
/// into `into` where it can be: a migrating user's first look at a set of
/// Ambassador files, all the refusals at once rather than the first.
pub fn report(
    instance: &Instance,
    text: &str,
    file: &str,
    into: &mut Resources,
) -> Vec<(String, Outcome)> {
    let mut out = Vec::new();
    let result = for_each_document(text, file, |value, at| {
        let label = document_label(&value, at);
        let outcome = match one(instance, value, at, file, into) {
            Ok(true) => Outcome::Read,
            Ok(false) => Outcome::Skipped,
            Err(e) => Outcome::Refused(e),
        };
        out.push((label, outcome));
        Ok(())
    });
    if let Err(e) = result {
        out.push((e.document.clone(), Outcome::Refused(e)));
    }
    out
}

/// Calls `each` with every resource of `text` and where it is (`document
/// <index>`, or `document <index> item <i>` in a `kind: List`).
fn for_each_document(
    text: &str,
    file: &str,
    mut each: impl FnMut(serde_yaml_ng::Value, &str) -> Result<(), ResourceError>,
) -> Result<(), ResourceError> {
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(doc).map_err(|e| ResourceError {
            file: file.to_owned(),
            document: format!("document {index} (? ?)"),
            path: ".".into(),
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        // `kubectl get -o yaml` exports several resources as one `List`.
        if value.get("kind").and_then(serde_yaml_ng::Value::as_str) == Some("List")
            && value
                .get("apiVersion")
                .and_then(serde_yaml_ng::Value::as_str)
                == Some("v1")
        {
            let items = value
                .get("items")
                .and_then(serde_yaml_ng::Value::as_sequence)
                .ok_or_else(|| ResourceError {
                    file: file.to_owned(),
                    document: format!("document {index} (List)"),
                    path: "items".into(),
                    message: "a List holds its resources in items".into(),
                })?;
            for (i, item) in items.iter().enumerate() {
                each(item.clone(), &format!("document {index} item {i}"))?;
            }
            continue;
        }
        each(value, &format!("document {index}"))?;
    }
    Ok(())
}

/// `<at> (<kind> <name>)`, `?` for what the document does not say.
fn document_label(value: &serde_yaml_ng::Value, at: &str) -> String {
    let field = |v: Option<&serde_yaml_ng::Value>| {
        v.and_then(serde_yaml_ng::Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("?")
            .to_owned()
    };
    let kind = field(value.get("kind"));
    let name = field(value.get("metadata").and_then(|m| m.get("name")));
    format!("{at} ({kind} {name})")
}

/// Reads one resource, `at` (`document <index>`) in `file`, into `into`;
/// `false` when it is for other instances.
fn one(
    instance: &Instance,
    value: serde_yaml_ng::Value,
    at: &str,
    file: &str,
    into: &mut Resources,
) -> Result<bool, ResourceError> {
    let head: Head = serde_yaml_ng::from_value(value.clone()).unwrap_or(Head {
        api_version: String::new(),
        kind: String::new(),
    });
    let document = document_label(&value, at);
    let err = |path: &str, message: String| ResourceError {
        file: file.to_owned(),
        document: document.clone(),
        path: path.to_owned(),
        message,
    };
    if !API_VERSIONS.contains(&head.api_version.as_str()) {
        return Err(err(
            "apiVersion",
            format!(
                "{:?} is not supported: use gatehouse.dev/v1alpha1 (or getambassador.io/v3alpha1)",
                head.api_version
            ),
        ));
    }
    let mut value = value;
    if !crate::doc::take_ambassador_id(&mut value, &err)?.serves(&instance.ambassador_id) {
        return Ok(false);
    }
    match head.kind.as_str() {
        "Mapping" => {
            let raw: RawDoc<RawMappingSpec> = parse_document(value, &err)?;
            into.mappings.push(mapping(raw, &instance.namespace, &err)?);
        }
        "Listener" => {
            let raw: RawDoc<RawListenerSpec> = parse_document(value, &err)?;
            let l = listener(raw, &err)?;
            if into.listeners.iter().any(|o| o.port == l.port) {
                return Err(err(
                    "spec.port",
                    format!("port {} has a Listener already", l.port),
                ));
            }
            into.listeners.push(l);
        }
        "Host" => {
            let raw: RawDoc<RawHostSpec> = parse_document(value, &err)?;
            into.hosts.push(host(raw, &err)?);
        }
        "Filter" => {
            let raw: RawDoc<RawFilterSpec> = parse_document(value, &err)?;
            let f = filter(raw, &err)?;
            if into.filters.iter().any(|o| o.name == f.name) {
                return Err(err(
                    "metadata.name",
                    format!("a Filter named {:?} exists already", f.name),
                ));
            }
            into.filters.push(f);
        }
        "FilterPolicy" => {
            let raw: RawDoc<RawPolicySpec> = parse_document(value, &err)?;
            into.policies.push(policy(raw, &err)?);
        }
        "RateLimit" => {
            let raw: RawDoc<RawRateLimitSpec> = parse_document(value, &err)?;
            into.rate_limits.push(rate_limit(raw, &err)?);
        }
        "RateLimitService" => {
            let raw: RawDoc<RawRateLimitServiceSpec> = parse_document(value, &err)?;
            if let Some(other) = &into.rate_limit_service {
                return Err(err(
                    "kind",
                    format!(
                        "RateLimitService {} exists already: Envoy calls one rate-limit service",
                        other.name
                    ),
                ));
            }
            into.rate_limit_service = Some(rate_limit_service(raw, &err)?);
        }
        "Module" => {
            let raw: RawDoc<crate::module::RawModuleSpec> = parse_document(value, &err)?;
            if into.module.is_some() {
                return Err(err(
                    "metadata.name",
                    "the ambassador Module exists already: one per set of resources".into(),
                ));
            }
            into.module = Some(crate::module::module(raw, &err)?);
        }
        other => {
            return Err(err(
                "kind",
                format!(
                    "{other:?} is not supported: this version reads Mapping, Host, Listener, Filter, FilterPolicy, RateLimit, RateLimitService and the ambassador Module"
                ),
            ));
        }
    }
    Ok(true)
}

/// Fills `${NAME}` placeholders in resource text (as the quickstart's
/// `deploy/quickstart/edge.yaml` has them) from `vars`.
///
/// # Errors
/// The first placeholder left without a value, by name.
pub fn substitute(text: &str, vars: &[(String, String)]) -> Result<String, String> {
    let mut out = text.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    // Only `${` followed by a name counts: comments may still mention them.
    let mut rest = out.as_str();
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && after[name.len()..].starts_with('}') {
            let line_start = out[..out.len() - rest.len() + i]
                .rfind('\n')
                .map_or(0, |n| n + 1);
            let commented = out[line_start..].trim_start().starts_with('#');
            if !commented {
                return Err(format!("${{{name}}} has no value: pass --set {name}=..."));
            }
        }
        rest = &after[name.len()..];
    }
    Ok(out)
}

/// The resource files of `paths`: a directory's `*.yaml` and `*.yml` files
/// (in name order), or the path itself.
///
/// # Errors
/// A directory that cannot be listed.
pub fn resource_files(paths: &[std::path::PathBuf]) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<std::path::PathBuf> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            entries.sort();
            out.extend(entries);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// The resources of `paths` ([`resource_files`]) for `instance`, each file's
/// `${NAME}` filled from `vars` first.
///
/// # Errors
/// A file that cannot be read, a placeholder left unfilled, or a document
/// refused, named by file, document and field.
pub fn load_files(
    paths: &[std::path::PathBuf],
    instance: &Instance,
    vars: &[(String, String)],
) -> Result<Resources, String> {
    let mut resources = Resources::default();
    for file in resource_files(paths).map_err(|e| e.to_string())? {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{name}: {e}"))?;
        let text = substitute(&text, vars).map_err(|e| format!("{name}: {e}"))?;
        load_for(instance, &text, &name, &mut resources).map_err(|e| e.to_string())?;
    }
    Ok(resources)
}
