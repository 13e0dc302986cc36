//! The subset of Go's `text/template` that Ambassador takes in its JWT
//! Filter's `injectRequestHeaders` and `errorResponse` and in a RateLimit's
//! `injectRequestHeaders`, `injectResponseHeaders` and `errorResponse`:
//! literal text around actions that print one value, optionally piped
//! through `json`. Pure, with only serde_json: gatehouse-jwt (wasm),
//! gatehouse-ratelimit and the renderer parse with this one module, so what
//! renders also loads.
//!
//! Supported actions (with the `{{-` / `-}}` whitespace trims and
//! `{{/* comments */}}`), by [`Scope`]:
//! - JWT request headers: `.token.Raw`, `.token.Signature`,
//!   `.token.Header.<field>`, `.token.Claims.<claim>` (dots reach into
//!   objects) and `.httpRequestHeader.Get "<name>"`;
//! - JWT error bodies and headers: `.status_code` (or `.httpStatus`),
//!   `.message`, `.request_id` (or `.requestId`) and
//!   `.httpRequestHeader.Get "<name>"`;
//! - OAuth2 session headers: the same of `.token` (the access token) and of
//!   `.idToken` (the ID token), and `.httpRequestHeader.Get "<name>"`;
//! - rate-limit headers: `.RetryAfter` and `.RateLimitResponse.OverallCode`;
//!   on a rate-limit error also `.status_code` and `.message` (the service
//!   sees no request headers, so none of those);
//! - `| json` or `| json "<indent>"` after any of them: the value as JSON.
//!
//! `printf "<format>" <value>` (or `<value> | printf "<format>"`) takes one
//! verb: `%s`, `%v`, `%q`, `%d`, `%f` or `%.Nf`. Anything else (`if`,
//! `hasKey`, variables, other fields) is refused when
//! the configuration is read, never at request time.

use serde_json::Value;

/// Where a template is used: which fields it may print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A header set from a verified token (`injectRequestHeaders`).
    Token,
    /// The answer to a refused request (`errorResponse`).
    Error,
    /// A header a rate limit adds (`injectRequestHeaders`,
    /// `injectResponseHeaders` of a RateLimit's limit).
    RateLimit,
    /// The answer when a limit is over (a RateLimit's `errorResponse`).
    RateLimitError,
    /// A header set from an OAuth2 session (the OAuth2 Filter's
    /// `injectRequestHeaders`): `.token` is the access token, `.idToken`
    /// the ID token.
    OAuth2,
}

/// A value a template prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The token as the client sent it.
    TokenRaw,
    /// The token's signature segment (base64url).
    TokenSignature,
    /// A field of the token's JOSE header.
    TokenHeader(Vec<String>),
    /// A claim of the verified token.
    Claim(Vec<String>),
    /// The ID token as the IdP sent it.
    IdTokenRaw,
    /// The ID token's signature segment.
    IdTokenSignature,
    /// A field of the ID token's JOSE header.
    IdTokenHeader(Vec<String>),
    /// A claim of the ID token.
    IdTokenClaim(Vec<String>),
    /// A request header by lowercase name; absent prints as empty, as Go's
    /// `http.Header.Get` does.
    RequestHeader(String),
    /// The answer's HTTP status.
    StatusCode,
    /// Why the request was refused.
    Message,
    /// Envoy's `x-request-id` of the request.
    RequestId,
    /// How long until every limit that is over allows again, as Go prints a
    /// duration (`0s`, `45s`, `1m30s`).
    RetryAfter,
    /// The rate-limit service's overall code: 1 within the limits, 2 over.
    OverallCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Print { field: Field, format: Format },
}

/// How a printed value is written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Format {
    /// As it is ([`plain`]).
    Plain,
    /// `| json`, with the indent of nested lines when given.
    Json(String),
    /// `printf "<text %verb text>"`: one verb, text around it.
    Printf {
        before: String,
        verb: Verb,
        after: String,
    },
}

/// The `printf` verbs taken: `%s`, `%v`, `%q`, `%d`, `%f` / `%.Nf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Plain,
    Quoted,
    Integer,
    Float(Option<usize>),
}

/// A parsed template. Build it with [`Template::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text` for `scope`.
    ///
    /// # Errors
    /// A message naming the first action that is not supported, or the
    /// unclosed `{{`.
    pub fn parse(text: &str, scope: Scope) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut trim_next = false;
        while let Some(open) = rest.find("{{") {
            let mut literal = &rest[..open];
            if trim_next {
                literal = literal.trim_start();
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!(
                    "{:?}: an action opens with {{{{ and is not closed",
                    clip(&rest[open..])
                )
            })?;
            let mut inner = &after[..close];
            if let Some(i) = inner.strip_prefix("- ") {
                literal = literal.trim_end();
                inner = i;
            }
            trim_next = false;
            if let Some(i) = inner.strip_suffix(" -") {
                trim_next = true;
                inner = i;
            }
            push_text(&mut parts, literal);
            let action = inner.trim();
            if !(action.starts_with("/*") && action.ends_with("*/")) {
                parts.push(action_part(action, scope)?);
            }
            rest = &after[close + 2..];
        }
        push_text(&mut parts, if trim_next { rest.trim_start() } else { rest });
        Ok(Self { parts })
    }

    /// The request headers it reads (lowercase).
    pub fn request_headers(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Print {
                field: Field::RequestHeader(name),
                ..
            } => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether it prints `field`.
    #[must_use]
    pub fn prints(&self, field: &Field) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Print { field: f, .. } if f == field))
    }

    /// The text, with each field's value from `value`; `None` when a field
    /// has no value (a claim the token does not carry): the header is then
    /// not set, where Go would print `<no value>`.
    #[must_use]
    pub fn render(&self, value: &dyn Fn(&Field) -> Option<Value>) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Print { field, format } => {
                    let v = value(field)?;
                    match format {
                        Format::Plain => out.push_str(&plain(&v)),
                        Format::Json(indent) => out.push_str(&as_json(&v, indent)),
                        Format::Printf {
                            before,
                            verb,
                            after,
                        } => {
                            out.push_str(before);
                            out.push_str(&printf(*verb, &v)?);
                            out.push_str(after);
                        }
                    }
                }
            }
        }
        Some(out)
    }
}

fn push_text(parts: &mut Vec<Part>, text: &str) {
    if !text.is_empty() {
        parts.push(Part::Text(text.to_owned()));
    }
}

fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}

/// How a value prints without `json`: strings as they are, lists joined
/// with commas, anything else as JSON.
#[must_use]
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn as_json(v: &Value, indent: &str) -> String {
    if indent.is_empty() || !(v.is_object() || v.is_array()) {
        return v.to_string();
    }
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    match serde::Serialize::serialize(v, &mut ser) {
        Ok(()) => String::from_utf8(out).unwrap_or_else(|_| v.to_string()),
        Err(_) => v.to_string(),
    }
}

fn action_part(action: &str, scope: Scope) -> Result<Part, String> {
    let unsupported = || {
        let fields = match scope {
            Scope::Token => {
                ".token.Raw, .token.Signature, .token.Header.<field>, .token.Claims.<claim>, .httpRequestHeader.Get \"<name>\""
            }
            Scope::Error => {
                ".status_code, .message, .request_id, .httpRequestHeader.Get \"<name>\""
            }
            Scope::RateLimit => ".RetryAfter, .RateLimitResponse.OverallCode",
            Scope::OAuth2 => {
                ".token.Raw, .token.Signature, .token.Header.<field>, .token.Claims.<claim> (the access token), the same of .idToken, .httpRequestHeader.Get \"<name>\""
            }
            Scope::RateLimitError => {
                ".status_code, .message, .RetryAfter, .RateLimitResponse.OverallCode"
            }
        };
        format!(
            "{{{{ {action} }}}} is not supported: an action prints one of {fields}, optionally through printf \"<one verb>\" or piped to json"
        )
    };
    let mut stages = action.split('|').map(str::trim);
    let command = stages.next().unwrap_or_default();
    let piped = match (stages.next(), stages.next()) {
        (None, _) => None,
        (Some(pipe), None) => {
            let words = words(pipe).ok_or_else(unsupported)?;
            match words.as_slice() {
                [f] if f == "json" => Some(Format::Json(String::new())),
                [f, indent] if f == "json" => {
                    Some(Format::Json(quoted(indent).ok_or_else(unsupported)?))
                }
                [f, text] if f == "printf" => Some(printf_format(text).ok_or_else(unsupported)?),
                _ => return Err(unsupported()),
            }
        }
        _ => return Err(unsupported()),
    };
    let mut words = words(command).ok_or_else(unsupported)?;
    // `printf "<format>" <value>`, the value last, as in the pipe form.
    let format = match (words.first().map(String::as_str), piped) {
        (Some("printf"), None) if words.len() > 2 => {
            let format = printf_format(&words[1]).ok_or_else(unsupported)?;
            words.drain(..2);
            format
        }
        (_, Some(format)) => format,
        (_, None) => Format::Plain,
    };
    let field = match (words.as_slice(), scope) {
        ([get, name], Scope::Token | Scope::Error | Scope::OAuth2)
            if get == ".httpRequestHeader.Get" =>
        {
            let name = quoted(name).ok_or_else(unsupported)?;
            if name.is_empty() || !name.bytes().all(is_token_char) {
                return Err(format!("{name:?} is not a header name"));
            }
            Field::RequestHeader(name.to_ascii_lowercase())
        }
        ([path], Scope::Token | Scope::OAuth2) => match path.as_str() {
            ".token.Raw" => Field::TokenRaw,
            ".token.Signature" => Field::TokenSignature,
            ".idToken.Raw" if scope == Scope::OAuth2 => Field::IdTokenRaw,
            ".idToken.Signature" if scope == Scope::OAuth2 => Field::IdTokenSignature,
            p => {
                let dotted = |rest: &str| dotted(rest).ok_or_else(unsupported);
                if let Some(c) = p.strip_prefix(".token.Claims.") {
                    Field::Claim(dotted(c)?)
                } else if let Some(h) = p.strip_prefix(".token.Header.") {
                    Field::TokenHeader(dotted(h)?)
                } else if let (Some(c), Scope::OAuth2) = (p.strip_prefix(".idToken.Claims."), scope)
                {
                    Field::IdTokenClaim(dotted(c)?)
                } else if let (Some(h), Scope::OAuth2) = (p.strip_prefix(".idToken.Header."), scope)
                {
                    Field::IdTokenHeader(dotted(h)?)
                } else {
                    return Err(unsupported());
                }
            }
        },
        ([path], Scope::Error) => match path.as_str() {
            ".status_code" | ".httpStatus" => Field::StatusCode,
            ".message" => Field::Message,
            ".request_id" | ".requestId" => Field::RequestId,
            _ => return Err(unsupported()),
        },
        ([path], Scope::RateLimit | Scope::RateLimitError) => match path.as_str() {
            ".RetryAfter" => Field::RetryAfter,
            ".RateLimitResponse.OverallCode" => Field::OverallCode,
            ".status_code" | ".httpStatus" if scope == Scope::RateLimitError => Field::StatusCode,
            ".message" if scope == Scope::RateLimitError => Field::Message,
            _ => return Err(unsupported()),
        },
        _ => return Err(unsupported()),
    };
    Ok(Part::Print { field, format })
}

/// A whole number of seconds as Go's `time.Duration` prints it.
#[must_use]
pub fn go_duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// A `printf` format with exactly one verb, `%%` for a `%`.
fn printf_format(word: &str) -> Option<Format> {
    let text = quoted(word)?;
    let (mut before, mut after) = (String::new(), String::new());
    let mut verb = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let out = if verb.is_some() {
            &mut after
        } else {
            &mut before
        };
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        if verb.is_some() {
            return None;
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            precision = Some(digits.parse().ok()?);
        }
        verb = Some(match (chars.next()?, precision) {
            ('s' | 'v', None) => Verb::Plain,
            ('q', None) => Verb::Quoted,
            ('d', None) => Verb::Integer,
            ('f', p) => Verb::Float(p),
            _ => return None,
        });
    }
    Some(Format::Printf {
        before,
        verb: verb?,
        after,
    })
}

/// A value as a `printf` verb prints it; `None` where Go would print an
/// error (`%d` of text, `%f` of a string).
fn printf(verb: Verb, v: &Value) -> Option<String> {
    match verb {
        Verb::Plain => Some(plain(v)),
        Verb::Quoted => Some(Value::from(plain(v)).to_string()),
        #[allow(clippy::cast_possible_truncation)]
        Verb::Integer => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .map(|n| n.to_string()),
        Verb::Float(p) => v.as_f64().map(|f| format!("{f:.*}", p.unwrap_or(6))),
    }
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn dotted(path: &str) -> Option<Vec<String>> {
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    parts
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(parts)
}

/// Splits on whitespace, keeping quoted strings whole (with their quotes).
fn words(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' || c == '`' {
            word.push(c);
            chars.next();
            let mut closed = false;
            while let Some(d) = chars.next() {
                word.push(d);
                if d == '\\' && c == '"' {
                    word.push(chars.next()?);
                } else if d == c {
                    closed = true;
                    break;
                }
            }
            if !closed {
                return None;
            }
        } else {
            while let Some(&d) = chars.peek() {
                if d.is_whitespace() {
                    break;
                }
                word.push(d);
                chars.next();
            }
        }
        out.push(word);
    }
    Some(out)
}

/// The text of a Go string literal (`"..."` with escapes, or `` `...` ``).
fn quoted(word: &str) -> Option<String> {
    if let Some(raw) = word.strip_prefix('`').and_then(|w| w.strip_suffix('`')) {
        return Some(raw.to_owned());
    }
    if word.starts_with('"') && word.len() >= 2 && word.ends_with('"') {
        return serde_json::from_str(word).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(text: &str, scope: Scope, value: &dyn Fn(&Field) -> Option<Value>) -> Option<String> {
        Template::parse(text, scope).unwrap().render(value)
    }

    fn token_data(f: &Field) -> Option<Value> {
        let claims = json!({ "sub": "ada", "realm_access": { "roles": ["admin", "ops"] }, "n": 7 });
        match f {
            Field::TokenRaw => Some(json!("aaa.bbb.ccc")),
            Field::TokenSignature => Some(json!("ccc")),
            Field::TokenHeader(p) if p == &["alg"] => Some(json!("RS256")),
            Field::Claim(p) => p.iter().try_fold(&claims, |v, k| v.get(k)).cloned(),
            Field::RequestHeader(n) if n == "user-agent" => Some(json!("curl/8")),
            Field::RequestHeader(_) => Some(json!("")),
            _ => None,
        }
    }

    #[test]
    fn literal_text_and_token_fields_mix() {
        assert_eq!(
            render(
                "Authenticated {{ .token.Header.alg }}; sub={{ .token.Claims.sub }}",
                Scope::Token,
                &token_data
            )
            .as_deref(),
            Some("Authenticated RS256; sub=ada")
        );
        assert_eq!(
            render("Fixed String", Scope::Token, &token_data).as_deref(),
            Some("Fixed String")
        );
        assert_eq!(
            render("{{.token.Raw}}", Scope::Token, &token_data).as_deref(),
            Some("aaa.bbb.ccc")
        );
        assert_eq!(
            render("{{ .token.Signature }}", Scope::Token, &token_data).as_deref(),
            Some("ccc")
        );
        assert_eq!(
            render(
                "{{ .token.Claims.realm_access.roles }}",
                Scope::Token,
                &token_data
            )
            .as_deref(),
            Some("admin,ops")
        );
        assert_eq!(
            render(
                "{{ .token.Claims.realm_access.roles | json }}",
                Scope::Token,
                &token_data
            )
            .as_deref(),
            Some(r#"["admin","ops"]"#)
        );
        assert_eq!(
            render("{{ .token.Claims.n }}", Scope::Token, &token_data).as_deref(),
            Some("7")
        );
    }

    #[test]
    fn request_headers_are_read_by_any_case_and_absent_ones_print_empty() {
        let t = Template::parse(r#"ua={{ .httpRequestHeader.Get "User-Agent" }};x={{ .httpRequestHeader.Get `X-Missing` }}"#, Scope::Token).unwrap();
        assert_eq!(
            t.request_headers().collect::<Vec<_>>(),
            ["user-agent", "x-missing"]
        );
        assert_eq!(t.render(&token_data).as_deref(), Some("ua=curl/8;x="));
    }

    #[test]
    fn a_missing_claim_leaves_the_header_out() {
        assert_eq!(
            render("{{ .token.Claims.optional }}", Scope::Token, &token_data),
            None
        );
        assert_eq!(
            render(
                "a {{ .token.Claims.sub.deeper }}",
                Scope::Token,
                &token_data
            ),
            None
        );
    }

    #[test]
    fn trims_and_comments_follow_go() {
        let data = |f: &Field| match f {
            Field::Message => Some(json!("the \"token\" has expired")),
            Field::StatusCode => Some(json!(401)),
            Field::RequestId => Some(json!("r-1")),
            _ => None,
        };
        let body = "{\n  \"errorMessage\": {{ .message | json \"  \" }},\n  {{- /* the status */ -}}\n  \"httpStatus\": \"{{ .status_code }}\",\n  \"requestId\": {{ .request_id | json }}\n}";
        let text = render(body, Scope::Error, &data).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            json!({ "errorMessage": "the \"token\" has expired", "httpStatus": "401", "requestId": "r-1" })
        );
    }

    #[test]
    fn what_is_not_supported_is_refused_with_the_action() {
        for (text, scope) in [
            (
                "{{ if hasKey .token.Claims \"x\" }}y{{ end }}",
                Scope::Token,
            ),
            ("{{ printf \"%q %q\" .token.Claims.name }}", Scope::Token),
            ("{{ .token.Claims }}", Scope::Token),
            ("{{ .token.Claims.a..b }}", Scope::Token),
            ("{{ .message }}", Scope::Token),
            ("{{ .token.Raw }}", Scope::Error),
            ("{{ .error.ValidationError }}", Scope::Error),
            ("{{ .message | upper }}", Scope::Error),
            ("{{ .message | json | json }}", Scope::Error),
            ("{{ .httpRequestHeader.Get \"bad name\" }}", Scope::Error),
            ("{{ .httpRequestHeader.Get \"x }}", Scope::Error),
            ("a {{ .message", Scope::Error),
        ] {
            let e = Template::parse(text, scope).unwrap_err();
            assert!(e.contains("not"), "{text}: {e}");
        }
        let e = Template::parse("{{ index .token.Claims \"name\" }}", Scope::Token).unwrap_err();
        assert!(
            e.contains("index") && e.contains(".token.Claims.<claim>"),
            "{e}"
        );
    }

    #[test]
    fn rate_limit_templates_print_the_wait_and_the_code() {
        let data = |f: &Field| match f {
            Field::RetryAfter => Some(json!(go_duration(90))),
            Field::OverallCode => Some(json!(2)),
            Field::StatusCode => Some(json!(429)),
            Field::Message => Some(json!("too many requests")),
            _ => None,
        };
        assert_eq!(
            render(
                "retry in {{ .RetryAfter }} (code {{ .RateLimitResponse.OverallCode }})",
                Scope::RateLimit,
                &data
            )
            .as_deref(),
            Some("retry in 1m30s (code 2)")
        );
        assert_eq!(
            render(
                "{\"error\": {{ .message | json }}, \"status\": {{ .status_code }}}",
                Scope::RateLimitError,
                &data
            )
            .as_deref(),
            Some("{\"error\": \"too many requests\", \"status\": 429}")
        );
        for (text, scope) in [
            ("{{ .message }}", Scope::RateLimit),
            ("{{ .httpRequestHeader.Get \"x\" }}", Scope::RateLimitError),
            ("{{ .request_id }}", Scope::RateLimitError),
            ("{{ .RateLimitResponse.Statuses }}", Scope::RateLimit),
        ] {
            assert!(Template::parse(text, scope).is_err(), "{text}");
        }
        assert_eq!(
            [0, 45, 90, 3600, 3725].map(go_duration),
            ["0s", "45s", "1m30s", "1h0m0s", "1h2m5s"]
        );
    }

    #[test]
    fn oauth2_templates_print_either_token() {
        let data = |f: &Field| match f {
            Field::IdTokenClaim(p) if p == &["sub"] => Some(json!("alice")),
            Field::Claim(p) if p == &["scope"] => Some(json!("openid email")),
            Field::IdTokenRaw => Some(json!("i.d.t")),
            _ => None,
        };
        assert_eq!(
            render(
                "{{ .idToken.Claims.sub }} ({{ .token.Claims.scope }}) {{ .idToken.Raw }}",
                Scope::OAuth2,
                &data
            )
            .as_deref(),
            Some("alice (openid email) i.d.t")
        );
        assert!(Template::parse("{{ .idToken.Claims.sub }}", Scope::Token).is_err());
        assert!(Template::parse("{{ .idToken }}", Scope::OAuth2).is_err());
    }

    #[test]
    fn printf_takes_one_verb_as_go_prints_it() {
        let data = |f: &Field| match f {
            Field::Claim(p) if p == &["name"] => Some(json!("Ada \"the\" Countess")),
            Field::Claim(p) if p == &["exp"] => Some(json!(1_700_000_000.0)),
            Field::Claim(p) if p == &["score"] => Some(json!(2.5)),
            _ => None,
        };
        let r = |t: &str| render(t, Scope::Token, &data);
        assert_eq!(
            r("name={{ printf \"%q\" .token.Claims.name }}").as_deref(),
            Some("name=\"Ada \\\"the\\\" Countess\"")
        );
        assert_eq!(
            r("{{ printf \"%.0f\" .token.Claims.exp }}").as_deref(),
            Some("1700000000")
        );
        assert_eq!(
            r("{{ .token.Claims.exp | printf \"exp=%d\" }}").as_deref(),
            Some("exp=1700000000")
        );
        assert_eq!(
            r("{{ printf \"%.2f%%\" .token.Claims.score }}").as_deref(),
            Some("2.50%")
        );
        assert_eq!(
            r("{{ printf \"%s!\" .token.Claims.name }}").as_deref(),
            Some("Ada \"the\" Countess!")
        );
        assert_eq!(
            r("{{ printf \"%d\" .token.Claims.name }}"),
            None,
            "Go prints an error"
        );
        for bad in [
            "{{ printf \"%s %s\" .token.Claims.name }}",
            "{{ printf \"%x\" .token.Claims.name }}",
            "{{ printf \"no verb\" .token.Claims.name }}",
            "{{ printf .token.Claims.name }}",
        ] {
            assert!(Template::parse(bad, Scope::Token).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_with_an_indent_indents_nested_values() {
        let data = |_: &Field| Some(json!({ "a": [1] }));
        assert_eq!(
            render("{{ .token.Claims.x | json \"  \" }}", Scope::Token, &data).as_deref(),
            Some("{\n  \"a\": [\n    1\n  ]\n}")
        );
    }
}
