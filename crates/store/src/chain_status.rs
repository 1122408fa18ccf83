//! The indexer's current error per chain, kept in `chains` so every gateway replica can show it, whichever one
//! indexes the chain.

use crate::{Result, Store};

/// Longest error message stored; an upstream's error text can be long, and the status page only needs the gist.
const MAX_MESSAGE_CHARS: usize = 500;

/// What the indexer reported as its current error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexerErrorState {
    /// The error, without URLs or control characters.
    pub message: String,
    /// Unix seconds when it was recorded.
    pub since: i64,
}

impl Store {
    /// Records `error` as the chain's current indexer error, or clears it with `None`. Meant for transitions
    /// only (first failure after success, first success after failure), not for every retry. A handle
    /// [fenced](Store::fenced) by a term that is over writes nothing: the chain's status is its new leader's.
    pub async fn set_indexer_error(&self, chain: &str, error: Option<&str>) -> Result<()> {
        let message = error.map(sanitize);
        sqlx::query(
            "UPDATE chains SET indexer_error = $2, \
             indexer_error_at = CASE WHEN $2::text IS NULL THEN NULL ELSE now() END \
             WHERE name = $1 AND ($3::bigint IS NULL \
                 OR EXISTS (SELECT 1 FROM chain_leaders l WHERE l.chain = $1 AND l.epoch = $3))",
        )
        .bind(chain)
        .bind(message)
        .bind(self.fence)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

/// `message` fit for an open status page: URLs (which may carry an API key in their path or query) replaced, control
/// characters dropped, length bounded. Upstream errors come from providers' answers, so their text is not trusted
/// to be free of either.
pub(crate) fn sanitize(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS));
    for (i, word) in message.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if word.contains("://") {
            out.push_str("<url>");
        } else {
            out.extend(word.chars().filter(|c| !c.is_control()));
        }
    }
    if out.chars().count() > MAX_MESSAGE_CHARS {
        out = out.chars().take(MAX_MESSAGE_CHARS - 1).collect();
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn urls_and_control_characters_are_removed() {
        assert_eq!(
            sanitize("upstream a: error sending request for https://rpc.example/v2/SECRET (timeout)"),
            "upstream a: error sending request for <url> (timeout)"
        );
        assert_eq!(sanitize("bad\u{1b}[31m\nline"), "bad[31mline");
        let long = "x".repeat(2000);
        assert_eq!(sanitize(&long).chars().count(), 500);
    }
}
