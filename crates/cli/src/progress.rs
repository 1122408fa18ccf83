//! The terminal display of backfill progress: one bar per chain at the bottom of stderr, redrawn a few times a
//! second, with log lines printed above it. Only when stderr is a terminal and logs are for humans; otherwise the
//! indexer logs its periodic "indexing progress" line instead.

use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use chainmux_indexer::ProgressBoard;
use chainmux_indexer::progress::render_line;
use tokio_util::sync::CancellationToken;

/// How often the bars are redrawn.
const REDRAW: Duration = Duration::from_millis(250);
/// Width of a bar, between its brackets.
const BAR_WIDTH: usize = 24;
/// Lines are cut to the terminal's width (`COLUMNS`, else this) minus one: a wrapped line would break the erase.
const DEFAULT_COLUMNS: usize = 80;

/// Whether progress is shown as bars: stderr is a terminal that understands cursor movement, and the logs are
/// for humans (JSON logs are for machines, even on a terminal).
pub(crate) fn show_bars(stderr_is_terminal: bool, term: Option<&str>, json_logs: bool) -> bool {
    stderr_is_terminal && !json_logs && term.is_some_and(|t| !t.is_empty() && t != "dumb")
}

/// The display, when [`init`] chose bars.
static DISPLAY: OnceLock<Display> = OnceLock::new();

/// Decides once, at start-up, whether this process shows bars; `true` when it does.
pub(crate) fn init(json_logs: bool) -> bool {
    let term = std::env::var("TERM").ok();
    if !show_bars(io::stderr().is_terminal(), term.as_deref(), json_logs) {
        return false;
    }
    let columns = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(DEFAULT_COLUMNS);
    DISPLAY.get_or_init(|| Display {
        board: ProgressBoard::new(),
        columns,
        screen: Mutex::new(Screen::default()),
    });
    true
}

/// The board indexers report to, when bars are shown.
pub(crate) fn board() -> Option<ProgressBoard> {
    DISPLAY.get().map(|d| d.board.clone())
}

/// Redraws the bars until `cancel`, then erases them.
pub(crate) fn spawn_renderer(cancel: CancellationToken) {
    let Some(display) = DISPLAY.get() else { return };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(REDRAW);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => display.redraw(),
            }
        }
        display.clear();
    });
}

struct Display {
    board: ProgressBoard,
    columns: usize,
    screen: Mutex<Screen>,
}

/// What is on the terminal below the last log line.
#[derive(Default)]
struct Screen {
    frame: Vec<String>,
    /// Lines of `frame` currently drawn.
    drawn: usize,
}

impl Display {
    fn screen(&self) -> MutexGuard<'_, Screen> {
        self.screen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn redraw(&self) {
        let progress = self.board.snapshot();
        let width = progress.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        let frame = progress
            .iter()
            .map(|(name, p)| cut(render_line(name, width, p, BAR_WIDTH), self.columns))
            .collect();
        let mut screen = self.screen();
        screen.frame = frame;
        let mut out = io::stderr().lock();
        // Errors writing to the terminal are ignored: progress is cosmetic.
        let _ = erase(&mut out, screen.drawn).and_then(|()| draw(&mut out, &screen.frame));
        screen.drawn = screen.frame.len();
    }

    fn clear(&self) {
        let mut screen = self.screen();
        let _ = erase(&mut io::stderr().lock(), screen.drawn);
        screen.drawn = 0;
        screen.frame.clear();
    }

    /// Prints a log line above the bars.
    fn print(&self, line: &[u8]) -> io::Result<()> {
        let mut screen = self.screen();
        let mut out = io::stderr().lock();
        erase(&mut out, screen.drawn)?;
        screen.drawn = 0;
        out.write_all(line)?;
        draw(&mut out, &screen.frame)?;
        screen.drawn = screen.frame.len();
        Ok(())
    }
}

/// `line` cut to fit `columns - 1` characters.
fn cut(mut line: String, columns: usize) -> String {
    if let Some((at, _)) = line.char_indices().nth(columns.saturating_sub(1)) {
        line.truncate(at);
    }
    line
}

/// Moves the cursor up over the `lines` drawn last and clears from there down.
fn erase(out: &mut impl Write, lines: usize) -> io::Result<()> {
    if lines > 0 { write!(out, "\x1b[{lines}F\x1b[J") } else { Ok(()) }
}

fn draw(out: &mut impl Write, frame: &[String]) -> io::Result<()> {
    for line in frame {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// The log writer: stderr, with log lines printed above the bars when they are shown.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The formatter writes each event with one `write_all`, so each call is whole lines.
        match DISPLAY.get() {
            Some(display) => display.print(buf).map(|()| buf.len()),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_on_a_capable_terminal_with_human_logs() {
        assert!(show_bars(true, Some("xterm-256color"), false));
        assert!(!show_bars(false, Some("xterm-256color"), false), "not a terminal: log lines");
        assert!(!show_bars(true, Some("xterm-256color"), true), "JSON logs: log lines");
        assert!(!show_bars(true, Some("dumb"), false), "no cursor movement");
        assert!(!show_bars(true, Some(""), false));
        assert!(!show_bars(true, None, false));
    }

    #[test]
    fn erasing_moves_up_over_the_drawn_lines() {
        let mut out = Vec::new();
        erase(&mut out, 0).expect("writing to a Vec");
        assert!(out.is_empty());
        erase(&mut out, 3).expect("writing to a Vec");
        assert_eq!(out, b"\x1b[3F\x1b[J");
    }

    #[test]
    fn lines_are_cut_short_of_the_last_column() {
        assert_eq!(cut("abcdef".to_owned(), 4), "abc");
        assert_eq!(cut("abc".to_owned(), 80), "abc");
        assert_eq!(cut("h\u{e9}llo".to_owned(), 3), "h\u{e9}");
    }
}
