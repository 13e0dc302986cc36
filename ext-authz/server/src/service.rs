//! The gRPC side: Envoy's `envoy.service.auth.v3.Authorization/Check`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use gatehouse_authz_core::{CheckInput, FILTER_EXTENSION, Selected, Verdict};

use crate::load::LiveFilters;
use crate::metrics::Metrics;
use gatehouse_authz_core::oidc::instead::{INSTEAD_OF_REDIRECT_EXTENSION, InsteadOfRedirect};
use gatehouse_authz_core::oidc::{Answer, HttpView};

/// Decides checks against the live filters.
#[derive(Debug)]
pub struct CheckHandler {
    /// The filters, swapped on reload.
    pub live: Arc<LiveFilters>,
    /// Where outcomes are counted.
    pub metrics: Arc<Metrics>,
}

impl CheckHandler {
    /// One check: the request's attributes in, Envoy's answer out.
    pub async fn check(&self, request: &CheckRequest) -> CheckResponse {
        let started = Instant::now();
        let attributes = request.attributes.as_ref();
        let http = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        let no_headers = HashMap::new();
        let filter = attributes.and_then(|a| a.context_extensions.get(FILTER_EXTENSION));
        let input = CheckInput {
            filter: filter.map(String::as_str),
            path: http.map_or("", |h| h.path.as_str()),
            headers: http.map_or(&no_headers, |h| &h.headers),
        };
        let instead = attributes
            .and_then(|a| a.context_extensions.get(INSTEAD_OF_REDIRECT_EXTENSION))
            .map(|text| InsteadOfRedirect::parse(text));
        let snapshot = self.live.current();
        let answer = match snapshot.filters.select(&input) {
            Selected::Done(verdict) => Answer::from(verdict),
            Selected::Oidc { name, .. } => match (snapshot.oidc.get(name), instead) {
                (_, Some(Err(e))) => {
                    // The renderer writes it; a broken one fails closed.
                    tracing::warn!(error = %e, "the route's {INSTEAD_OF_REDIRECT_EXTENSION} does not parse");
                    Answer::from(Verdict::deny(
                        500,
                        "bad_route",
                        "the route's settings do not parse",
                    ))
                }
                (Some(runtime), instead) => {
                    let instead = instead.and_then(Result::ok);
                    let view = HttpView {
                        body: http.map_or("", |h| h.body.as_str()),
                        method: http.map_or("GET", |h| h.method.as_str()),
                        host: http.map_or("", |h| h.host.as_str()),
                        path: input.path,
                        headers: input.headers,
                        instead_of_redirect: instead.as_ref(),
                    };
                    runtime.check(&view, &self.metrics).await
                }
                (None, _) => Answer::from(Verdict::deny(
                    500,
                    "unknown_filter",
                    "the route names no configured filter",
                )),
            },
        };
        let verdict = &answer.verdict;
        let response = to_response(verdict, &answer.response_headers);
        self.metrics.observe(verdict, started.elapsed());
        if let Verdict::Deny { status, .. } = verdict {
            // Never the key or any header value: the filter and the status say enough.
            tracing::debug!(filter = input.filter, status, "check denied");
        }
        response
    }
}

fn header(name: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            value: value.to_owned(),
            ..HeaderValue::default()
        }),
        append_action: action.into(),
        ..HeaderValueOption::default()
    }
}

/// Request headers replace any client copy: an identity header is ours
/// alone. Response headers add (two `Set-Cookie`s are two cookies).
fn overwrite(name: &str, value: &str) -> HeaderValueOption {
    header(name, value, HeaderAppendAction::OverwriteIfExistsOrAdd)
}

fn append(name: &str, value: &str) -> HeaderValueOption {
    header(name, value, HeaderAppendAction::AppendIfExistsOrAdd)
}

/// A verdict in Envoy's terms; `response_headers` go on the upstream's
/// response when allowed.
pub fn to_response(verdict: &Verdict, response_headers: &[(String, String)]) -> CheckResponse {
    match verdict {
        Verdict::Allow {
            set,
            remove,
            remove_query,
        } => CheckResponse {
            status: Some(rpc::Status {
                code: rpc::Code::Ok.into(),
                ..rpc::Status::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: set.iter().map(|(k, v)| overwrite(k, v)).collect(),
                headers_to_remove: remove.clone(),
                query_parameters_to_remove: remove_query.clone(),
                response_headers_to_add: response_headers
                    .iter()
                    .map(|(k, v)| append(k, v))
                    .collect(),
                ..OkHttpResponse::default()
            })),
            ..CheckResponse::default()
        },
        Verdict::Deny {
            status,
            headers,
            body,
        } => CheckResponse {
            status: Some(rpc::Status {
                code: if *status == 401 {
                    rpc::Code::Unauthenticated
                } else {
                    rpc::Code::PermissionDenied
                }
                .into(),
                ..rpc::Status::default()
            }),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: i32::from(*status),
                }),
                headers: headers.iter().map(|(k, v)| append(k, v)).collect(),
                body: body.clone(),
            })),
            ..CheckResponse::default()
        },
    }
}

/// The tonic service around a [`CheckHandler`].
#[derive(Debug, Clone)]
pub struct AuthzService(pub Arc<CheckHandler>);

#[tonic::async_trait]
impl Authorization for AuthzService {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.0.check(request.get_ref()).await))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allow_overwrites_identity_headers_and_drops_the_key() {
        let response = to_response(
            &Verdict::Allow {
                set: vec![("x-gatehouse-client".into(), "acme".into())],
                remove: vec!["x-api-key".into()],
                remove_query: vec!["api_key".into()],
            },
            &[],
        );
        assert_eq!(response.status.unwrap().code, 0);
        let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
            panic!("ok response expected")
        };
        assert_eq!(ok.headers[0].header.as_ref().unwrap().value, "acme");
        assert_eq!(
            ok.headers[0].append_action,
            i32::from(HeaderAppendAction::OverwriteIfExistsOrAdd)
        );
        assert_eq!(ok.headers_to_remove, ["x-api-key"]);
        assert_eq!(ok.query_parameters_to_remove, ["api_key"]);
    }

    #[test]
    fn a_deny_carries_status_and_body() {
        let response = to_response(
            &Verdict::Deny {
                status: 401,
                headers: vec![("content-type".into(), "application/json".into())],
                body: "{}".into(),
            },
            &[],
        );
        assert_eq!(
            response.status.unwrap().code,
            i32::from(rpc::Code::Unauthenticated)
        );
        let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
            panic!("denied response expected")
        };
        assert_eq!(denied.status.unwrap().code, 401);
        assert_eq!(denied.body, "{}");
    }
}
