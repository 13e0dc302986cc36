//! Two Envoys sharing one limit on the quota path, each through its own
//! gatehouse-ratelimit replica, the replicas sharing one Redis: what the
//! Envoys admit together per window of the rule, and what a burst on one
//! Envoy does to the other. The bound checked is the one
//! `ratelimit/README.md` derives ("How close to the limit").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use e2e::{Echo, Envoy, RateLimitService, Redis, poll};
use tokio::time::Instant;

/// 600 a minute for every request on `/generic`, shared by both Envoys.
const LIMIT: u32 = 600;
const UNIT_SECS: u32 = 60;
const CONFIG: &str = "
domain: edge
descriptors:
  - key: generic_key
    value: generic
    rate_limit: { unit: minute, requests_per_unit: 600 }
";

/// Requests sent at a steady rate (changeable while it runs), each answer
/// recorded with when it was sent.
struct Paced {
    rate: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, u16)>>,
}

impl Paced {
    fn start(url: String, per_second: u32) -> Self {
        let rate = Arc::new(AtomicU32::new(per_second));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (rate, stop) = (rate.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    next += Duration::from_secs(1) / rate.load(Ordering::Relaxed).max(1);
                    tokio::time::sleep_until(next).await;
                    let (client, url, tx) = (client.clone(), url.clone(), tx.clone());
                    let sent = Instant::now();
                    // Open loop: a slow answer never delays the next request.
                    tokio::spawn(async move {
                        let status = client
                            .get(&url)
                            .send()
                            .await
                            .map_or(0, |r| r.status().as_u16());
                        let _ = tx.send((sent, status));
                    });
                }
                drop(tx);
                let mut answers = Vec::new();
                while let Some(answer) = rx.recv().await {
                    answers.push(answer);
                }
                answers
            })
        };
        Self { rate, stop, task }
    }

    fn set_rate(&self, per_second: u32) {
        self.rate.store(per_second, Ordering::Relaxed);
    }

    async fn finish(self) -> anyhow::Result<Vec<(Instant, u16)>> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

const REPORTS: &str = "gatehouse_ratelimit_quota_reports_total";

/// Waits until `rls` has answered `count` usage reports in all.
async fn reports_answered(rls: &RateLimitService, count: f64) -> anyhow::Result<()> {
    poll::until(
        &format!("{count} usage reports answered"),
        Duration::from_secs(30),
        || async { Ok((rls.metric(REPORTS).await? >= count).then_some(())) },
    )
    .await
}

/// Answers with `status` among those sent in `[from, to)`.
fn count(answers: &[(Instant, u16)], from: Instant, to: Instant, status: u16) -> usize {
    answers
        .iter()
        .filter(|(sent, s)| *s == status && *sent >= from && *sent < to)
        .count()
}

#[tokio::test]
async fn two_envoys_share_one_limit_through_redis_and_a_burst_takes_nothing_from_the_other()
-> anyhow::Result<()> {
    let redis = Redis::start().await?;
    let echo = Echo::start().await?;
    let mut replicas = Vec::new();
    let mut envoys = Vec::new();
    for _ in 0..2 {
        let rls = RateLimitService::builder()
            .file("edge.yaml", CONFIG)
            .redis(&redis)
            .start()
            .await?;
        envoys.push(
            Envoy::from_template("ratelimit-quota.yaml")?
                .upstream(&echo)
                .ratelimit(&rls)
                .start()
                .await?,
        );
        replicas.push(rls);
    }

    // Steady load, each Envoy asking 10/s: twice the limit of 10/s together.
    let a = Paced::start(envoys[0].url("/generic"), 10);
    let b = Paced::start(envoys[1].url("/generic"), 10);
    // Both replicas have answered a bucket's first report (no demand
    // measured: an even share) and two measured ones: every Envoy holds the
    // split of both demands from then on.
    for rls in &replicas {
        reports_answered(rls, 3.0).await?;
    }

    // One whole window of the rule, measured (this wait is the measurement).
    let window_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(u64::from(UNIT_SECS))).await;
    let window_end = Instant::now();

    // B drops to 3/s, under its even share, and two reports of each Envoy
    // let the split follow (B's bucket, drained at 10/s, refills meanwhile).
    b.set_rate(3);
    for rls in &replicas {
        let before = rls.metric(REPORTS).await?;
        reports_answered(rls, before + 2.0).await?;
    }
    // Then a burst on A: B keeps what it asks (plus headroom), A gets the
    // rest, through two more reports of each.
    let burst_start = Instant::now();
    a.set_rate(50);
    for rls in &replicas {
        let before = rls.metric(REPORTS).await?;
        reports_answered(rls, before + 2.0).await?;
    }
    let burst_end = Instant::now();
    let a = a.finish().await?;
    let b = b.finish().await?;

    for (name, answers) in [("A", &a), ("B", &b)] {
        let others: Vec<_> = answers
            .iter()
            .filter(|(_, s)| *s != 200 && *s != 429)
            .collect();
        assert!(
            others.is_empty(),
            "Envoy {name} answered neither 200 nor 429: {others:?}"
        );
    }

    // The bound of ratelimit/README.md for Envoys whose demand stays above
    // their share: each Envoy's bucket holds one second of its share
    // (ceil(300 / 60) = 5 tokens), so a window admits at most the limit plus
    // what the buckets held when it began, and at least the limit less the
    // fraction of a token each bucket holds when it ends.
    let burst_per_envoy = (LIMIT / 2).div_ceil(UNIT_SECS) as usize;
    let admitted =
        count(&a, window_start, window_end, 200) + count(&b, window_start, window_end, 200);
    let (most, least) = (LIMIT as usize + 2 * burst_per_envoy, LIMIT as usize - 2);
    println!(
        "two Envoys, {LIMIT} a minute: {admitted} admitted in one minute (bound {least}..={most})"
    );
    assert!(
        (least..=most).contains(&admitted),
        "{admitted} admitted in one window of {UNIT_SECS} s, outside {least}..={most}"
    );
    // Both Envoys were held back: each asked twice what it got.
    for (name, answers) in [("A", &a), ("B", &b)] {
        assert!(
            count(answers, window_start, window_end, 429) > 0,
            "Envoy {name} was never limited in the window"
        );
    }

    // During A's burst, B asked for less than an even share and was never
    // refused: A's burst took nothing from it, not even for one report.
    let b_refused = count(&b, burst_start, burst_end, 429);
    let b_admitted = count(&b, burst_start, burst_end, 200);
    let a_refused = count(&a, burst_start, burst_end, 429);
    println!(
        "burst on A ({a_refused} refused), B at 3/s: {b_admitted} admitted, {b_refused} refused over {:?}",
        burst_end - burst_start
    );
    assert_eq!(b_refused, 0, "B lost requests to A's burst");
    assert!(b_admitted > 0);
    assert!(a_refused > 0, "A's burst was never limited");
    Ok(())
}
