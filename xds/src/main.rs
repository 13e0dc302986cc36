//! `gatehouse-xds` (`gatehouse serve`): serves the rendered resources of the
//! given files and directories to every Envoy that joins, over ADS, and a
//! new version whenever they change and still render. A change that does not
//! is logged, counted and shown on the status page; the last good version
//! keeps serving.
//!
//! ```text
//! gatehouse-xds -f <file or dir>... [--listen 127.0.0.1:18000] [--status 127.0.0.1:18001]
//!               [--services-out DIR] [--instance ID]... [gatehouse render's options]
//!               [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM [--sds]]]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use gatehouse_config::RenderFlags;
use gatehouse_xds::ads::{Ads, Nodes};
use gatehouse_xds::fleet::Fleet;
use gatehouse_xds::proto::Protos;
use gatehouse_xds::snapshot::{self, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An xDS (ADS) control plane for the resources `gatehouse render` reads.
#[derive(Debug, Parser)]
#[command(name = "gatehouse-xds", version)]
struct Args {
    /// A resource file, or a directory (its *.yaml and *.yml files); repeatable
    #[arg(short = 'f', value_name = "FILE|DIR", required = true)]
    files: Vec<PathBuf>,
    /// Where Envoys connect (gRPC, ADS)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:18000")]
    listen: String,
    /// The status page (`/status`, JSON), `/metrics`, and `/readyz` and `/healthz` for probes
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:18001")]
    status: String,
    /// How often the files are checked for changes, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    poll_ms: u64,
    /// Write each instance's gatehouse-authz and gatehouse-ratelimit configurations under DIR/<instance>/ (authz.yaml, config/*.yaml) before its Envoys get the version
    #[arg(long, value_name = "DIR")]
    services_out: Option<PathBuf>,
    /// An instance to build at start (its services' files written at once), besides the default one; repeatable
    #[arg(long, value_name = "ID")]
    instance: Vec<String>,
    /// Serve ADS over TLS with this certificate chain (PEM); Envoys join with `gatehouse render --xds-ca`
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Ask every Envoy for a certificate this CA signed (mutual TLS; `gatehouse render --xds-cert`)
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve the listeners' certificates and keys as secrets (SDS), read here from the files the resources name, instead of files on the Envoys' side; only over mutual TLS
    #[arg(long, requires = "tls_client_ca")]
    sds: bool,
    #[command(flatten)]
    render: RenderFlags,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let matches = Args::command().get_matches();
    // The admin port is the bootstrap's: an Envoy joining the server has
    // its own (`gatehouse render --xds --admin-port`).
    if matches.value_source("admin_port") == Some(clap::parser::ValueSource::CommandLine) {
        anyhow::bail!(
            "--admin-port is the joining Envoy's bootstrap's: give it to `gatehouse render --xds`"
        );
    }
    let args = Args::from_arg_matches(&matches)?;
    let source = Source {
        paths: args.files.clone(),
        vars: args.render.vars.clone(),
        namespace: args.render.ambassador_namespace.clone(),
        sds: args.sds,
    };
    let protos = Protos::load()?;
    // The default instance must build: a server with nothing good to serve
    // says so and exits.
    let fleet = Arc::new(
        Fleet::new(
            source,
            args.render.render_options(),
            protos,
            args.render.ambassador_id.clone(),
            args.services_out.clone(),
        )
        .map_err(|e| anyhow::anyhow!("the resources do not render: {e}"))?,
    );
    for instance in &args.instance {
        fleet
            .subscribe(instance)
            .map_err(|e| anyhow::anyhow!("instance {instance}: {e}"))?;
    }
    tracing::info!(versions = ?fleet.current(), "serving");
    let nodes = Nodes::default();
    {
        let (files, fleet) = (args.files.clone(), fleet.clone());
        let poll = Duration::from_millis(args.poll_ms.max(50));
        tokio::spawn(async move {
            // The resources, and the certificates and keys they name.
            let watched = |fleet: &Fleet| {
                let mut all = files.clone();
                all.extend(fleet.watched());
                snapshot::stamp(&all)
            };
            let mut stamp = watched(&fleet);
            loop {
                tokio::time::sleep(poll).await;
                let now = watched(&fleet);
                if now != stamp {
                    stamp = now;
                    let fleet = fleet.clone();
                    let _ = tokio::task::spawn_blocking(move || fleet.rebuild()).await;
                }
            }
        });
    }

    let status = tokio::net::TcpListener::bind(&args.status)
        .await
        .with_context(|| format!("binding the status page on {}", args.status))?;
    {
        let (fleet, nodes) = (fleet.clone(), nodes.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = status.accept().await {
                let (fleet, nodes) = (fleet.clone(), nodes.clone());
                tokio::spawn(async move {
                    let mut head = vec![0_u8; 2048];
                    let n = stream.read(&mut head).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&head[..n]);
                    let path = head.split_whitespace().nth(1).unwrap_or("/");
                    // Listening means the default instance is built and
                    // its services' files written: ready, and alive.
                    let (kind, body) = if path == "/healthz" || path == "/readyz" {
                        ("text/plain", "ok\n".to_owned())
                    } else if path == "/metrics" {
                        (
                            "text/plain; version=0.0.4",
                            format!(
                                "# TYPE gatehouse_xds_versions_total counter\ngatehouse_xds_versions_total {}\n\
# TYPE gatehouse_xds_refused_changes_total counter\ngatehouse_xds_refused_changes_total {}\n",
                                fleet.versions.load(Ordering::Relaxed),
                                fleet.refusals.load(Ordering::Relaxed)
                            ),
                        )
                    } else {
                        let status = serde_json::json!({
                            "versions": fleet.current(),
                            "refused": fleet.refused(),
                            "nodes": *nodes.lock().unwrap_or_else(|e| e.into_inner()),
                        });
                        ("application/json", status.to_string())
                    };
                    let _ = stream
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        });
    }

    let address = args
        .listen
        .parse()
        .with_context(|| format!("--listen {}", args.listen))?;
    let mut server = tonic::transport::Server::builder();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(read(cert)?, read(key)?),
        );
        if let Some(ca) = &args.tls_client_ca {
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        server = server
            .tls_config(tls)
            .context("the TLS certificate and key")?;
    }
    tracing::info!(%address, status = %args.status, tls = args.tls_cert.is_some(), client_certificates = args.tls_client_ca.is_some(), sds = args.sds, "listening");
    server
        .add_service(AggregatedDiscoveryServiceServer::new(Ads::new(
            fleet, nodes,
        )))
        .serve_with_shutdown(address, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving ADS")
}
