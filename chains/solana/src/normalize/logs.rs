//! Attribution of a transaction's `logMessages` to the instructions that emitted them.
//!
//! The runtime frames every instruction it runs with `Program <id> invoke [<depth>]` and `Program <id> success`
//! (or `Program <id> failed: <reason>`), in execution order, which is the order the transaction's instructions are
//! flattened in (outer instruction, then the inner ones it ran). The lines between an instruction's frame lines
//! that are not inside a deeper frame are its own. The log does not name instructions, though, only programs, so
//! the n-th frame is attributed to the n-th instruction only when the two sequences provably line up: same program
//! and depth at every step, and either the same length, or a log that is known to stop early (cut at the log size
//! limit, or a failed transaction whose execution stopped). Anything else attributes nothing: an empty `logs` is
//! better than lines filed under the wrong instruction.

use super::{Pubkey, decode_array};

/// What the flattened instruction list says about one instruction, to check a log frame against.
#[derive(Debug, Clone, Copy)]
pub(super) struct Expected {
    pub(super) program: Pubkey,
    /// Top-level instructions run at depth 1.
    pub(super) outer: bool,
    /// The inner instruction's `stackHeight`, where the node reported one.
    pub(super) height: Option<u32>,
}

/// The log frames of one transaction, with how many of them are attributed to instructions.
#[derive(Debug, Default)]
pub(super) struct Attribution<'a> {
    frames: Vec<Frame<'a>>,
    /// Frames `0..trusted` belong to instructions `0..trusted` (execution order).
    trusted: usize,
}

#[derive(Debug)]
struct Frame<'a> {
    program: &'a str,
    depth: u32,
    lines: Vec<&'a str>,
}

impl Frame<'_> {
    fn matches(&self, expected: &Expected) -> bool {
        let depth_ok = match (expected.outer, expected.height) {
            (true, _) => self.depth == 1,
            (false, Some(height)) => self.depth == height,
            (false, None) => self.depth >= 2,
        };
        depth_ok && decode_array::<32>(self.program).is_some_and(|program| program == expected.program)
    }
}

enum Line<'a> {
    Invoke {
        program: &'a str,
        depth: u32,
    },
    End {
        program: &'a str,
    },
    Truncated,
    /// A frame line that does not parse: the log is not in the shape this module understands.
    Unreadable,
    Other,
}

fn looks_like_address(text: &str) -> bool {
    (32..=44).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() && !matches!(b, b'0' | b'O' | b'I' | b'l'))
}

fn classify(line: &str) -> Line<'_> {
    if line.starts_with("Log truncated") {
        return Line::Truncated;
    }
    // `Program log: ...`, `Program data: ...`, `Program return: ...` fail the address test and stay `Other`.
    let Some((program, tail)) = line.strip_prefix("Program ").and_then(|rest| rest.split_once(' ')) else {
        return Line::Other;
    };
    if !looks_like_address(program) {
        return Line::Other;
    }
    if let Some(depth) = tail.strip_prefix("invoke [") {
        return match depth.strip_suffix(']').and_then(|d| d.parse().ok()) {
            Some(depth) => Line::Invoke { program, depth },
            None => Line::Unreadable,
        };
    }
    if tail == "success" || tail.starts_with("failed") {
        return Line::End { program };
    }
    Line::Other
}

/// Splits `messages` into frames and decides how many of them can be attributed to `expected` (the transaction's
/// instructions in execution order). `failed`: the transaction failed, so execution (and the log) may stop before
/// the last instruction.
pub(super) fn attribute<'a>(messages: &'a [String], expected: &[Expected], failed: bool) -> Attribution<'a> {
    let mut frames: Vec<Frame<'a>> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut truncated = false;
    let mut consistent = true;
    for line in messages {
        match classify(line) {
            Line::Truncated => {
                truncated = true;
                break;
            }
            Line::Invoke { program, depth } => {
                if usize::try_from(depth).ok() != Some(open.len() + 1) {
                    consistent = false;
                    break;
                }
                open.push(frames.len());
                frames.push(Frame { program, depth, lines: Vec::new() });
            }
            Line::End { program } => match open.last() {
                Some(&top) if frames.get(top).is_some_and(|f| f.program == program) => {
                    open.pop();
                }
                _ => {
                    consistent = false;
                    break;
                }
            },
            Line::Unreadable => {
                consistent = false;
                break;
            }
            Line::Other => {
                // Lines outside every frame belong to no instruction.
                if let Some(frame) = open.last().and_then(|&top| frames.get_mut(top)) {
                    frame.lines.push(line);
                }
            }
        }
    }
    let matched = frames.iter().zip(expected).take_while(|(frame, expected)| frame.matches(expected)).count();
    let cut_short = truncated || failed;
    let trusted = if !consistent || (!cut_short && !open.is_empty()) {
        0
    } else if matched == expected.len() && frames.len() == expected.len() {
        matched
    } else if cut_short {
        // The log is a prefix of the execution: its frames line up with the first instructions, and the
        // lines of a frame left open by the cut are still that instruction's own (if not all of them).
        matched
    } else {
        // A complete log of a successful transaction that does not line up: no position can be trusted.
        0
    };
    Attribution { frames, trusted }
}

impl Attribution<'_> {
    /// The depth and own log lines of the instruction at `position` (execution order), if attributed.
    pub(super) fn get(&self, position: usize) -> Option<(u32, Vec<String>)> {
        if position >= self.trusted {
            return None;
        }
        let frame = self.frames.get(position)?;
        Some((frame.depth, frame.lines.iter().map(|line| (*line).to_owned()).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::instructions::{SYSTEM_PROGRAM, TOKEN_PROGRAM};
    use super::*;

    const APP: &str = "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8";
    const TOKEN: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";

    fn app() -> Pubkey {
        decode_array(APP).expect("valid address")
    }

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| (*line).to_owned()).collect()
    }

    fn outer(program: Pubkey) -> Expected {
        Expected { program, outer: true, height: None }
    }

    fn inner(program: Pubkey, height: Option<u32>) -> Expected {
        Expected { program, outer: false, height }
    }

    fn log() -> Vec<String> {
        lines(&[
            &format!("Program {APP} invoke [1]"),
            "Program log: before",
            &format!("Program {TOKEN} invoke [2]"),
            "Program log: Instruction: Transfer",
            &format!("Program {TOKEN} success"),
            "Program log: after",
            &format!("Program {APP} consumed 10 of 20 compute units"),
            &format!("Program {APP} success"),
            "Program 11111111111111111111111111111111 invoke [1]",
            "Program 11111111111111111111111111111111 success",
        ])
    }

    #[test]
    fn nested_frames_keep_their_own_lines() {
        let messages = log();
        let expected = [outer(app()), inner(TOKEN_PROGRAM, None), outer(SYSTEM_PROGRAM)];
        let attribution = attribute(&messages, &expected, false);
        let app_lines = lines(&[
            "Program log: before",
            "Program log: after",
            &format!("Program {APP} consumed 10 of 20 compute units"),
        ]);
        assert_eq!(attribution.get(0), Some((1, app_lines)));
        assert_eq!(attribution.get(1), Some((2, lines(&["Program log: Instruction: Transfer"]))));
        assert_eq!(attribution.get(2), Some((1, Vec::new())));
        assert_eq!(attribution.get(3), None);
    }

    #[test]
    fn a_missing_frame_in_a_successful_transaction_attributes_nothing() {
        let messages = log();
        // The node's inner instruction list names one more instruction than the log shows.
        let expected =
            [outer(app()), inner(TOKEN_PROGRAM, None), inner(TOKEN_PROGRAM, None), outer(SYSTEM_PROGRAM)];
        let attribution = attribute(&messages, &expected, false);
        assert!((0..4).all(|i| attribution.get(i).is_none()));
        // A declared stack height that disagrees with the log is a mismatch too.
        let expected = [outer(app()), inner(TOKEN_PROGRAM, Some(3)), outer(SYSTEM_PROGRAM)];
        assert!(attribute(&messages, &expected, false).get(0).is_none());
    }

    #[test]
    fn truncated_and_failed_logs_attribute_their_prefix() {
        let mut messages = log();
        messages.truncate(4);
        messages.push("Log truncated".to_owned());
        let expected = [outer(app()), inner(TOKEN_PROGRAM, Some(2)), outer(SYSTEM_PROGRAM)];
        let attribution = attribute(&messages, &expected, false);
        assert_eq!(attribution.get(0), Some((1, lines(&["Program log: before"]))));
        assert_eq!(attribution.get(1), Some((2, lines(&["Program log: Instruction: Transfer"]))));
        assert_eq!(attribution.get(2), None);

        // Failed in the token transfer: the second top-level instruction never ran.
        let mut messages = log();
        messages.truncate(4);
        messages.push(format!("Program {TOKEN} failed: custom program error: 0x1"));
        messages.push(format!("Program {APP} failed: custom program error: 0x1"));
        let attribution = attribute(&messages, &expected, true);
        assert_eq!(attribution.get(0), Some((1, lines(&["Program log: before"]))));
        assert_eq!(attribution.get(2), None);
        // The same log without the failure is not trusted.
        assert!(attribute(&messages, &expected, false).get(0).is_none());
    }

    #[test]
    fn out_of_order_frames_are_not_trusted() {
        let mut messages = log();
        messages.swap(4, 7);
        let expected = [outer(app()), inner(TOKEN_PROGRAM, None), outer(SYSTEM_PROGRAM)];
        assert!(attribute(&messages, &expected, true).get(0).is_none());
    }
}
