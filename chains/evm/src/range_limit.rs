//! Recognising a provider's refusal of an `eth_getLogs` range as too large, and the hint it gives.
//!
//! Providers refuse wide `eth_getLogs` queries in their own words: a cap on the block span ("block range too
//! large", "exceed maximum block range: 5000") or on the results ("query returned more than 10000 results",
//! "Log response size exceeded"), sometimes with the largest span they accept or a range that would work
//! ("Try with this block range [0x1, 0x2]"). [`range_limit`] turns such a message into a [`RangeLimit`]; it is
//! pure, so every known wording is covered by the unit tests below.

/// What a provider limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitKind {
    /// The span in blocks, whatever the blocks hold: a span that failed once fails again.
    Span,
    /// The results (number of logs or response bytes): whether a span fails depends on the blocks' logs.
    Results,
}

/// A refusal of an `eth_getLogs` range as too large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RangeLimit {
    pub(crate) kind: LimitKind,
    /// The largest span in blocks the provider says it accepts.
    pub(crate) max_blocks: Option<u64>,
    /// The range `[from, to]` the provider suggests asking instead.
    pub(crate) suggested: Option<(u64, u64)>,
}

impl RangeLimit {
    const fn results() -> Self {
        Self { kind: LimitKind::Results, max_blocks: None, suggested: None }
    }
}

/// Wordings of a limit on the results: the count of logs or the size of the response.
const RESULTS: &[&str] = &[
    "returned more than", // Infura, zkEVM: "query returned more than 10000 results"
    "max results",        // LlamaRPC, Ankr: "query exceeds max results 20000"
    "too many results",   // (generic)
    "response size",      // Alchemy: "Log response size exceeded", 1RPC: "response size should not..."
    "response too large", // Optimism: "backend response too large"
    "logs matched",       // Arbitrum: "logs matched by query exceeds limit of 10000"
];

/// Wordings of a limit on the span of blocks.
const SPAN: &[&str] = &[
    "block range",       // "block range is too large", "exceed maximum block range: 5000"
    "range limit",       // "range limit exceeded", Chainstack: "Block range limit exceeded."
    "max range",         // Cloudflare: "Max range: 3500"
    "maximum range",     //
    "range is too",      // Merkle: "eth_getLogs range is too large, max is 10k blocks"; Ankr: "... too wide"
    "range too large",   // Base: "block range too large"
    "too many blocks",   // Avalanche: "requested too many blocks from 0 to 5000, maximum is set to 2048"
    "requested blocks",  // thirdweb: "Maximum allowed number of requested blocks is 1000"
    "blocks distance",   // Ankr: "maximum [from, to] blocks distance: 1000"
    "limited to",        // QuickNode: "eth_getLogs is limited to a 10,000 range", BlockPI
    "limit the query",   // Coinbase: "please limit the query to at most 1000 blocks"
    "exceeds the range", // Blast: "exceeds the range allowed for your plan (5000 > 3000)"
    "smaller than size", // Harmony: "query must be smaller than size 1024"
];

/// Messages naming a block range that are about something else: a range above the node's head, or a malformed
/// one. Splitting cannot help them.
const NOT_A_LIMIT: &[&str] = &[
    "beyond",              // geth: "block range extends beyond current head block"
    "invalid block range", // geth: "invalid block range params" (from > to)
    "after last accepted", // Avalanche: "requested to block 9 after last accepted block 5"
];

/// Phrases after which providers state the largest span they accept. With `true`, the number must be followed by
/// "block" or "range" to be a span (e.g. "up to a 2K block range", but not "up to 10K logs").
const HINTS: &[(&str, bool)] = &[
    ("maximum block range", false), // "exceed maximum block range: 5000" (PublicNode and others)
    ("max block range", false),     // "query exceeds max block range 100000"
    ("max range", false),           // "Max range: 3500"
    ("maximum range", false),
    ("requested blocks is", false), // "Maximum allowed number of requested blocks is 1000"
    ("maximum is set to", false),   // "requested too many blocks from 0 to 5000, maximum is set to 2048"
    ("block range greater than", false),
    ("block range exceeds", false),
    ("blocks distance", false),   // "maximum [from, to] blocks distance: 1000"
    ("too wide (maximum", false), // "block range is too wide (maximum 1024)"
    ("smaller than size", false), // "query must be smaller than size 1024"
    ("limited to a", true),       // "eth_getLogs is limited to a 10,000 range"
    ("limited to", true),         // "limited to 10,000 block range"
    ("at most", true),            // "please limit the query to at most 1000 blocks"
    ("up to a", true),            // "up to a 2K block range"
    ("up to", true),              //
    ("max is", true),             // "max is 10k blocks"
];

/// The limit a provider's error message describes, or `None` when it is not an `eth_getLogs` range refusal.
///
/// A bare "limit exceeded" (some providers' wording for a range refusal, others' for a rate limit) counts as a
/// limit on the results without a hint: splitting a range it refuses costs a few calls at worst.
pub(crate) fn range_limit(message: &str) -> Option<RangeLimit> {
    let text = message.to_ascii_lowercase();
    if NOT_A_LIMIT.iter().any(|phrase| text.contains(phrase)) {
        return None;
    }
    let kind = if RESULTS.iter().any(|phrase| text.contains(phrase)) {
        LimitKind::Results
    } else if SPAN.iter().any(|phrase| text.contains(phrase)) {
        LimitKind::Span
    } else if text.contains("limit exceeded") {
        return Some(RangeLimit::results());
    } else {
        return None;
    };
    Some(RangeLimit { kind, max_blocks: max_blocks(&text), suggested: suggested_range(&text) })
}

/// HTTP 413 (request or response entity too large) from an `eth_getLogs` call: too many results.
pub(crate) fn http_range_limit(status: u16) -> Option<RangeLimit> {
    (status == 413).then(RangeLimit::results)
}

/// The smallest span the message states as the provider's maximum.
fn max_blocks(text: &str) -> Option<u64> {
    let mut best: Option<u64> = None;
    for (phrase, needs_unit) in HINTS {
        for (at, _) in text.match_indices(phrase) {
            let rest = text[at + phrase.len()..].trim_start_matches([' ', ':', '(', '\t', '=']);
            let Some((n, after)) = number(rest) else { continue };
            let after = after.trim_start();
            if *needs_unit && !(after.starts_with("block") || after.starts_with("range")) {
                continue;
            }
            if n > 0 {
                best = Some(best.map_or(n, |b| b.min(n)));
            }
        }
    }
    best
}

/// A decimal number at the start of `text` (`10,000`, `2K`, `5000`), and the text after it.
fn number(text: &str) -> Option<(u64, &str)> {
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '_')).unwrap_or(text.len());
    let digits: String = text[..end].chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() || !text.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut n: u64 = digits.parse().ok()?;
    let mut rest = &text[end..];
    let mut chars = rest.chars();
    if let Some(unit @ ('k' | 'K' | 'm' | 'M')) = chars.next()
        && !chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
    {
        n = n.checked_mul(if unit.eq_ignore_ascii_case(&'k') { 1_000 } else { 1_000_000 })?;
        rest = &rest[1..];
    }
    Some((n, rest))
}

/// The first `[from, to]` of two block numbers (hex `0x…` or decimal) in the message, when `from <= to`.
fn suggested_range(text: &str) -> Option<(u64, u64)> {
    text.match_indices('[').find_map(|(at, _)| {
        let inner = &text[at + 1..];
        let inner = &inner[..inner.find(']')?];
        let (from, to) = inner.split_once(',')?;
        let (from, to) = (block_number(from.trim())?, block_number(to.trim())?);
        (from <= to).then_some((from, to))
    })
}

fn block_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(max_blocks: Option<u64>) -> Option<RangeLimit> {
        Some(RangeLimit { kind: LimitKind::Span, max_blocks, suggested: None })
    }

    fn results(max_blocks: Option<u64>, suggested: Option<(u64, u64)>) -> Option<RangeLimit> {
        Some(RangeLimit { kind: LimitKind::Results, max_blocks, suggested })
    }

    #[test]
    fn infura_and_alchemy_suggest_a_range() {
        assert_eq!(
            range_limit("query returned more than 10000 results. Try with this block range [0x1, 0x2]."),
            results(None, Some((1, 2)))
        );
        assert_eq!(
            range_limit(
                "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and \
                 no limit on the response size, or you can request any block range with a cap of 10K logs in \
                 the response. Based on your parameters, this block range should work: [0x10a3f47, 0x10a5c4a]"
            ),
            results(Some(2_000), Some((0x10a3f47, 0x10a5c4a)))
        );
        // Decimal suggestions and no space after the comma.
        assert_eq!(
            range_limit("query returned more than 10000 results. Try with this block range [100,150]")
                .and_then(|l| l.suggested),
            Some((100, 150))
        );
        // A reversed "range" is no suggestion.
        assert_eq!(range_limit("query returned more than 5 results [0x9, 0x2]"), results(None, None));
    }

    #[test]
    fn span_limits_with_and_without_a_number() {
        assert_eq!(range_limit("block range is too large"), span(None));
        assert_eq!(range_limit("Block range is too large"), span(None));
        assert_eq!(range_limit("block range too large"), span(None));
        assert_eq!(range_limit("exceed maximum block range: 5000"), span(Some(5_000)));
        assert_eq!(range_limit("range limit exceeded"), span(None));
        assert_eq!(range_limit("Block range limit exceeded."), span(None));
        assert_eq!(range_limit("query exceeds max block range 100000"), span(Some(100_000)));
        assert_eq!(range_limit("query exceeds max block range 5"), span(Some(5)));
        assert_eq!(range_limit("eth_getLogs is limited to a 10,000 range"), span(Some(10_000)));
        assert_eq!(range_limit("eth_getLogs is limited to 1,024 block range"), span(Some(1_024)));
        assert_eq!(range_limit("Max range: 3500"), span(Some(3_500)));
        assert_eq!(
            range_limit("requested too many blocks from 0 to 16384, maximum is set to 2048"),
            span(Some(2_048))
        );
        assert_eq!(range_limit("Maximum allowed number of requested blocks is 1000"), span(Some(1_000)));
        assert_eq!(range_limit("please limit the query to at most 1000 blocks"), span(Some(1_000)));
        assert_eq!(range_limit("eth_getLogs range is too large, max is 10k blocks"), span(Some(10_000)));
        assert_eq!(range_limit("maximum [from, to] blocks distance: 1000"), span(Some(1_000)));
        assert_eq!(range_limit("block range is too wide (maximum 1024)"), span(Some(1_024)));
        assert_eq!(
            range_limit("eth_getLogs block range exceeds the range allowed for your plan (5000 > 3000)"),
            span(None),
            "the numbers are not in a shape we read; the span is still known to be too wide"
        );
        assert_eq!(range_limit("block range greater than 10000 max"), span(Some(10_000)));
        assert_eq!(range_limit("block range exceeds 1000"), span(Some(1_000)));
        assert_eq!(range_limit("query must be smaller than size 1024"), span(Some(1_024)));
    }

    #[test]
    fn result_limits() {
        assert_eq!(
            range_limit("query exceeds max results 20000, retry with the range 1-2"),
            results(None, None)
        );
        assert_eq!(range_limit("query exceeds max results"), results(None, None));
        assert_eq!(range_limit("response size should not greater than 10000000 bytes"), results(None, None));
        assert_eq!(range_limit("backend response too large"), results(None, None));
        assert_eq!(range_limit("logs matched by query exceeds limit of 10000"), results(None, None));
        // Bare "limit exceeded": no hint, treated as a results limit.
        assert_eq!(range_limit("limit exceeded"), results(None, None));
        assert_eq!(http_range_limit(413), results(None, None));
        assert_eq!(http_range_limit(500), None);
    }

    #[test]
    fn other_errors_are_not_range_limits() {
        for message in [
            "header not found",
            "internal error",
            "execution reverted",
            "invalid params",
            "rate limit reached",
            "Too Many Requests",
            "block range extends beyond current head block",
            "invalid block range params",
            "requested to block 9 after last accepted block 5",
            "",
        ] {
            assert_eq!(range_limit(message), None, "{message}");
        }
    }

    #[test]
    fn numbers_in_hints() {
        assert_eq!(number("10,000 range"), Some((10_000, " range")));
        assert_eq!(number("2K block"), Some((2_000, " block")));
        assert_eq!(number("5000."), Some((5_000, ".")));
        assert_eq!(number("3m"), Some((3_000_000, "")));
        assert_eq!(number("5000max"), Some((5_000, "max")));
        assert_eq!(number("x5"), None);
        assert_eq!(number(",5"), None);
        // A number next to results is not a span: "up to 10K logs".
        assert_eq!(max_blocks("you can request up to 10k logs"), None);
        assert_eq!(max_blocks("max block range 0"), None);
        // Several stated maxima: the smallest wins.
        assert_eq!(max_blocks("max range: 500, up to a 2k block range"), Some(500));
    }
}
