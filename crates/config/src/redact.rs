//! Redaction of URLs that carry credentials, for logs and `check-config` output.

use url::Url;

/// What replaces a secret part.
const MASK: &str = "***";

/// Redacts an upstream (RPC provider) URL for logging.
///
/// Keeps scheme, user name, host and port. A password becomes `***`. Providers put API
/// keys in the path or query (`https://eth.example.com/v2/KEY`), so a path other than
/// `/`, or any query, becomes `/***`; a fragment is dropped. A string that does not
/// parse as a URL is replaced by `***` as a whole, since we cannot tell where its
/// secret is.
///
/// ```
/// assert_eq!(
///     chainmux_config::redact_url("https://u:pw@eth.example.com:8443/v2/KEY?x=1"),
///     "https://u:***@eth.example.com:8443/***",
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return MASK.to_owned();
    };
    mask_password(&mut parsed);
    let path = parsed.path();
    let secret_path = !path.is_empty() && path != "/";
    if secret_path || parsed.query().is_some() {
        parsed.set_query(None);
        parsed.set_path("/***");
    }
    parsed.set_fragment(None);
    parsed.into()
}

/// Redacts a Postgres connection URL for logging.
///
/// Keeps user, host, port and database name; the password becomes `***`, and so does
/// the value of any query parameter whose name contains `password` (libpq accepts
/// `?password=` too). A string that does not parse as a URL becomes `***`.
///
/// ```
/// assert_eq!(
///     chainmux_config::redact_database_url("postgres://app:pw@db:5432/chainmux"),
///     "postgres://app:***@db:5432/chainmux",
/// );
/// ```
pub fn redact_database_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return MASK.to_owned();
    };
    mask_password(&mut parsed);
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if key.to_ascii_lowercase().contains("password") { MASK.into() } else { value };
                (key.into_owned(), value.into_owned())
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.set_fragment(None);
    parsed.into()
}

fn mask_password(url: &mut Url) {
    if url.password().is_some() {
        // Only fails for URLs that cannot have credentials, and those have no password.
        let _ = url.set_password(Some(MASK));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let cases = [
            ("https://eth-mainnet.example.com/v2/KEY", "https://eth-mainnet.example.com/***"),
            ("https://eth.example.com/?apikey=KEY", "https://eth.example.com/***"),
            ("https://eth.example.com?apikey=KEY", "https://eth.example.com/***"),
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545/"),
            ("http://127.0.0.1:8545/", "http://127.0.0.1:8545/"),
            ("https://user:KEY@node.example.com:8443/", "https://user:***@node.example.com:8443/"),
            ("https://user@node.example.com/", "https://user@node.example.com/"),
            ("https://node.example.com/#KEY", "https://node.example.com/"),
            ("wss://node.example.com/ws/KEY", "wss://node.example.com/***"),
            ("not a url KEY", "***"),
            ("", "***"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "input {input}");
        }
    }

    #[test]
    fn database_urls() {
        let cases = [
            ("postgres://app:pw@db:5432/chainmux", "postgres://app:***@db:5432/chainmux"),
            ("postgresql://app@db/chainmux", "postgresql://app@db/chainmux"),
            ("postgres://db/chainmux?sslmode=require", "postgres://db/chainmux?sslmode=require"),
            (
                "postgres://app@db/chainmux?password=pw&sslmode=require",
                "postgres://app@db/chainmux?password=***&sslmode=require",
            ),
            ("postgres://app:p%40ss@db/x#frag", "postgres://app:***@db/x"),
            ("garbage pw", "***"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_database_url(input), want, "input {input}");
        }
    }
}
