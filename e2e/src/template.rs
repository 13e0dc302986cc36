//! `{{NAME}}` placeholders in Envoy config templates.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

/// Replaces every `{{NAME}}` in `text` by `vars[NAME]`. A placeholder without a
/// value is an error naming it, so a template never reaches Envoy half-filled.
pub fn render(text: &str, vars: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!(
                "unclosed placeholder at byte {}",
                text.len() - rest.len() + start
            );
        };
        let name = after[..end].trim();
        match vars.get(name) {
            Some(value) => out.push_str(value),
            None => bail!("template placeholder {{{{{name}}}}} has no value"),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn placeholders_are_replaced() {
        let out = render(
            "port: {{PORT}} / {{ HOST }}",
            &vars(&[("PORT", "80"), ("HOST", "h")]),
        );
        assert_eq!(out.unwrap(), "port: 80 / h");
    }

    #[test]
    fn missing_value_names_the_placeholder() {
        let err = render("a {{NOPE}} b", &vars(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "template placeholder {{NOPE}} has no value"
        );
    }

    #[test]
    fn unclosed_placeholder_is_an_error() {
        assert!(render("a {{OPEN", &vars(&[("OPEN", "x")])).is_err());
    }
}
