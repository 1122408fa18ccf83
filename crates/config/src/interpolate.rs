//! `${VAR}` interpolation of string values, so secrets can live in the environment
//! instead of the file.

use std::collections::BTreeMap;

use toml::{Table, Value};

use crate::Problem;

/// Replaces `${NAME}` and `${NAME:-default}` in every string value of `root`; `$${` is a
/// literal `${`. Returns one problem per string that could not be expanded.
pub(crate) fn apply(root: &mut Table, env: &BTreeMap<String, String>) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    walk_table(root, "", env, &mut problems);
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

fn walk_table(table: &mut Table, path: &str, env: &BTreeMap<String, String>, problems: &mut Vec<Problem>) {
    for (key, value) in table.iter_mut() {
        let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        walk_value(value, &child, env, problems);
    }
}

fn walk_value(value: &mut Value, path: &str, env: &BTreeMap<String, String>, problems: &mut Vec<Problem>) {
    match value {
        Value::String(text) => match expand(text, env) {
            Ok(expanded) => *text = expanded,
            Err(message) => problems.push(Problem::new(path, message)),
        },
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                walk_value(item, &format!("{path}[{index}]"), env, problems);
            }
        }
        Value::Table(table) => walk_table(table, path, env, problems),
        Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Datetime(_) => {}
    }
}

/// Expands one string. Error messages name the variable but never its value.
fn expand(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let Some(end) = body_and_tail.find('}') else {
                return Err("unterminated \"${\" (write \"$${\" for a literal \"${\")".into());
            };
            let body = &body_and_tail[..end];
            let (name, default) = match body.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (body, None),
            };
            if !is_var_name(name) {
                return Err(format!("invalid variable name {name:?} in \"${{{body}}}\""));
            }
            // Shell semantics: `:-` also applies when the variable is set but empty.
            match (env.get(name), default) {
                (Some(value), None) => out.push_str(value),
                (Some(value), Some(_)) if !value.is_empty() => out.push_str(value),
                (_, Some(default)) => out.push_str(default),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body_and_tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("A", "alpha"), ("EMPTY", ""), ("B_2", "beta")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands() {
        let cases = [
            ("${A}", "alpha"),
            ("x${A}y${B_2}z", "xalphaybetaz"),
            ("${EMPTY}", ""),
            ("${MISSING:-dflt}", "dflt"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${A:-dflt}", "alpha"),
            ("${MISSING:-}", ""),
            ("${MISSING:-a:b/c}", "a:b/c"),
            ("$${A}", "${A}"),
            ("$$${A}", "$${A}"),
            ("cost $5 $", "cost $5 $"),
            ("a$$b", "a$$b"),
            ("no vars", "no vars"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &env()).as_deref(), Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn rejects() {
        let cases = [
            ("${MISSING}", "environment variable MISSING is not set"),
            ("x${A", "unterminated"),
            ("${}", "invalid variable name"),
            ("${1A}", "invalid variable name"),
            ("${A-B}", "invalid variable name"),
        ];
        for (input, want) in cases {
            let err = expand(input, &env()).expect_err(input);
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn walks_nested_values_and_reports_every_key() {
        let mut table: Table = r#"
            top = "${A}"
            n = 5
            [t]
            list = ["${B_2}", "${NOPE}"]
            [[arr]]
            s = "${ALSO_NOPE}"
        "#
        .parse()
        .expect("test TOML parses");
        let problems = apply(&mut table, &env()).expect_err("two unset vars");
        assert_eq!(
            problems,
            vec![
                Problem::new("arr[0].s", "environment variable ALSO_NOPE is not set"),
                Problem::new("t.list[1]", "environment variable NOPE is not set"),
            ]
        );
        assert_eq!(table["top"].as_str(), Some("alpha"));
        assert_eq!(table["t"]["list"][0].as_str(), Some("beta"));
    }
}
