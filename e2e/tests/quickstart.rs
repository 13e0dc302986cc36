//! `make run`'s entry point, headless: the `quickstart` binary starts the
//! stack, the three examples it prints work, and Ctrl-C (SIGINT) stops every
//! process it started.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use e2e::Echoed;

/// The printed lines up to "Ctrl-C stops everything.", read on a thread
/// that goes on reading (so the binary never writes to a closed pipe).
fn read_banner(
    stdout: std::process::ChildStdout,
) -> std::sync::mpsc::Receiver<Result<Vec<String>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    let done = l.starts_with("Ctrl-C stops everything.");
                    lines.push(l);
                    if done {
                        let _ = tx.send(Ok(std::mem::take(&mut lines)));
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
            }
        }
        let _ = tx.send(Err(anyhow!(
            "the quickstart ended before it was up: {lines:?}"
        )));
    });
    rx
}

/// The text after `label` on its banner line.
fn field<'a>(banner: &'a [String], label: &str) -> Result<&'a str> {
    banner
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(str::trim)
        .with_context(|| format!("no {label:?} line in {banner:?}"))
}

/// The first `http://` URL in `text`.
fn url_in(text: &str) -> Result<&str> {
    let start = text.find("http://").context("no URL")?;
    Ok(text[start..]
        .split(|c: char| c.is_whitespace() || c == ';')
        .next()
        .unwrap_or_default())
}

fn alive(pid: u32) -> bool {
    // Signal 0 only asks whether the process exists.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test]
async fn make_run_starts_the_stack_its_examples_work_and_ctrl_c_stops_it() -> Result<()> {
    the_stack_works(&[]).await
}

/// `make run-xds`: the same examples work with Envoy and the two services
/// configured by `gatehouse serve`, and Envoy runs the server's version.
#[tokio::test]
async fn make_run_xds_serves_the_same_stack_from_the_control_plane() -> Result<()> {
    the_stack_works(&["--xds"]).await
}

async fn the_stack_works(args: &[&str]) -> Result<()> {
    let xds = args.contains(&"--xds");
    let bin = e2e::paths::service_bin("quickstart")?;
    let mut child = Command::new(bin)
        .args(args)
        .env("GATEHOUSE_LISTEN_PORT", "0")
        .env("GATEHOUSE_ADMIN_PORT", "0")
        .env("GATEHOUSE_DIAG_PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("the quickstart's stdout")?;
    let banner = tokio::task::spawn_blocking(move || {
        read_banner(stdout).recv_timeout(Duration::from_secs(120))
    })
    .await??
    .map_err(|e| anyhow!("{e}"));
    let banner = match banner {
        Ok(b) => b,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let pids: Vec<u32> = field(&banner, "processes:")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    assert_eq!(
        pids.len(),
        if xds { 6 } else { 5 },
        "Envoy, the two services, the IdP, gatehouse diag (and gatehouse serve)"
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    // 1. The protected page asks for a login, and after it shows the user.
    let app = url_in(field(&banner, "single sign-on:")?)?.to_owned();
    let issuer = field(&banner, "demo IdP:")?.to_owned();
    let r = client
        .get(&app)
        .header("accept", "text/html")
        .send()
        .await?;
    assert_eq!(r.status(), 302);
    let origin = app.trim_end_matches("/app/");
    let callback = e2e::idp::sign_in_at(
        &issuer,
        &client,
        &e2e::idp::location(&r),
        &format!("{origin}/.gatehouse/oidc/"),
    )
    .await?;
    let back = client.get(&callback).send().await?;
    assert_eq!(back.status(), 302);
    let first = client.get(&app).send().await?;
    // The SSO fast path is on: the full check set the identity ticket the
    // gatehouse-session filter verifies in Envoy from the next request on.
    assert!(
        first.headers().get_all("set-cookie").iter().any(|v| v
            .to_str()
            .is_ok_and(|v| v.starts_with("gatehouse_sso_ticket="))),
        "{:?}",
        first.headers()
    );
    let page: Echoed = first.json().await?;
    assert_eq!(page.header("x-gatehouse-user"), Some("alice"));
    let again: Echoed = client.get(&app).send().await?.json().await?;
    assert_eq!(again.header("x-gatehouse-user"), Some("alice"));
    assert!(
        !again
            .header("cookie")
            .unwrap_or_default()
            .contains("gatehouse_"),
        "our cookies stay at the edge"
    );

    // 2. The curl line: its token passes, and the user reaches the API.
    let line = field(&banner, "JWT API:")?;
    let bearer = line
        .split('\'')
        .nth(1)
        .and_then(|h| h.strip_prefix("authorization: "))
        .context("no authorization header in the curl line")?;
    let api = url_in(line)?;
    let seen: Echoed = client
        .get(api)
        .header("authorization", bearer)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(seen.header("x-gatehouse-user"), Some("demo-user"));
    assert!(seen.upstream.starts_with("demo"), "{}", seen.upstream);
    assert_eq!(client.get(api).send().await?.status(), 401);

    // 3. The rate-limited path: five a minute, then 429.
    let limited = url_in(field(&banner, "rate limit:")?)?;
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(client.get(limited).send().await?.status().as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 200, 200, 429]);

    // 4. The diagnostics page shows the routes; the portal lists the
    // catalog API's operations, fetched through the edge.
    let diag = url_in(field(&banner, "diagnostics:")?)?;
    let page = client.get(diag).send().await?.text().await?;
    assert!(page.contains("prefix /limited/"), "{page}");
    let portal = url_in(field(&banner, "API portal:")?)?;
    let page = client.get(portal).send().await?.text().await?;
    assert!(
        page.contains("Demo catalog") && page.contains("List the items"),
        "{page}"
    );

    // 5. With --xds, Envoy runs (has ACKed) the control plane's version,
    // and nothing was refused.
    if xds {
        let status: serde_json::Value = client
            .get(url_in(field(&banner, "control plane:")?)?)
            .send()
            .await?
            .json()
            .await?;
        let version = status["versions"]["default"].as_str().unwrap_or_default();
        assert!(!version.is_empty(), "{status}");
        let node = &status["nodes"]["quickstart"];
        assert_eq!(node["connected"], true, "{status}");
        assert_eq!(
            node["acked"]["type.googleapis.com/envoy.config.listener.v3.Listener"], version,
            "{status}"
        );
        assert_eq!(status["refused"], serde_json::json!({}), "{status}");
    } else {
        assert!(field(&banner, "control plane:").is_err());
    }

    // Ctrl-C: the binary stops everything and exits.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(status.success(), "the quickstart exited with {status}");
    let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    if !left.is_empty() {
        bail!("processes left after Ctrl-C: {left:?}");
    }
    Ok(())
}
