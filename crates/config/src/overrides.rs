//! `CHAINMUX_*` environment overrides, applied to the parsed TOML before deserialization.

use std::collections::BTreeMap;

use toml::{Table, Value};

/// Prefix of environment variables that override configuration keys.
pub(crate) const PREFIX: &str = "CHAINMUX_";

/// `CHAINMUX_*` variables used by the `chainmux` command itself, never treated as
/// configuration overrides.
pub const RESERVED_ENV_VARS: &[&str] = &["CHAINMUX_CONFIG", "CHAINMUX_LOG", "CHAINMUX_LOG_FORMAT"];

/// Top-level keys of the schema. Every one is a table or an array, so a variable without
/// `__` can only address a whole section; one that names none of them is some other
/// tool's variable (e.g. `CHAINMUX_TOOLS_DIR` of the build scripts) and is ignored rather
/// than turned into an unknown-key error.
const TOP_LEVEL_KEYS: &[&str] = &["database", "gateway", "chains", "telemetry", "cluster", "redis"];

/// Keys that hold arrays of tables whose elements are addressed by `name` or index. When
/// absent, creating a table in their place would only produce a confusing type error.
const ARRAY_KEYS: &[&str] = &["chains", "upstreams", "programs", "contracts"];

/// An override that was applied: the key path it set and the variable that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) key: String,
    pub(crate) var: String,
}

/// An override that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OverrideError {
    pub(crate) var: String,
    pub(crate) message: String,
}

/// Applies every `CHAINMUX_*` variable in `env` to `root`, in name order.
pub(crate) fn apply(root: &mut Table, env: &BTreeMap<String, String>) -> Result<Vec<Applied>, OverrideError> {
    let mut applied: Vec<Applied> = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(PREFIX) else { continue };
        if RESERVED_ENV_VARS.contains(&var.as_str()) {
            continue;
        }
        let segments: Vec<&str> = rest.split("__").collect();
        if segments.len() == 1 && !TOP_LEVEL_KEYS.contains(&normalize(rest).as_str()) {
            continue;
        }
        let fail = |message: String| OverrideError { var: var.clone(), message };
        if segments.iter().any(|s| s.is_empty()) {
            return Err(fail("empty key segment (segments are separated by a double underscore)".into()));
        }
        let key = set(root, &segments, parse_value(raw)).map_err(fail)?;
        // Two spellings (name and index) can reach the same key; silently letting the
        // alphabetically later one win would make the result depend on naming luck.
        if let Some(other) = applied.iter().find(|a| a.key == key) {
            return Err(fail(format!("sets {key}, which {} also sets", other.var)));
        }
        applied.push(Applied { key, var: var.clone() });
    }
    Ok(applied)
}

/// Integers, floats and booleans become TOML values of that type; anything else stays a
/// string. Deliberately stricter than TOML's own syntax (no `inf`, `nan`, `0x..`, `1_000`)
/// so that strings that merely look numeric to TOML keep their text.
fn parse_value(raw: &str) -> Value {
    match raw {
        "true" => return Value::Boolean(true),
        "false" => return Value::Boolean(false),
        _ => {}
    }
    if let Ok(int) = raw.parse::<i64>() {
        return Value::Integer(int);
    }
    let float_chars = raw.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'));
    if float_chars
        && raw.chars().any(|c| c.is_ascii_digit())
        && let Ok(float) = raw.parse::<f64>()
    {
        return Value::Float(float);
    }
    Value::String(raw.to_owned())
}

/// Env names are upper case and cannot contain `-`; keys are lower case and may.
fn normalize(segment: &str) -> String {
    segment.to_ascii_lowercase().replace('-', "_")
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// The existing key of `table` that `segment` addresses, if any.
fn find_key(table: &Table, segment: &str, path: &str) -> Result<Option<String>, String> {
    let wanted = normalize(segment);
    let mut found = table.keys().filter(|k| normalize(k) == wanted);
    let first = found.next().cloned();
    if let (Some(first), Some(second)) = (&first, found.next()) {
        let mut a = path.to_owned();
        push_key(&mut a, first);
        let mut b = path.to_owned();
        push_key(&mut b, second);
        return Err(format!("ambiguous: matches both {a} and {b}"));
    }
    Ok(first)
}

/// The index of the element of `array` that `selector` addresses: the table whose `name`
/// matches, or failing that a decimal index.
fn select(array: &[Value], selector: &str, path: &str) -> Result<usize, String> {
    let wanted = normalize(selector);
    let by_name: Vec<usize> = array
        .iter()
        .enumerate()
        .filter(|(_, v)| v.get("name").and_then(Value::as_str).is_some_and(|n| normalize(n) == wanted))
        .map(|(i, _)| i)
        .collect();
    match by_name.as_slice() {
        [index] => return Ok(*index),
        [a, b, ..] => return Err(format!("ambiguous: both {path}[{a}] and {path}[{b}] match {selector:?}")),
        [] => {}
    }
    if selector.bytes().all(|b| b.is_ascii_digit())
        && let Ok(index) = selector.parse::<usize>()
        && index < array.len()
    {
        return Ok(index);
    }
    Err(format!(
        "{path} has no element named {:?} and no index {selector} ({} element(s))",
        selector.to_ascii_lowercase(),
        array.len()
    ))
}

/// Sets the key addressed by `segments` to `value`, returning its key path.
fn set(root: &mut Table, segments: &[&str], value: Value) -> Result<String, String> {
    let mut table = root;
    let mut path = String::new();
    let mut i = 0;
    while let Some(&segment) = segments.get(i) {
        let key = find_key(table, segment, &path)?;
        let known = key.is_some();
        // New keys are lower case with `_`, which is how the schema spells every key.
        let key = key.unwrap_or_else(|| normalize(segment));
        push_key(&mut path, &key);

        if i + 1 == segments.len() {
            if let Some(existing @ (Value::Table(_) | Value::Array(_))) = table.get(&key) {
                return Err(format!("{path} is a {}, not a single value", existing.type_str()));
            }
            table.insert(key, value);
            return Ok(path);
        }

        if !known && ARRAY_KEYS.contains(&key.as_str()) {
            return Err(format!("{path} has no elements, so {:?} matches none", segments[i + 1]));
        }
        let slot = table.entry(key).or_insert_with(|| Value::Table(Table::new()));
        table = match slot {
            Value::Table(inner) => {
                i += 1;
                inner
            }
            Value::Array(array) => {
                let selector = segments[i + 1];
                let index = select(array, selector, &path)?;
                path.push_str(&format!("[{index}]"));
                if i + 2 == segments.len() {
                    return Err(format!("{path} is a table; name one of its keys"));
                }
                i += 2;
                match array.get_mut(index) {
                    Some(Value::Table(inner)) => inner,
                    _ => return Err(format!("{path} is not a table")),
                }
            }
            other => return Err(format!("{path} is a {}, not a table", other.type_str())),
        };
    }
    // Unreachable: segments is never empty (split yields at least one item) and the loop
    // returns at the last segment. Kept as an error rather than a panic.
    Err("no key given".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn table(text: &str) -> Table {
        text.parse().expect("test TOML parses")
    }

    const BASE: &str = r#"
        [database]
        url = "postgres://x/y"
        [[chains]]
        name = "local"
        [[chains.upstreams]]
        name = "anvil-a"
        url = "http://a"
        [[chains.upstreams]]
        name = "anvil-b"
        url = "http://b"
        [[chains]]
        name = "main-net"
    "#;

    #[test]
    fn parses_values() {
        assert_eq!(parse_value("5"), Value::Integer(5));
        assert_eq!(parse_value("-7"), Value::Integer(-7));
        assert_eq!(parse_value("1.5"), Value::Float(1.5));
        assert_eq!(parse_value("1e3"), Value::Float(1000.0));
        assert_eq!(parse_value("true"), Value::Boolean(true));
        assert_eq!(parse_value("false"), Value::Boolean(false));
        for s in ["True", "inf", "nan", "e", "0x10", "1_000", "127.0.0.1:80", "", "abc"] {
            assert_eq!(parse_value(s), Value::String(s.into()), "{s}");
        }
    }

    #[test]
    fn sets_keys_creating_tables() {
        let mut t = table(BASE);
        let applied = apply(
            &mut t,
            &env(&[
                ("CHAINMUX_DATABASE__URL", "postgres://z/w"),
                ("CHAINMUX_GATEWAY__LISTEN", "0.0.0.0:9000"),
                ("CHAINMUX_GATEWAY__MAX_BATCH_SIZE", "7"),
                ("CHAINMUX_CHAINS__LOCAL__START_BLOCK", "5"),
                ("CHAINMUX_CHAINS__1__USE_BLOCK_RECEIPTS", "false"),
                ("CHAINMUX_CHAINS__MAIN_NET__RPC__MAX_ATTEMPTS", "3"),
                ("CHAINMUX_CHAINS__LOCAL__UPSTREAMS__ANVIL_B__URL", "http://c"),
                ("OTHER", "x"),
            ]),
        )
        .expect("overrides apply");
        assert_eq!(t["database"]["url"].as_str(), Some("postgres://z/w"));
        assert_eq!(t["gateway"]["listen"].as_str(), Some("0.0.0.0:9000"));
        assert_eq!(t["gateway"]["max_batch_size"].as_integer(), Some(7));
        assert_eq!(t["chains"][0]["start_block"].as_integer(), Some(5));
        assert_eq!(t["chains"][1]["use_block_receipts"].as_bool(), Some(false));
        assert_eq!(t["chains"][1]["rpc"]["max_attempts"].as_integer(), Some(3));
        assert_eq!(t["chains"][0]["upstreams"][1]["url"].as_str(), Some("http://c"));
        assert_eq!(t["chains"][0]["upstreams"][0]["url"].as_str(), Some("http://a"));
        let keys: Vec<&str> = applied.iter().map(|a| a.key.as_str()).collect();
        assert!(keys.contains(&"chains[0].upstreams[1].url"), "{keys:?}");
        assert!(keys.contains(&"chains[1].rpc.max_attempts"), "{keys:?}");
    }

    #[test]
    fn ignores_reserved_and_foreign_single_segment_vars() {
        let mut t = table(BASE);
        let before = t.clone();
        let applied = apply(
            &mut t,
            &env(&[
                ("CHAINMUX_CONFIG", "x.toml"),
                ("CHAINMUX_LOG", "debug"),
                ("CHAINMUX_LOG_FORMAT", "json"),
                ("CHAINMUX_TOOLS_DIR", "/tmp"),
                ("chainmux_database__url", "lowercase prefix is not ours"),
            ]),
        )
        .expect("nothing to apply");
        assert!(applied.is_empty());
        assert_eq!(t, before);
    }

    #[test]
    fn reports_bad_addresses() {
        let cases = [
            ("CHAINMUX_CHAINS__NOPE__START_BLOCK", "no element named \"nope\" and no index"),
            ("CHAINMUX_CHAINS__2__START_BLOCK", "no index 2"),
            ("CHAINMUX_CHAINS__LOCAL__UPSTREAMS__ANVIL_C__URL", "chains[0].upstreams has no element"),
            ("CHAINMUX_CHAINS__MAIN_NET__UPSTREAMS__X__URL", "chains[1].upstreams has no elements"),
            ("CHAINMUX_CHAINS__LOCAL", "chains[0] is a table"),
            ("CHAINMUX_DATABASE", "database is a table, not a single value"),
            ("CHAINMUX_DATABASE__URL__X", "database.url is a string, not a table"),
            ("CHAINMUX_GATEWAY____LISTEN", "empty key segment"),
        ];
        for (var, want) in cases {
            let mut t = table(BASE);
            let err = apply(&mut t, &env(&[(var, "1")])).expect_err(var);
            assert_eq!(err.var, var);
            assert!(err.message.contains(want), "{var}: {}", err.message);
        }
    }

    #[test]
    fn missing_chains_array_is_an_error() {
        let mut t = table("[database]\nurl = \"postgres://x\"\n");
        let err =
            apply(&mut t, &env(&[("CHAINMUX_CHAINS__LOCAL__START_BLOCK", "1")])).expect_err("no chains");
        assert!(err.message.contains("chains has no elements"), "{}", err.message);
    }

    #[test]
    fn conflicting_spellings_are_an_error() {
        let mut t = table(BASE);
        let err = apply(
            &mut t,
            &env(&[("CHAINMUX_CHAINS__0__START_BLOCK", "1"), ("CHAINMUX_CHAINS__LOCAL__START_BLOCK", "2")]),
        )
        .expect_err("conflict");
        assert_eq!(err.var, "CHAINMUX_CHAINS__LOCAL__START_BLOCK");
        assert!(err.message.contains("CHAINMUX_CHAINS__0__START_BLOCK"), "{}", err.message);
    }

    #[test]
    fn existing_key_spelling_is_reused() {
        let mut t = table("[gateway]\nmax-body-bytes = 1\n");
        apply(&mut t, &env(&[("CHAINMUX_GATEWAY__MAX_BODY_BYTES", "2")])).expect("applies");
        assert_eq!(t["gateway"]["max-body-bytes"].as_integer(), Some(2));
        assert!(t["gateway"].get("max_body_bytes").is_none());
    }
}
