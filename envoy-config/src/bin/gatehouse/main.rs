//! `gatehouse`: render Gatehouse resources into an Envoy bootstrap.
//!
//! ```text
//! gatehouse render   -f <file or dir>... -o <dir>   write <dir>/envoy.yaml, authz.yaml, ratelimit/*.yaml
//!                    [--live [--envoy-admin H:P]]   ... with routes and clusters in files Envoy watches
//! gatehouse validate -f <file or dir>...            render, then envoy --mode validate
//! gatehouse routes   -f <file or dir>...            the route table, in precedence order
//! gatehouse doctor   -f <file or dir>... <url>      walk a request hop by hop, stop at the broken one
//! gatehouse diag     -f <file or dir>...            serve the diagnostics page and the API portal
//! gatehouse serve    -f <file or dir>...            an xDS control plane (runs gatehouse-xds, beside this binary)
//! ```
//!
//! The command line is declared once, with clap ([`Cli`]): `--help` and the
//! usage errors (exit status 2) come from the same declaration the parser
//! uses. The rendering is the library's; this file reads and writes files
//! and runs Envoy's check.

mod diag;
mod doctor;
mod http;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse_config::{
    Outcome, RenderFlags, RenderOptions, Resources, XdsJoin, XdsTls, render, render_bootstrap,
    render_live, report, route_table, substitute, union_cds, write_atomically, write_services,
};

/// Ambassador-style resources (Mapping, Host, Listener, Filter, FilterPolicy,
/// RateLimit) to an Envoy bootstrap, gatehouse-authz's authz.yaml and
/// gatehouse-ratelimit's configuration directory.
#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    // One `--help` names every command and option.
    flatten_help = true,
    subcommand_required = true,
    arg_required_else_help = true,
    // An option given twice takes the last value, as the hand-written parser did.
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    options: RenderFlags,
}

#[derive(Debug, Subcommand)]
enum Command {
    // `about` rather than a doc comment: rustdoc would read <dir> as HTML.
    #[command(
        about = "Write <dir>/envoy.yaml, authz.yaml and ratelimit/<domain>.yaml (--live: the cds, lds and rds files a running Envoy watches)"
    )]
    Render(RenderArgs),
    /// Render, then `envoy --mode validate` (GATEHOUSE_ENVOY or envoy on PATH); --report: what of each document will work, all at once
    Validate(ValidateArgs),
    /// The route table in precedence order: what matches, where it goes, which filters run and why
    Routes(CheckArgs),
    /// Walk a request hop by hop (route, filters, side services, Envoy's cluster, endpoint health, a connection to each endpoint); exit 1 at the first broken hop
    Doctor(DoctorArgs),
    /// An xDS (ADS) control plane serving the rendered resources to many Envoys: runs gatehouse-xds (found beside this binary) with these arguments; `gatehouse serve --help` shows them
    #[command(disable_help_flag = true)]
    Serve(ServeArgs),
    /// Serve the diagnostics page (routes joined with Envoy's and the services' live figures) and the developer portal (the APIs of Mappings with docs)
    Diag(DiagArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// gatehouse-xds's arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct DiagArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// Where the pages are served
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8877")]
    listen: String,
    /// Envoy's admin address [default: 127.0.0.1:--admin-port]
    #[arg(long, value_name = "HOST:PORT")]
    envoy_admin: Option<String>,
    /// Envoy's listener as clients reach it, through which API documents are fetched [default: http://127.0.0.1:--listen-port]
    #[arg(long, value_name = "URL")]
    envoy_url: Option<String>,
    /// gatehouse-ratelimit's metrics, e.g. http://127.0.0.1:8080/metrics
    #[arg(long, value_name = "URL")]
    ratelimit_metrics: Option<String>,
    /// gatehouse-authz's metrics, e.g. http://127.0.0.1:8090/metrics
    #[arg(long, value_name = "URL")]
    authz_metrics: Option<String>,
    /// How often API documents are fetched again, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    refresh: u64,
}

#[derive(Debug, clap::Args)]
struct DoctorArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// The request's URL: [http://]host[:port]/path?query (the port is the listener's; default --listen-port)
    url: String,
    /// The request's method
    #[arg(short = 'X', value_name = "METHOD", default_value = "GET")]
    method: String,
    /// A request header (repeatable); a Host header replaces the URL's host
    #[arg(short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Envoy's admin address [default: 127.0.0.1:--admin-port]
    #[arg(long, value_name = "HOST:PORT")]
    envoy_admin: Option<String>,
}

/// The resource files every command reads.
#[derive(Debug, clap::Args)]
struct Inputs {
    /// A resource file, or a directory (its *.yaml and *.yml files, in name order); repeatable
    #[arg(short = 'f', value_name = "FILE|DIR", required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RenderArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// The directory to write to (created if missing)
    #[arg(short = 'o', value_name = "DIR")]
    out: PathBuf,
    /// Write envoy.yaml, cds.yaml, lds.yaml and rds.yaml for a running Envoy that watches the directory
    #[arg(long)]
    live: bool,
    /// With --live: wait for the Envoy with this admin address to take each step, then drop the old clusters
    #[arg(long, value_name = "HOST:PORT")]
    envoy_admin: Option<String>,
    /// Write envoy.yaml as the bootstrap of an Envoy that takes its listeners and clusters from `gatehouse serve` at this address (the services' files as usual)
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "live")]
    xds: Option<String>,
    /// With --xds: the incremental variant of ADS (DELTA_GRPC) instead of the state of the world
    #[arg(long, requires = "xds")]
    delta: bool,
    /// With --xds: the Envoy's node id (how the control plane tells Envoys apart)
    #[arg(long, value_name = "ID", default_value = "edge-1", requires = "xds")]
    node_id: String,
    /// With --xds: the Envoy's node cluster, the Ambassador instance whose resources it gets (spec.ambassador_id)
    #[arg(long, value_name = "ID", default_value = "default", requires = "xds")]
    node_cluster: String,
    /// With --xds: TLS to the server, whose certificate this CA signed for the server's host (as Envoy sees the file)
    #[arg(long, value_name = "PATH", requires = "xds")]
    xds_ca: Option<String>,
    /// With --xds-ca: the Envoy's certificate, for a server that asks for one (gatehouse serve --tls-client-ca)
    #[arg(long, value_name = "PATH", requires = "xds_ca", requires = "xds_key")]
    xds_cert: Option<String>,
    /// With --xds-cert: its private key
    #[arg(long, value_name = "PATH", requires = "xds_cert")]
    xds_key: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ValidateArgs {
    #[command(flatten)]
    check: CheckArgs,
    /// Go on past a refused document: one line for every document (read, skipped for another ambassador_id, or refused and why), then what the whole set renders to
    #[arg(long)]
    report: bool,
}

/// `validate` and `routes` write nothing. They still accept `render`'s output
/// options and ignore them, as the hand-written parser did, so one command
/// line can be reused for all three; hidden, since they do nothing here.
#[derive(Debug, clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    inputs: Inputs,
    #[arg(id = "out", short = 'o', value_name = "DIR", hide = true)]
    _out: Option<PathBuf>,
    #[arg(id = "live", long = "live", hide = true)]
    _live: bool,
    #[arg(
        id = "envoy_admin",
        long = "envoy-admin",
        value_name = "HOST:PORT",
        hide = true
    )]
    _envoy_admin: Option<String>,
}

fn files(inputs: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    gatehouse_config::resource_files(inputs)
}

fn read(inputs: &[PathBuf], options: &RenderFlags) -> Result<Resources, String> {
    gatehouse_config::load_files(inputs, &options.instance(), &options.vars)
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
    write_atomically(&dir.join("envoy.yaml"), &rendered.envoy).map_err(io)?;
    let services = write_services(&rendered, dir, &dir.join("ratelimit")).map_err(io)?;
    for path in &services.removed {
        println!("removed {}", path.display());
    }
    Ok(std::iter::once(dir.join("envoy.yaml"))
        .chain(services.written)
        .collect())
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

/// `validate --report`: every document's outcome, then the set's.
fn report_files(inputs: &[PathBuf], cli: &RenderFlags, options: &RenderOptions) -> ExitCode {
    let instance = cli.instance();
    let files = match files(inputs) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut resources = Resources::default();
    let (mut read, mut skipped, mut refused) = (0, 0, 0);
    for file in files {
        let name = file.display().to_string();
        let text = match std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|t| substitute(&t, &cli.vars))
        {
            Ok(t) => t,
            Err(e) => {
                println!("refused  {name}: {e}");
                refused += 1;
                continue;
            }
        };
        for (document, outcome) in report(&instance, &text, &name, &mut resources) {
            match outcome {
                Outcome::Read => {
                    read += 1;
                    println!("ok       {name}: {document}");
                }
                Outcome::Skipped => {
                    skipped += 1;
                    println!(
                        "skipped  {name}: {document}: for another instance than {:?} (ambassador_id)",
                        instance.ambassador_id
                    );
                }
                Outcome::Refused(e) => {
                    refused += 1;
                    println!(
                        "refused  {}: {}: {}: {}",
                        e.file, e.document, e.path, e.message
                    );
                }
            }
        }
    }
    let rendered = render(&resources, options);
    match &rendered {
        Ok(_) => println!("together: the {read} documents read render"),
        Err(e) => println!("together: refused: {e}"),
    }
    println!("{read} read, {skipped} skipped, {refused} refused");
    if refused == 0 && rendered.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `gatehouse serve`: gatehouse-xds, from the directory this binary is in
/// (both are built and installed together), with the same arguments.
fn serve(args: &[String]) -> ExitCode {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("gatehouse-xds")));
    let Some(binary) = beside.filter(|b| b.exists()) else {
        eprintln!(
            "gatehouse: gatehouse-xds is not beside this binary (cargo build -p gatehouse-xds)"
        );
        return ExitCode::FAILURE;
    };
    match std::process::Command::new(&binary).args(args).status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => {
            eprintln!("gatehouse: {}: {e}", binary.display());
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = cli.options.render_options();
    if let Command::Serve(args) = &cli.command {
        return serve(&args.args);
    }
    let inputs = match &cli.command {
        Command::Render(args) => &args.inputs,
        Command::Validate(args) => &args.check.inputs,
        Command::Routes(args) => &args.inputs,
        Command::Doctor(args) => &args.inputs,
        Command::Diag(args) => &args.inputs,
        Command::Serve(_) => unreachable!("handled above"),
    };
    if let Command::Validate(args) = &cli.command
        && args.report
    {
        return report_files(&inputs.files, &cli.options, &options);
    }
    let resources = match read(&inputs.files, &cli.options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Routes(_) => match route_table(&resources) {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gatehouse: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Render(args) => {
            let dir = args.out;
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("gatehouse: {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
            let result = if let Some(server) = &args.xds {
                render_files(&resources, &options, &dir).and_then(|written| {
                    let bootstrap = gatehouse_config::render_xds_join(&XdsJoin {
                        server: server.clone(),
                        node_id: args.node_id.clone(),
                        node_cluster: args.node_cluster.clone(),
                        admin_port: options.admin_port,
                        delta: args.delta,
                        tls: args.xds_ca.clone().map(|ca| XdsTls {
                            ca,
                            client: args.xds_cert.clone().zip(args.xds_key.clone()),
                        }),
                    });
                    write_atomically(&dir.join("envoy.yaml"), &bootstrap)
                        .map(|()| written)
                        .map_err(|e| format!("writing {}: {e}", dir.display()))
                })
            } else if args.live {
                render_live_files(&resources, &options, &dir, args.envoy_admin.as_deref())
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
        Command::Validate(_) => validate(&resources, &options),
        Command::Serve(_) => unreachable!("handled above"),
        Command::Diag(args) => diag::serve(
            &resources,
            &options,
            &args.listen,
            diag::Sources {
                admin: args
                    .envoy_admin
                    .unwrap_or_else(|| format!("127.0.0.1:{}", options.admin_port)),
                ratelimit_metrics: args.ratelimit_metrics,
                authz_metrics: args.authz_metrics,
                envoy_url: args
                    .envoy_url
                    .unwrap_or_else(|| format!("http://127.0.0.1:{}", options.listen_port)),
                refresh: std::time::Duration::from_secs(args.refresh.max(1)),
            },
        ),
        Command::Doctor(args) => {
            let admin = args
                .envoy_admin
                .unwrap_or_else(|| format!("127.0.0.1:{}", options.admin_port));
            doctor::run(
                &resources,
                &options,
                &admin,
                &doctor::Request {
                    method: args.method,
                    headers: args.headers,
                    url: args.url,
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_declaration_is_consistent() {
        Cli::command().debug_assert();
    }

    /// What `--help` promises: every command with its usage line, and every
    /// option a command acts on (hidden ones are accepted and ignored).
    #[test]
    fn help_names_every_command_and_option() {
        let mut cli = Cli::command();
        cli.build();
        let help = cli.render_long_help().to_string();
        let mut named = 0;
        for command in cli.get_subcommands().filter(|c| c.get_name() != "help") {
            assert!(
                help.contains(&format!("gatehouse {}", command.get_name())),
                "{help}"
            );
            for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    assert!(help.contains(&format!("--{long}")), "--{long}: {help}");
                    named += 1;
                }
                if let Some(short) = arg.get_short() {
                    let named_here = [" ", ","]
                        .iter()
                        .any(|after| help.contains(&format!("-{short}{after}")));
                    assert!(named_here, "-{short}: {help}");
                    named += 1;
                }
            }
        }
        assert!(named >= 15, "{named}: {help}");
    }

    #[test]
    fn defaults_are_the_renderers() {
        let cli = Cli::try_parse_from(["gatehouse", "routes", "-f", "x.yaml"]).unwrap();
        assert_eq!(cli.options.render_options(), RenderOptions::default());
    }

    #[test]
    fn options_follow_the_command_and_the_last_one_counts() {
        let cli = Cli::try_parse_from([
            "gatehouse",
            "render",
            "-f",
            "a.yaml",
            "--listen-port",
            "1",
            "--listen-port",
            "2",
            "-f",
            "b",
            "-o",
            "out",
            "--set",
            "A=b=c",
            "--services-tls-ca",
            "ca.pem",
        ])
        .unwrap();
        let options = cli.options.render_options();
        assert_eq!(options.listen_port, 2);
        assert_eq!(options.services_ca_file.as_deref(), Some("ca.pem"));
        assert_eq!(cli.options.vars, [("A".to_owned(), "b=c".to_owned())]);
        let Command::Render(args) = cli.command else {
            panic!("render")
        };
        assert_eq!(
            args.inputs.files,
            [PathBuf::from("a.yaml"), PathBuf::from("b")]
        );
        assert_eq!(args.out, PathBuf::from("out"));
    }

    #[test]
    fn usage_errors_exit_with_2() {
        for line in [
            &["gatehouse"][..],
            &["gatehouse", "render", "-f", "a.yaml"],
            &["gatehouse", "routes"],
            &["gatehouse", "routes", "-f", "a.yaml", "--set", "novalue"],
            &[
                "gatehouse",
                "validate",
                "-f",
                "a.yaml",
                "--admin-port",
                "99999",
            ],
            &["gatehouse", "publish", "-f", "a.yaml"],
            &["gatehouse", "routes", "-f", "a.yaml", "--unknown", "x"],
            // The node of an xDS bootstrap means nothing without --xds.
            &[
                "gatehouse",
                "render",
                "-f",
                "a.yaml",
                "-o",
                "out",
                "--node-id",
                "x",
            ],
            &[
                "gatehouse",
                "render",
                "-f",
                "a.yaml",
                "-o",
                "out",
                "--delta",
            ],
        ] {
            let err = Cli::try_parse_from(line).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{line:?}: {err}");
        }
    }

    #[test]
    fn check_commands_accept_the_output_options_as_before() {
        for command in ["validate", "routes"] {
            let line = [
                "gatehouse",
                command,
                "-f",
                "a.yaml",
                "-o",
                "out",
                "--live",
                "--envoy-admin",
                "127.0.0.1:9901",
            ];
            assert!(Cli::try_parse_from(line).is_ok(), "{command}");
        }
    }
}
