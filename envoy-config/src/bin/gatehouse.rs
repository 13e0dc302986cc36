//! `gatehouse`: render Gatehouse resources into an Envoy bootstrap.
//!
//! ```text
//! gatehouse render   -f <file or dir>... -o <dir>   write <dir>/envoy.yaml, authz.yaml, ratelimit/*.yaml
//!                    [--live [--envoy-admin H:P]]   ... with routes and clusters in files Envoy watches
//! gatehouse validate -f <file or dir>...            render, then envoy --mode validate
//! gatehouse routes   -f <file or dir>...            the route table, in precedence order
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gatehouse_config::{
    RenderOptions, Resources, load, render, render_bootstrap, render_live, route_table, substitute,
    union_cds,
};

/// The commands and options, as `--help` prints them.
const USAGE: &str = "usage: gatehouse render -f <file|dir>... -o <dir> [--live [--envoy-admin HOST:PORT]] [OPTIONS]\n       gatehouse validate -f <file|dir>... [OPTIONS]\n       gatehouse routes -f <file|dir>...\noptions (defaults in brackets):\n  --set NAME=VALUE     fill ${NAME} in the resource files (repeatable)\n  --listen-port N      cleartext listener without a Listener resource [8080]\n  --https-port N       TLS listener without a Listener resource [8443]\n  --admin-port N       Envoy admin on 127.0.0.1 [9901]\n  --jwt-wasm PATH      gatehouse-jwt wasm file as Envoy sees it [/etc/gatehouse/wasm/gatehouse_jwt.wasm]\n  --router-wasm PATH   gatehouse-router wasm file as Envoy sees it [/etc/gatehouse/wasm/gatehouse_router.wasm]\n  --authz HOST:PORT    gatehouse-authz gRPC [127.0.0.1:9191]\n  --ratelimit HOST:PORT gatehouse-ratelimit gRPC [127.0.0.1:8081]\n  --secrets-dir DIR    where Secrets are mounted, <dir>/<secret>/<key> [/etc/gatehouse/secrets]\n  --ca-file PATH       CA bundle for upstream TLS [/etc/ssl/certs/ca-certificates.crt]\n  --services-tls-ca PATH  call gatehouse-authz and gatehouse-ratelimit over TLS, their certificates checked against this CA [plain]";

const ABOUT: &str = "gatehouse: Ambassador-style resources (Mapping, Host, Listener, Filter, FilterPolicy, RateLimit) to an Envoy bootstrap, gatehouse-authz's authz.yaml and gatehouse-ratelimit's configuration directory.\n  render    write <dir>/envoy.yaml, authz.yaml and ratelimit/<domain>.yaml (--live: cds, lds and rds files a running Envoy watches)\n  validate  render, then `envoy --mode validate` (GATEHOUSE_ENVOY or envoy on PATH)\n  routes    the route table in precedence order: what matches, where it goes, which filters run and why\n";

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn files(inputs: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(input)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            entries.sort();
            out.extend(entries);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

fn read(inputs: &[PathBuf], vars: &[(String, String)]) -> Result<Resources, String> {
    let mut resources = Resources::default();
    for file in files(inputs).map_err(|e| e.to_string())? {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let text = substitute(&text, vars).map_err(|e| format!("{}: {e}", file.display()))?;
        load(&text, &file.display().to_string(), &mut resources).map_err(|e| e.to_string())?;
    }
    Ok(resources)
}

/// Writes through a temporary name and a rename: a watching Envoy never
/// reads half a file.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Polls a running Envoy's admin page (`host:port`, plain HTTP) until it
/// mentions every name, for at most 30 seconds.
fn wait_for(admin: &str, path: &str, names: &[String]) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut page = String::new();
        if let Ok(mut stream) = std::net::TcpStream::connect(admin) {
            // HTTP/1.1: Envoy answers HTTP/1.0 with 426.
            let _ = write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.read_to_string(&mut page);
        }
        if names.iter().all(|n| page.contains(n.as_str())) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(std::io::Error::other(format!(
                "Envoy at {admin} did not take the new configuration within 30 s"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn render_files(
    resources: &Resources,
    options: &RenderOptions,
    dir: &Path,
) -> Result<Vec<PathBuf>, String> {
    let rendered = render(resources, options).map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| format!("writing {}: {e}", dir.display());
    let mut written = vec![dir.join("envoy.yaml")];
    write_atomically(&dir.join("envoy.yaml"), &rendered.envoy).map_err(io)?;
    if let Some(authz) = &rendered.authz {
        write_atomically(&dir.join("authz.yaml"), authz).map_err(io)?;
        written.push(dir.join("authz.yaml"));
    }
    let rl = dir.join("ratelimit");
    if !rendered.ratelimit.is_empty() {
        std::fs::create_dir_all(&rl).map_err(io)?;
        for (file, text) in &rendered.ratelimit {
            write_atomically(&rl.join(file), text).map_err(io)?;
            written.push(rl.join(file));
        }
    }
    // What an earlier render wrote and this one did not (a Filter or a
    // RateLimit domain that is gone) would still be served: remove it, but
    // only files that say they were rendered.
    let mut stale: Vec<PathBuf> = vec![dir.join("authz.yaml")];
    if let Ok(entries) = std::fs::read_dir(&rl) {
        stale.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
    }
    for path in stale {
        let rendered_here = std::fs::read_to_string(&path)
            .is_ok_and(|t| t.starts_with("# Rendered by `gatehouse render`"));
        if rendered_here && !written.contains(&path) {
            std::fs::remove_file(&path).map_err(io)?;
            println!("removed {}", path.display());
        }
    }
    Ok(written)
}

fn render_live_files(
    resources: &Resources,
    options: &RenderOptions,
    dir: &Path,
    admin: Option<&str>,
) -> Result<(), String> {
    let abs = std::fs::canonicalize(dir).map_err(|e| e.to_string())?;
    let files =
        render_live(resources, options, &abs.display().to_string()).map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| format!("writing {}: {e}", dir.display());
    let previous = std::fs::read_to_string(dir.join("cds.yaml")).unwrap_or_default();
    write_atomically(&dir.join("cds.yaml"), &union_cds(&previous, &files.cds)).map_err(io)?;
    if let Some(admin) = admin {
        wait_for(admin, "/clusters", &files.cds_names()).map_err(io)?;
    }
    // The listener may name new clusters (a JWKS host, a service): after them.
    write_atomically(&dir.join("lds.yaml"), &files.lds).map_err(io)?;
    write_atomically(&dir.join("rds.yaml"), &files.rds).map_err(io)?;
    if let Some(admin) = admin {
        wait_for(
            admin,
            "/config_dump?resource=dynamic_route_configs",
            &files.cds_names(),
        )
        .map_err(io)?;
        write_atomically(&dir.join("cds.yaml"), &files.cds).map_err(io)?;
    }
    write_atomically(&dir.join("envoy.yaml"), &files.bootstrap).map_err(io)
}

fn validate(resources: &Resources, options: &RenderOptions) -> ExitCode {
    let text = match render_bootstrap(resources, options) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = std::env::temp_dir().join(format!("gatehouse-validate-{}", std::process::id()));
    let path = dir.join("envoy.yaml");
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text)) {
        eprintln!("gatehouse: {e}");
        return ExitCode::FAILURE;
    }
    let envoy = std::env::var_os("GATEHOUSE_ENVOY").unwrap_or_else(|| "envoy".into());
    let status = std::process::Command::new(&envoy)
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&path)
        .status();
    let _ = std::fs::remove_dir_all(&dir);
    match status {
        Ok(s) if s.success() => {
            println!(
                "ok: {} mappings render to a bootstrap Envoy accepts",
                resources.mappings.len()
            );
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            // Rendering worked; only the Envoy check could not run.
            println!(
                "ok: {} mappings render (envoy not run: {e}; set GATEHOUSE_ENVOY)",
                resources.mappings.len()
            );
            ExitCode::SUCCESS
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first().cloned() else {
        return usage();
    };
    match command.as_str() {
        "-h" | "--help" | "help" => {
            println!("{ABOUT}\n{USAGE}");
            return ExitCode::SUCCESS;
        }
        "-V" | "--version" => {
            println!("gatehouse {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let mut inputs = Vec::new();
    let mut out_dir = None;
    let mut options = RenderOptions::default();
    let mut live = false;
    let mut admin: Option<String> = None;
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--live" {
            live = true;
            continue;
        }
        let value = rest.next();
        let port = |v: &str| v.parse::<u16>().ok();
        match (arg.as_str(), value) {
            ("-f", Some(v)) => inputs.push(PathBuf::from(v)),
            ("-o", Some(v)) => out_dir = Some(PathBuf::from(v)),
            ("--set", Some(v)) => match v.split_once('=') {
                Some((name, value)) => vars.push((name.to_owned(), value.to_owned())),
                None => return usage(),
            },
            ("--envoy-admin", Some(v)) => admin = Some(v.clone()),
            ("--listen-port", Some(v)) => match port(v) {
                Some(p) => options.listen_port = p,
                None => return usage(),
            },
            ("--https-port", Some(v)) => match port(v) {
                Some(p) => options.https_port = p,
                None => return usage(),
            },
            ("--admin-port", Some(v)) => match port(v) {
                Some(p) => options.admin_port = p,
                None => return usage(),
            },
            ("--jwt-wasm", Some(v)) => options.jwt_wasm.clone_from(v),
            ("--router-wasm", Some(v)) => options.router_wasm.clone_from(v),
            ("--authz", Some(v)) => options.authz_address.clone_from(v),
            ("--ratelimit", Some(v)) => options.ratelimit_address.clone_from(v),
            ("--secrets-dir", Some(v)) => options.secrets_dir.clone_from(v),
            ("--ca-file", Some(v)) => options.ca_file.clone_from(v),
            ("--services-tls-ca", Some(v)) => options.services_ca_file = Some(v.clone()),
            _ => return usage(),
        }
    }
    if inputs.is_empty() {
        return usage();
    }
    let resources = match read(&inputs, &vars) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command.as_str() {
        "routes" => match route_table(&resources) {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gatehouse: {e}");
                ExitCode::FAILURE
            }
        },
        "render" => {
            let Some(dir) = out_dir else { return usage() };
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("gatehouse: {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
            let result = if live {
                render_live_files(&resources, &options, &dir, admin.as_deref())
                    .map(|()| vec![dir.join("envoy.yaml")])
            } else {
                render_files(&resources, &options, &dir)
            };
            match result {
                Ok(written) => {
                    for path in written {
                        println!("wrote {}", path.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("gatehouse: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "validate" => validate(&resources, &options),
        _ => usage(),
    }
}
