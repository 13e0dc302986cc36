//! What a limit adds to a request it matched (a Gatehouse extension of the
//! `rate_limit` block, for Ambassador's RateLimit `injectRequestHeaders`,
//! `injectResponseHeaders` and `errorResponse`): headers for the upstream
//! request when the request goes on, headers for the client's response
//! either way, and the headers and body of the 429 when this limit is over.
//! Values are templates ([`gatehouse_template_core`]) over `.RetryAfter`,
//! `.RateLimitResponse.OverallCode` and, in the 429, `.status_code` and
//! `.message`.

use gatehouse_template_core::{Field, Scope, Template, go_duration};
use serde::Deserialize;
use serde_json::Value;

use crate::config::ConfigError;
use crate::limiter::Code;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeader {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOverLimit {
    #[serde(default)]
    headers: Vec<RawHeader>,
    #[serde(default)]
    body: Option<String>,
}

/// A limit's compiled additions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answers {
    request: Vec<(String, Template)>,
    response: Vec<(String, Template)>,
    over_headers: Vec<(String, Template)>,
    over_body: Option<Template>,
}

/// The message of a 429's `.message`.
pub const OVER_LIMIT_MESSAGE: &str = "too many requests";

/// What the limits that matched a request add to it, rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Added {
    /// Headers for the upstream request (only when it goes on).
    pub request: Vec<(String, String)>,
    /// Headers for the client's response.
    pub response: Vec<(String, String)>,
    /// The 429's body.
    pub body: Option<String>,
}

impl Answers {
    /// Compiles the raw fields of `at` (a `rate_limit` path).
    pub(crate) fn compile(
        file: &str,
        at: &str,
        request: Vec<RawHeader>,
        response: Vec<RawHeader>,
        over_limit: Option<RawOverLimit>,
    ) -> Result<Option<Self>, ConfigError> {
        let headers = |raws: Vec<RawHeader>, field: &str, scope: Scope| {
            raws.into_iter()
                .enumerate()
                .map(|(i, h)| {
                    let path = format!("{at}.{field}[{i}]");
                    let name = h.name.to_ascii_lowercase();
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    {
                        return Err(ConfigError::new(
                            file,
                            &format!("{path}.name"),
                            format!("{:?} is not a header name", h.name),
                        ));
                    }
                    let t = Template::parse(&h.value, scope)
                        .map_err(|m| ConfigError::new(file, &format!("{path}.value"), m))?;
                    Ok((name, t))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let (over_headers, over_body) = match over_limit {
            None => (Vec::new(), None),
            Some(o) => (
                headers(o.headers, "over_limit.headers", Scope::RateLimitError)?,
                o.body
                    .map(|b| Template::parse(&b, Scope::RateLimitError))
                    .transpose()
                    .map_err(|m| ConfigError::new(file, &format!("{at}.over_limit.body"), m))?,
            ),
        };
        let answers = Self {
            request: headers(request, "request_headers", Scope::RateLimit)?,
            response: headers(response, "response_headers", Scope::RateLimit)?,
            over_headers,
            over_body,
        };
        Ok((answers != Self::default()).then_some(answers))
    }

    /// Adds this limit's headers to `added`: request and response headers
    /// for a request whose overall code is `overall`, and, when this limit
    /// itself is `over` and no other limit has answered the 429 yet, the
    /// 429's headers and body. `retry_after` is the wait until every limit
    /// that is over allows again, seconds.
    pub fn add(&self, overall: Code, over: bool, retry_after: u64, added: &mut Added) {
        let code = match overall {
            Code::Ok => 1,
            Code::OverLimit => 2,
        };
        let value = |f: &Field| match f {
            Field::RetryAfter => Some(Value::from(go_duration(retry_after))),
            Field::OverallCode => Some(Value::from(code)),
            Field::StatusCode => Some(Value::from(429)),
            Field::Message => Some(Value::from(OVER_LIMIT_MESSAGE)),
            _ => None,
        };
        let render = |list: &[(String, Template)], out: &mut Vec<(String, String)>| {
            out.extend(
                list.iter()
                    .filter_map(|(n, t)| t.render(&value).map(|v| (n.clone(), v))),
            );
        };
        if overall == Code::Ok {
            render(&self.request, &mut added.request);
        }
        render(&self.response, &mut added.response);
        if over && overall == Code::OverLimit && added.body.is_none() {
            render(&self.over_headers, &mut added.response);
            added.body = Some(
                self.over_body
                    .as_ref()
                    .and_then(|t| t.render(&value))
                    .unwrap_or_default(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> RawHeader {
        RawHeader {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn headers_and_the_429_are_rendered_by_outcome() {
        let answers = Answers::compile(
            "f",
            "descriptors[0].rate_limit",
            vec![header("X-Limited-By", "per-user")],
            vec![header("x-retry", "{{ .RetryAfter }}")],
            Some(RawOverLimit {
                headers: vec![header("content-type", "application/json")],
                body: Some(
                    "{\"error\": {{ .message | json }}, \"status\": {{ .status_code }}}".into(),
                ),
            }),
        )
        .unwrap()
        .unwrap();
        let mut within = Added::default();
        answers.add(Code::Ok, false, 0, &mut within);
        assert_eq!(
            within.request,
            [("x-limited-by".to_owned(), "per-user".to_owned())]
        );
        assert_eq!(within.response, [("x-retry".to_owned(), "0s".to_owned())]);
        assert_eq!(within.body, None);

        let mut over = Added::default();
        answers.add(Code::OverLimit, true, 75, &mut over);
        assert!(over.request.is_empty(), "a refused request goes nowhere");
        assert_eq!(
            over.response,
            [
                ("x-retry".to_owned(), "1m15s".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned())
            ]
        );
        assert_eq!(
            over.body.as_deref(),
            Some("{\"error\": \"too many requests\", \"status\": 429}")
        );
        // Another limit over too: the first to answer keeps the body.
        answers.add(Code::OverLimit, true, 75, &mut over);
        assert_eq!(over.response.len(), 3);
    }

    #[test]
    fn errors_name_the_field() {
        let e = Answers::compile(
            "f",
            "d.rate_limit",
            vec![header("x", "{{ .token.Raw }}")],
            Vec::new(),
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("d.rate_limit.request_headers[0].value"),
            "{e}"
        );
        let e = Answers::compile(
            "f",
            "d.rate_limit",
            Vec::new(),
            vec![header("bad name", "x")],
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("response_headers[0].name"), "{e}");
        assert_eq!(
            Answers::compile("f", "d", Vec::new(), Vec::new(), None).unwrap(),
            None
        );
    }
}
