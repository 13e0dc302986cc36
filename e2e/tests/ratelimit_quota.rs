//! gatehouse-ratelimit as a Rate Limit Quota Service: real Envoy's
//! `rate_limit_quota` filter enforcing the assignments the service derives
//! from the same YAML rules as the per-request API.

use std::time::Duration;

use e2e::{Echo, Envoy, RateLimitService, poll};

const EDGE: &str = "
domain: edge
descriptors:
  - key: generic_key
    value: generic
    rate_limit: { unit: hour, requests_per_unit: 5 }
  - key: user
    rate_limit: { unit: hour, requests_per_unit: 5 }
";

#[tokio::test]
async fn envoy_enforces_the_assignment_of_the_bucket_a_request_lands_in() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let rls = RateLimitService::builder()
        .file("edge.yaml", EDGE)
        .start()
        .await?;
    let envoy = Envoy::from_template("ratelimit-quota.yaml")?
        .upstream(&echo)
        .ratelimit(&rls)
        .start()
        .await?;
    let status = |path: &'static str, user: &'static str| {
        let request = envoy.get(path).header("x-user", user).send();
        async move { anyhow::Ok(request.await?.status().as_u16()) }
    };

    // Until the first assignment arrives, the bucket allows all (its
    // no_assignment_behavior); once it holds 5 an hour, it runs dry.
    let allowed = std::cell::Cell::new(0_u32);
    poll::until(
        "the assignment of /generic's bucket denies a request",
        Duration::from_secs(20),
        || async {
            match status("/generic", "ursula").await? {
                200 => {
                    allowed.set(allowed.get() + 1);
                    Ok(None)
                }
                429 => Ok(Some(())),
                other => anyhow::bail!("unexpected status {other}"),
            }
        },
    )
    .await?;
    let allowed = allowed.get();
    assert!(
        allowed >= 5,
        "the bucket admitted {allowed}, fewer than its 5 tokens"
    );
    for n in 0..10 {
        assert_eq!(
            status("/generic", "ursula").await?,
            429,
            "request {n} after the bucket ran dry"
        );
    }
    // Another descriptor value is another bucket, with tokens of its own.
    assert_eq!(status("/user", "victor").await?, 200);
    Ok(())
}
