//! `gatehouse serve --sds` over mutual TLS, with a real Envoy: the
//! listener's certificate and key reach Envoy as a secret on the ADS
//! stream (no file on Envoy's side names them), a new certificate written
//! over the old one is served without the listener being replaced, and the
//! server asks every Envoy for a certificate before it says anything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{Echo, EnvoyBuilder, poll};
use gatehouse_config::{XdsJoin, XdsTls};

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(e2e::paths::tool("openssl", "make setup")?)
        .current_dir(dir)
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A self-signed certificate `name`.crt and its key `name`.key in `dir`,
/// for `subject`, with `extra` arguments (extensions).
fn self_signed(dir: &Path, name: &str, subject: &str, extra: &[&str]) -> Result<()> {
    let (key, cert) = (format!("{name}.key"), format!("{name}.crt"));
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &cert, "-days",
        "2", "-subj", subject,
    ];
    args.extend(extra);
    openssl(dir, &args)
}

/// A certificate `name`.crt and key `name`.key in `dir` for `san`, signed
/// by `ca` (its `.crt` and `.key`), for `usage` (serverAuth, clientAuth).
fn signed(dir: &Path, name: &str, san: &str, usage: &str) -> Result<()> {
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!("subjectAltName={san}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"),
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    )
}

/// A self-signed certificate for `shop.test` in `dir` (`tls.crt`,
/// `tls.key`), as a Host's Secret holds one.
fn shop_certificate(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("next");
    std::fs::create_dir_all(&tmp)?;
    self_signed(
        &tmp,
        "tls",
        "/CN=shop.test",
        &["-addext", "subjectAltName=DNS:shop.test"],
    )?;
    // Renamed into place, key and certificate together as a kubelet's
    // Secret update would.
    for file in ["tls.key", "tls.crt"] {
        std::fs::rename(tmp.join(file), dir.join(file))?;
    }
    std::fs::remove_dir_all(tmp)?;
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<PathBuf> {
    std::fs::copy(from, to)?;
    Ok(to.to_path_buf())
}

#[tokio::test]
async fn a_listeners_certificate_travels_as_a_secret_and_rotates_in_place() -> Result<()> {
    let echo = Echo::start_named("shop").await?;
    let work = tempfile::tempdir()?;
    let pki = work.path().join("pki");
    std::fs::create_dir_all(&pki)?;
    self_signed(&pki, "ca", "/CN=gatehouse test CA", &[])?;
    signed(&pki, "server", "IP:127.0.0.1", "serverAuth")?;
    signed(&pki, "edge", "DNS:edge", "clientAuth")?;
    let secrets = work.path().join("secrets");
    shop_certificate(&secrets.join("shop"))?;
    let first = copy(
        &secrets.join("shop/tls.crt"),
        &work.path().join("first.crt"),
    )?;

    let resources = work.path().join("resources");
    std::fs::create_dir_all(&resources)?;
    let [ads, status, https] = e2e::redis::free_ports()?;
    std::fs::write(
        resources.join("edge.yaml"),
        format!(
            "apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {{name: https}}
spec: {{port: {https}, protocol: HTTPS, securityModel: XFP, hostBinding: {{namespace: {{from: ALL}}}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: shop}}
spec: {{hostname: shop.test, tlsSecret: {{name: shop}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: shop}}
spec: {{prefix: /, service: '127.0.0.1:{port}'}}
",
            port = echo.port()
        ),
    )?;
    let path = |p: &Path| p.display().to_string();
    let _xds = e2e::process::ChildProcess::spawn(
        "gatehouse-xds",
        std::process::Command::new(e2e::paths::service_bin("gatehouse-xds")?)
            .arg("-f")
            .arg(&resources)
            .args(["--listen", &format!("127.0.0.1:{ads}")])
            .args(["--status", &format!("127.0.0.1:{status}")])
            .args(["--listen-address", "127.0.0.1"])
            .args(["--secrets-dir", &path(&secrets)])
            .args(["--tls-cert", &path(&pki.join("server.crt"))])
            .args(["--tls-key", &path(&pki.join("server.key"))])
            .args(["--tls-client-ca", &path(&pki.join("ca.crt"))])
            .arg("--sds")
            .args(["--poll-ms", "200"]),
        &work.path().join("xds.log"),
    )?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    poll::until_ok(
        "gatehouse-xds answers",
        &client,
        &format!("http://127.0.0.1:{status}/readyz"),
    )
    .await?;

    // Without a certificate of its own, nothing gets past the handshake.
    let curl = e2e::paths::tool("curl", "make setup")?;
    let anonymous = tokio::process::Command::new(&curl)
        .args([
            "--silent",
            "--http2",
            "--cacert",
            &path(&pki.join("ca.crt")),
        ])
        .arg(format!("https://127.0.0.1:{ads}/"))
        .output()
        .await?;
    ensure!(
        !anonymous.status.success(),
        "a client without a certificate was answered"
    );

    let envoy = EnvoyBuilder::from_text(
        &gatehouse_config::render_xds_join(&XdsJoin {
            server: format!("127.0.0.1:{ads}"),
            node_id: "edge-tls".into(),
            node_cluster: "default".into(),
            admin_port: 0,
            delta: false,
            tls: Some(XdsTls {
                ca: path(&pki.join("ca.crt")),
                client: Some((path(&pki.join("edge.crt")), path(&pki.join("edge.key")))),
            }),
        }),
        "edge-tls",
    )
    .start()
    .await?;
    let seen = e2e::echo::get_over_tls(&first, "shop.test", https, "/over-tls").await?;
    assert_eq!(seen.upstream, "shop");
    let dump = |resource: &'static str| {
        let (client, url) = (
            client.clone(),
            envoy.admin_url(&format!("/config_dump?resource={resource}")),
        );
        async move { anyhow::Ok(client.get(url).send().await?.text().await?) }
    };
    let secrets_dump = dump("dynamic_active_secrets").await?;
    assert!(
        secrets_dump.contains("shop/tls.crt") && secrets_dump.contains("[redacted]"),
        "{secrets_dump}"
    );
    let listeners = dump("dynamic_listeners").await?;
    assert!(
        !listeners.contains("tls.key") && !listeners.contains("PRIVATE KEY"),
        "the key is named nowhere in Envoy's listeners: {listeners}"
    );

    // A new certificate written over the old one: served, in place.
    shop_certificate(&secrets.join("shop"))?;
    let second = copy(
        &secrets.join("shop/tls.crt"),
        &work.path().join("second.crt"),
    )?;
    poll::until(
        "the new certificate served",
        Duration::from_secs(30),
        || async {
            Ok(e2e::echo::get_over_tls(&second, "shop.test", https, "/x")
                .await
                .ok()
                .map(|_| ()))
        },
    )
    .await?;
    ensure!(
        e2e::echo::get_over_tls(&first, "shop.test", https, "/x")
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
    assert_eq!(
        envoy.stat("listener_manager.listener_modified").await?,
        0,
        "the listener was not replaced"
    );
    let status: serde_json::Value = client
        .get(format!("http://127.0.0.1:{status}/status"))
        .send()
        .await?
        .json()
        .await?;
    let log = std::fs::read_to_string(work.path().join("xds.log"))?;
    for secret in [&secrets.join("shop/tls.key"), &secrets.join("shop/tls.crt")] {
        let pem = std::fs::read_to_string(secret)?;
        let body = pem.lines().nth(1).context("a PEM body")?;
        assert!(
            !log.contains(body) && !status.to_string().contains(body),
            "secrets are never logged nor shown"
        );
    }
    Ok(())
}

/// Secrets are served only to Envoys that proved who they are.
#[test]
fn sds_without_client_certificates_is_refused() -> Result<()> {
    let out = std::process::Command::new(e2e::paths::service_bin("gatehouse-xds")?)
        .args(["-f", "/nonexistent", "--sds"])
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-client-ca"), "{stderr}");
    Ok(())
}
