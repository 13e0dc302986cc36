//! The harness's own promises: parallel stacks never clash, no child outlives
//! its test, and a failing test shows Envoy's log.

use std::collections::BTreeSet;
use std::process::Command;

use e2e::process::processes_in_group;
use e2e::{Echo, Envoy, Redis};

#[tokio::test]
async fn parallel_envoys_get_distinct_ports_and_base_ids() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let mut starting = tokio::task::JoinSet::new();
    for _ in 0..4 {
        starting.spawn(Envoy::from_template("proxy.yaml")?.upstream(&echo).start());
    }
    let mut envoys = Vec::new();
    while let Some(started) = starting.join_next().await {
        envoys.push(started??);
    }

    let base_ids: BTreeSet<&str> = envoys.iter().map(Envoy::base_id).collect();
    let ports: BTreeSet<u16> = envoys.iter().map(|e| e.ingress().port()).collect();
    assert_eq!(base_ids.len(), 4, "base ids: {base_ids:?}");
    assert!(!base_ids.contains(""), "every Envoy wrote its base id");
    assert_eq!(ports.len(), 4, "ports: {ports:?}");
    for envoy in &envoys {
        assert_eq!(envoy.get("/").send().await?.status(), 200);
    }
    Ok(())
}

#[tokio::test]
async fn no_child_outlives_its_handle() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let envoy = Envoy::from_template("proxy.yaml")?
        .upstream(&echo)
        .start()
        .await?;
    let redis = Redis::start().await?;
    let groups = [envoy.pid(), redis.pid()];
    for pgid in groups {
        assert!(
            !processes_in_group(pgid).is_empty(),
            "group {pgid} runs while its handle lives"
        );
    }
    drop(envoy);
    drop(redis);
    for pgid in groups {
        assert_eq!(
            processes_in_group(pgid),
            Vec::<u32>::new(),
            "group {pgid} left behind"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_panicking_test_leaves_no_child_behind() -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let echo = Echo::start().await.unwrap();
        let envoy = Envoy::from_template("proxy.yaml")
            .unwrap()
            .upstream(&echo)
            .start()
            .await
            .unwrap();
        let redis = Redis::start().await.unwrap();
        tx.send([envoy.pid(), redis.pid()]).unwrap();
        panic!("a test failing with its stack running");
    });
    let outcome = task.await;
    assert!(outcome.unwrap_err().is_panic());
    for pgid in rx.await? {
        assert_eq!(
            processes_in_group(pgid),
            Vec::<u32>::new(),
            "group {pgid} left behind"
        );
    }
    Ok(())
}

#[tokio::test]
async fn redis_answers_on_its_own_port() -> anyhow::Result<()> {
    let (a, b) = tokio::join!(Redis::start(), Redis::start());
    let (a, b) = (a?, b?);
    assert_ne!(a.port(), b.port());
    assert_ne!(a.port(), 6379, "never the machine's shared Redis");
    assert_eq!(e2e::redis::server_pid(a.port(), &None).await, Some(a.pid()));
    assert_eq!(e2e::redis::server_pid(b.port(), &None).await, Some(b.pid()));
    Ok(())
}

/// Set in the copy of this test binary that must fail on purpose.
const FAILING_COPY: &str = "GATEHOUSE_E2E_FAILING_COPY";

#[tokio::test]
async fn a_failing_test_prints_envoys_log() -> anyhow::Result<()> {
    if std::env::var_os(FAILING_COPY).is_some() {
        // The copy: a test that fails with Envoy running.
        let echo = Echo::start().await?;
        let envoy = Envoy::from_template("proxy.yaml")?
            .upstream(&echo)
            .start()
            .await?;
        let status = envoy.get("/").send().await?.status();
        assert_eq!(status, 418, "deliberate failure in the copy");
        return Ok(());
    }
    // The original: run this very test in a copy of the binary, as a failing test.
    let output = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "a_failing_test_prints_envoys_log",
            "--test-threads=1",
        ])
        .env(FAILING_COPY, "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "the copy must fail:\n{stdout}");
    assert!(
        stdout.contains("deliberate failure in the copy"),
        "{stdout}"
    );
    // libtest shows a failing test's captured output, which holds Envoy's log.
    assert!(stdout.contains("----- envoy (pid"), "{stdout}");
    assert!(stdout.contains("starting main dispatch loop"), "{stdout}");
    // And the copy's Envoy died with it.
    let pid: u32 = stdout
        .split("----- envoy (pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .expect("the log header names the pid");
    assert_eq!(processes_in_group(pid), Vec::<u32>::new());
    Ok(())
}
