use super::*;
use crate::oidc::fixtures::{Req, filter, headers, status};

const LOGOUT: &str = "/.gatehouse/oidc/logout";

fn from_here() -> Req {
    Req::post(LOGOUT, "").header("sec-fetch-site", "same-origin")
}

#[test]
fn a_same_origin_post_may_log_out() {
    assert_eq!(check(&from_here().view()), Ok(()));
    assert_eq!(check(&from_here().method("post").view()), Ok(()));
    let by_origin = Req::post(LOGOUT, "").header("origin", "https://APP.example");
    assert_eq!(check(&by_origin.view()), Ok(()), "Origin, host case aside");
}

#[test]
fn a_get_cannot_log_out() {
    for method in ["GET", "HEAD", "PUT", "DELETE"] {
        let refused = check(&from_here().method(method).view()).unwrap_err();
        assert_eq!(status(&refused), 405, "{method}");
    }
}

#[test]
fn a_foreign_origin_cannot_log_out() {
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("sec-fetch-site", "none"),
        ("origin", "https://evil.example"),
        ("origin", "https://app.example.evil.example"),
        ("origin", "https://evil.example@app.example"),
        ("origin", "null"),
        ("origin", "app.example"),
    ] {
        let req = Req::post(LOGOUT, "").header(name, value);
        let refused = check(&req.view()).unwrap_err();
        assert_eq!(status(&refused), 403, "{name}: {value}");
    }
    let refused = check(&Req::post(LOGOUT, "").view()).unwrap_err();
    assert_eq!(status(&refused), 403, "neither header: not from here");
}

#[test]
fn sec_fetch_site_outweighs_origin() {
    let headers = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>()
    };
    assert!(!is_from_this_site(
        &headers(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://app.example")
        ]),
        "app.example"
    ));
    assert!(is_from_this_site(
        &headers(&[("sec-fetch-site", "same-origin")]),
        "app.example"
    ));
    assert!(is_from_this_site(
        &headers(&[("origin", "http://app.example:8080")]),
        "app.example:8080"
    ));
    assert!(!is_from_this_site(
        &headers(&[("origin", "http://app.example:8080")]),
        "app.example"
    ));
}

#[test]
fn rp_initiated_logout_goes_to_the_idp_with_the_id_token_hint() {
    let f = filter("      post_logout_redirect_url: https://app.example/bye?x=1\n");
    assert_eq!(
        location(&f, Some("https://idp.example/logout"), Some("a.b.c")),
        "https://idp.example/logout?id_token_hint=a.b.c&client_id=app&post_logout_redirect_uri=https%3A%2F%2Fapp.example%2Fbye%3Fx%3D1"
    );
    assert_eq!(
        location(&f, Some("https://idp.example/logout?tenant=t"), Some("a b")),
        "https://idp.example/logout?tenant=t&id_token_hint=a%20b&client_id=app&post_logout_redirect_uri=https%3A%2F%2Fapp.example%2Fbye%3Fx%3D1"
    );
    let no_after = filter("");
    assert_eq!(
        location(&no_after, Some("https://idp.example/logout"), Some("t")),
        "https://idp.example/logout?id_token_hint=t&client_id=app"
    );
}

#[test]
fn without_a_session_an_endpoint_or_rp_logout_the_logout_is_local() {
    let f = filter("      post_logout_redirect_url: https://app.example/bye\n");
    assert_eq!(
        location(&f, Some("https://idp.example/logout"), None),
        "https://app.example/bye"
    );
    assert_eq!(location(&f, None, Some("t")), "https://app.example/bye");
    let local = filter(
        "      post_logout_redirect_url: https://app.example/bye\n      rp_initiated_logout: false\n",
    );
    assert_eq!(
        location(&local, Some("https://idp.example/logout"), Some("t")),
        "https://app.example/bye"
    );
    assert_eq!(location(&filter(""), None, None), "/");
}

#[test]
fn logged_out_redirects_and_clears_the_cookie() {
    let v = logged_out("/", vec!["gatehouse_session=; Max-Age=0".into()]);
    assert_eq!(status(&v), 302);
    assert_eq!(headers(&v, "location"), ["/"]);
    assert_eq!(headers(&v, "set-cookie"), ["gatehouse_session=; Max-Age=0"]);
}
