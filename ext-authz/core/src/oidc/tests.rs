//! Which part of the flow a request is for, and the shared answers.

use super::fixtures::{Req, body, filter, headers, status};
use super::*;

const CALLBACK: &str = "/.gatehouse/oidc/callback";
const LOGOUT: &str = "/.gatehouse/oidc/logout";
const BACKCHANNEL: &str = "/.gatehouse/oidc/backchannel-logout";

#[test]
fn the_flow_paths_are_matched_exactly_without_their_query() {
    let f = filter("");
    let is = |path: &str, expected: Route<'static>| {
        assert_eq!(
            route(&f, &Req::browser(path).view(), true, false),
            expected,
            "{path}"
        );
    };
    is(CALLBACK, Route::Callback);
    is(&format!("{CALLBACK}?code=c&state=s"), Route::Callback);
    is(LOGOUT, Route::Logout);
    is(&format!("{LOGOUT}#x"), Route::Logout);
    is(BACKCHANNEL, Route::BackchannelLogout);
    for other in [
        "/",
        "/app",
        &format!("{CALLBACK}/"),
        &format!("{CALLBACK}x"),
        "/.gatehouse/oidc/CALLBACK",
        &format!("/x{LOGOUT}"),
        &format!("/app?next={CALLBACK}"),
    ] {
        is(other, Route::Session);
    }
}

#[test]
fn without_a_session_store_there_is_no_back_channel_logout() {
    let f = filter("");
    let req = Req::post(BACKCHANNEL, "logout_token=x");
    assert_eq!(route(&f, &req.view(), false, false), Route::Session);
    assert_eq!(
        route(&f, &req.view(), true, false),
        Route::BackchannelLogout
    );
}

#[test]
fn a_bearer_header_is_checked_only_where_bearer_tokens_are_configured() {
    let f = filter("");
    let req = Req::api("/app").header("authorization", "Bearer abc.def.ghi");
    assert_eq!(route(&f, &req.view(), false, false), Route::Session);
    assert_eq!(
        route(&f, &req.view(), false, true),
        Route::Bearer("abc.def.ghi")
    );
    let basic = Req::api("/app").header("authorization", "Basic YTpi");
    assert_eq!(
        route(&f, &basic.view(), false, true),
        Route::Session,
        "another scheme is no bearer token"
    );
}

#[test]
fn a_malformed_bearer_header_is_refused_not_read_as_no_token() {
    let f = filter("");
    for bad in ["Bearer", "Bearer a b", "Bearer a, Bearer b"] {
        let req = Req::api("/app").header("authorization", bad);
        assert_eq!(
            route(&f, &req.view(), false, true),
            Route::InvalidBearer,
            "{bad}"
        );
    }
    let v = invalid_token();
    assert_eq!(status(&v), 401);
    assert_eq!(
        headers(&v, "www-authenticate"),
        ["Bearer error=\"invalid_token\", error_description=\"the token is not valid\""]
    );
}

#[test]
fn the_flow_paths_come_before_a_bearer_header() {
    let f = filter("");
    let req = Req::post(LOGOUT, "").header("authorization", "Bearer junk junk");
    assert_eq!(route(&f, &req.view(), true, true), Route::Logout);
}

#[test]
fn a_store_outage_is_503_never_a_pass_or_a_login() {
    let program = store_unavailable(&Req::api("/app").view());
    assert_eq!(status(&program), 503);
    assert!(body(&program).contains(r#""code":"session_store_unavailable""#));
    let browser = store_unavailable(&Req::browser("/app").view());
    assert_eq!(status(&browser), 503);
    assert!(body(&browser).contains(r#"data-code="session_store_unavailable""#));
    assert_eq!(headers(&browser, "cache-control"), ["no-store"]);
}

#[test]
fn no_random_source_is_503_and_sets_nothing() {
    let v = no_random();
    assert_eq!(status(&v), 503);
    assert!(headers(&v, "set-cookie").is_empty());
}

#[test]
fn cookies_go_on_the_denial_or_on_the_upstreams_response() {
    let denied = Answer::from(redirect("/x", Vec::new())).with_cookie("a=1".into());
    assert_eq!(headers(&denied.verdict, "set-cookie"), ["a=1"]);
    assert!(denied.response_headers.is_empty());
    let allowed = Answer::from(Verdict::Allow {
        set: Vec::new(),
        remove: Vec::new(),
        remove_query: Vec::new(),
    })
    .with_cookie("a=1".into());
    assert_eq!(
        allowed.response_headers,
        [("set-cookie".to_owned(), "a=1".to_owned())]
    );
}

#[test]
fn our_cookies_are_http_only_and_cleared_with_max_age_zero() {
    let f = filter("      cookie_domain: app.example\n");
    assert_eq!(login_cookie_name(&f), "gatehouse_session_login");
    assert_eq!(
        clear_session_cookie(&f),
        "gatehouse_session=; Path=/; HttpOnly; SameSite=Lax; Secure; Domain=app.example; Max-Age=0"
    );
    assert!(clear_login_cookie(&f).starts_with("gatehouse_session_login=; "));
    assert!(clear_login_cookie(&f).ends_with("; Max-Age=0"));
}
