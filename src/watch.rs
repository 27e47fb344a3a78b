//! Watching a decoding in the terminal: the canvas of one row redrawn after every step, its
//! masked positions as `░`, what the step committed, edited or masked again highlighted, with the
//! model calls so far — the picture of diffusion decoding (`dlm generate --watch`, the
//! quickstart).
//!
//! [`LiveView`] is an [`Observer`] of any sampler of this library: pass it to
//! `MaskedSampler::sample_observed`, `BlockSampler::generate_observed` or
//! [`crate::generate::Checkpoint::generate_stepwise`]. On a terminal it redraws one frame in
//! place (with a short pause per frame, so that a fast decoding stays watchable); written to a file
//! or a pipe it prints the frames at which a quarter, a half and three quarters of the masked
//! positions are decoded, and the last one.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use dlm_discrete::sampler::{Observer, Start, TrajectoryStep};
use unicode_width::UnicodeWidthStr;

/// What shows a masked position.
pub const MASK_GLYPH: char = '░';

/// What the last step did to a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Unchanged,
    Committed,
    Edited,
    Remasked,
}

/// One row of a decoding: its tokens and what the last step changed.
#[derive(Debug, Clone, Default)]
pub struct Canvas {
    tokens: Vec<i64>,
    marks: Vec<Mark>,
    mask_id: i64,
    nfe: usize,
    steps: usize,
}

impl Canvas {
    /// A canvas starting from `tokens`, whose masked positions hold `mask_id`.
    pub fn new(tokens: Vec<i64>, mask_id: u32) -> Self {
        let marks = vec![Mark::Unchanged; tokens.len()];
        Self { tokens, marks, mask_id: i64::from(mask_id), nfe: 0, steps: 0 }
    }

    /// Applies row `row` of `step` (positions past the canvas grow it with masks).
    pub fn apply(&mut self, step: &TrajectoryStep, row: usize) {
        self.marks.fill(Mark::Unchanged);
        self.nfe = step.nfe;
        self.steps += 1;
        let Some(changes) = step.rows.get(row) else { return };
        let mut set = |position: usize, token: i64, mark: Mark| {
            if position >= self.tokens.len() {
                self.tokens.resize(position + 1, self.mask_id);
                self.marks.resize(position + 1, Mark::Unchanged);
            }
            self.tokens[position] = token;
            self.marks[position] = mark;
        };
        for commit in &changes.committed {
            set(commit.position, commit.token, Mark::Committed);
        }
        for commit in &changes.edited {
            set(commit.position, commit.token, Mark::Edited);
        }
        for &position in &changes.remasked {
            set(position, self.mask_id, Mark::Remasked);
        }
    }

    /// The tokens now.
    pub fn tokens(&self) -> &[i64] {
        &self.tokens
    }

    /// Positions still masked.
    pub fn masked(&self) -> usize {
        self.tokens.iter().filter(|&&t| t == self.mask_id).count()
    }

    /// Model calls so far.
    pub fn nfe(&self) -> usize {
        self.nfe
    }

    /// Steps applied.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The canvas as lines of at most `width` terminal cells (at least 1; a token wider than that
    /// has a line of its own): every token through
    /// `decode` (a line break shown as `↵`, a tab as `→`), masks as [`MASK_GLYPH`]; with `colour`,
    /// ANSI styles mark this step's commits (bold green), edits (bold yellow) and re-masked
    /// positions (red), and dim the masks.
    pub fn render(
        &self,
        decode: &dyn Fn(i64) -> String,
        width: usize,
        colour: bool,
    ) -> Vec<String> {
        let width = width.max(1);
        let mut lines = vec![String::new()];
        let mut column = 0;
        for (&token, &mark) in self.tokens.iter().zip(&self.marks) {
            let text: String = if token == self.mask_id {
                MASK_GLYPH.to_string()
            } else {
                decode(token)
                    .chars()
                    .map(|c| match c {
                        '\n' => '↵',
                        '\t' => '→',
                        c if c.is_control() => '�',
                        c => c,
                    })
                    .collect()
            };
            let cells = text.width();
            if column > 0 && column + cells > width {
                lines.push(String::new());
                column = 0;
            }
            let style = match (colour, mark, token == self.mask_id) {
                (false, _, _) => None,
                (true, Mark::Committed, _) => Some("1;32"),
                (true, Mark::Edited, _) => Some("1;33"),
                (true, Mark::Remasked, _) => Some("31"),
                (true, Mark::Unchanged, true) => Some("2"),
                (true, Mark::Unchanged, false) => None,
            };
            let line = lines.last_mut().expect("lines starts with one line");
            match style {
                Some(style) => line.push_str(&format!("\x1b[{style}m{text}\x1b[0m")),
                None => line.push_str(&text),
            }
            column += cells;
        }
        lines
    }
}

/// How frames are written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Redraw in place after every step, pausing this long, on a terminal of this many rows and
    /// columns.
    Live { frame_pause: Duration, colour: bool, rows: usize, columns: usize },
    /// Print the frames at each quarter of the decoding and the last.
    Snapshots,
}

/// An [`Observer`] that draws row 0 of a decoding to a terminal (see the module documentation).
pub struct LiveView<'a> {
    canvas: Canvas,
    decode: Box<dyn Fn(i64) -> String + 'a>,
    out: Box<dyn Write + 'a>,
    mode: Mode,
    width: usize,
    /// Lines of the frame on screen (live mode).
    drawn: usize,
    /// Masked positions at the start.
    to_decode: usize,
    /// Quarters of the decoding printed (snapshot mode).
    quarters: usize,
    /// A step changed the canvas since the last frame printed (snapshot mode).
    undrawn: bool,
    error: Option<std::io::Error>,
}

impl<'a> LiveView<'a> {
    /// Draws to standard error: live when it is a terminal whose size can be read (in colour
    /// unless `NO_COLOR` is set), else as snapshots. `decode` gives a token's text.
    pub fn stderr(decode: impl Fn(i64) -> String + 'a) -> Self {
        let size = std::io::stderr()
            .is_terminal()
            .then(|| console::Term::stderr().size_checked())
            .flatten();
        let mode = match size {
            Some((rows, columns)) => {
                let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
                Mode::Live {
                    frame_pause: Duration::from_millis(40),
                    colour,
                    rows: usize::from(rows),
                    columns: usize::from(columns).max(1),
                }
            }
            None => Mode::Snapshots,
        };
        Self::new(decode, Box::new(std::io::stderr()), mode)
    }

    /// Prints snapshots (no escape codes) to `out`.
    pub fn snapshots(decode: impl Fn(i64) -> String + 'a, out: impl Write + 'a) -> Self {
        Self::new(decode, Box::new(out), Mode::Snapshots)
    }

    fn new(decode: impl Fn(i64) -> String + 'a, out: Box<dyn Write + 'a>, mode: Mode) -> Self {
        Self {
            canvas: Canvas::default(),
            decode: Box::new(decode),
            out,
            mode,
            width: 80,
            drawn: 0,
            to_decode: 0,
            quarters: 0,
            undrawn: false,
            error: None,
        }
    }

    /// Lines of at most `width` cells (default 80; live, at most the terminal's width).
    pub fn with_width(mut self, width: usize) -> Self {
        self.width = width.max(1);
        self
    }

    /// Pause after each live frame (default 40 ms; snapshots do not pause).
    pub fn with_frame_pause(mut self, pause: Duration) -> Self {
        if let Mode::Live { frame_pause, .. } = &mut self.mode {
            *frame_pause = pause;
        }
        self
    }

    /// The canvas as it stands.
    pub fn canvas(&self) -> &Canvas {
        &self.canvas
    }

    /// Draws the last frame (snapshot mode: unless it was printed after the last change) and
    /// reports the first error writing a frame, if any.
    ///
    /// # Errors
    /// The first I/O error of any frame.
    pub fn finish(mut self) -> std::io::Result<()> {
        if self.mode == Mode::Snapshots && self.undrawn {
            self.draw();
        }
        match self.error.take() {
            Some(error) => Err(error),
            None => self.out.flush(),
        }
    }

    fn frame(&self, colour: bool, width: usize) -> Vec<String> {
        let canvas = &self.canvas;
        let decoded = self.to_decode.saturating_sub(canvas.masked());
        let mut lines = vec![format!(
            "step {} · {} model calls · {decoded}/{} decoded",
            canvas.steps(),
            canvas.nfe(),
            self.to_decode
        )];
        lines.extend(canvas.render(&*self.decode, width, colour));
        lines
    }

    fn draw(&mut self) {
        self.undrawn = false;
        let result = match self.mode {
            Mode::Live { frame_pause, colour, rows, columns } => {
                let width = self.width.min(columns);
                // Terminal rows of the frame: a line wider than the terminal wraps.
                let plain = self.frame(false, width);
                let height: usize =
                    plain.iter().map(|line| line.width().div_ceil(columns).max(1)).sum();
                if height >= rows {
                    // Taller than the screen: the cursor cannot return to its top.
                    self.mode = Mode::Snapshots;
                    self.drawn = 0;
                    return self.draw();
                }
                let lines = if colour { self.frame(true, width) } else { plain };
                let mut text = String::new();
                if self.drawn > 0 {
                    // To the start of the frame on screen, then clear to the end of the screen.
                    text.push_str(&format!("\x1b[{}F\x1b[J", self.drawn));
                }
                for line in &lines {
                    text.push_str(line);
                    text.push('\n');
                }
                self.drawn = height;
                let result = self.out.write_all(text.as_bytes()).and_then(|()| self.out.flush());
                std::thread::sleep(frame_pause);
                result
            }
            Mode::Snapshots => {
                let mut text = self.frame(false, self.width).join("\n");
                text.push_str("\n\n");
                self.out.write_all(text.as_bytes())
            }
        };
        if let Err(error) = result {
            self.error.get_or_insert(error);
        }
    }
}

impl Observer for LiveView<'_> {
    fn started(&mut self, start: Start<'_>) {
        self.canvas = Canvas::new(start.tokens[..start.len].to_vec(), start.mask_id);
        self.to_decode = self.canvas.masked();
        self.drawn = 0;
        self.quarters = 0;
        self.draw();
    }

    fn step_done(&mut self, step: &TrajectoryStep) {
        self.canvas.apply(step, 0);
        self.undrawn = true;
        match self.mode {
            Mode::Live { .. } => self.draw(),
            Mode::Snapshots => {
                let decoded = self.to_decode.saturating_sub(self.canvas.masked());
                // The quarters this step has reached (all four once nothing is masked).
                let reached = if self.canvas.masked() == 0 {
                    4
                } else {
                    (4 * decoded / self.to_decode.max(1)).min(3)
                };
                if reached > self.quarters {
                    self.quarters = reached;
                    self.draw();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_discrete::sampler::{Commit, RowChanges, StepKind};

    fn step(nfe: usize, committed: &[(usize, i64)], remasked: &[usize]) -> TrajectoryStep {
        TrajectoryStep {
            kind: StepKind::Denoise,
            block: [0, 4],
            nfe,
            rows: vec![RowChanges {
                committed: committed
                    .iter()
                    .map(|&(position, token)| Commit { position, token, confidence: None })
                    .collect(),
                remasked: remasked.to_vec(),
                edited: Vec::new(),
            }],
        }
    }

    fn letter(token: i64) -> String {
        char::from(b'a' + token as u8).to_string()
    }

    #[test]
    fn the_canvas_applies_commits_and_remasks_and_wraps() {
        let mut canvas = Canvas::new(vec![9; 4], 9);
        canvas.apply(&step(1, &[(1, 0), (3, 2)], &[]), 0);
        assert_eq!(canvas.render(&letter, 80, false), ["░a░c"]);
        assert_eq!((canvas.masked(), canvas.nfe(), canvas.steps()), (2, 1, 1));
        canvas.apply(&step(2, &[(0, 3)], &[1]), 0);
        assert_eq!(canvas.render(&letter, 2, false), ["d░", "░c"]);
        // This step's commit in green, the re-mask in red, the older commit plain, masks dim.
        let coloured = canvas.render(&letter, 80, true).join("");
        assert_eq!(coloured, "\x1b[1;32md\x1b[0m\x1b[31m░\x1b[0m\x1b[2m░\x1b[0mc");
        // A position past the start grows the canvas.
        canvas.apply(&step(3, &[(5, 1)], &[]), 0);
        assert_eq!(canvas.render(&letter, 80, false), ["d░░c░b"]);
    }

    #[test]
    fn line_breaks_are_drawn_as_glyphs() {
        let mut canvas = Canvas::new(vec![0, 1], 9);
        canvas.apply(&step(1, &[], &[]), 0);
        let decode = |t: i64| if t == 0 { "\n".to_string() } else { "\tx".to_string() };
        assert_eq!(canvas.render(&decode, 80, false), ["↵→x"]);
    }

    fn live(rows: usize, columns: usize, out: &mut Vec<u8>) {
        let mode = Mode::Live { frame_pause: Duration::ZERO, colour: false, rows, columns };
        let mut view = LiveView::new(letter, Box::new(out), mode);
        view.started(Start { tokens: &[9; 4], batch: 1, len: 4, mask_id: 9 });
        view.step_done(&step(1, &[(0, 0), (1, 1)], &[]));
        view.step_done(&step(2, &[(2, 2), (3, 3)], &[]));
        view.finish().unwrap();
    }

    #[test]
    fn live_frames_return_to_their_top_counting_wrapped_rows() {
        let mut out = Vec::new();
        live(24, 80, &mut out);
        let text = String::from_utf8(out).unwrap();
        // Two rows per frame (the status and the canvas): each redraw goes two rows up.
        let frames: Vec<&str> = text.split("\x1b[2F\x1b[J").collect();
        assert_eq!(frames.len(), 3, "{text:?}");
        assert_eq!(frames[2], "step 2 · 2 model calls · 4/4 decoded\nabcd\n");
        // On 20 columns the status line (36 cells) takes two rows, the canvas (4 cells in lines
        // of 20) one.
        let mut out = Vec::new();
        live(24, 20, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("\x1b[3F\x1b[J").count(), 2, "{text:?}");
        // A frame as tall as the screen cannot be redrawn in place: snapshots instead.
        let mut out = Vec::new();
        live(2, 80, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('\x1b') && text.ends_with("4/4 decoded\nabcd\n\n"), "{text:?}");
    }

    #[test]
    fn wide_characters_take_two_cells() {
        let mut canvas = Canvas::new(vec![0, 1, 2], 9);
        canvas.apply(&step(1, &[], &[]), 0);
        let decode = |t: i64| ["日", "本", "x"][t as usize].to_string();
        assert_eq!(canvas.render(&decode, 4, false), ["日本", "x"]);
    }

    #[test]
    fn snapshots_print_each_quarter_once_and_the_last_frame() {
        let mut out = Vec::new();
        {
            let mut view = LiveView::snapshots(letter, &mut out);
            view.started(Start { tokens: &[9; 4], batch: 1, len: 4, mask_id: 9 });
            for (nfe, position) in (1..=4).zip(0..4) {
                view.step_done(&step(nfe, &[(position, position as i64)], &[]));
            }
            // A step after the last quarter (an edit, say) is drawn by `finish`.
            view.step_done(&step(5, &[], &[]));
            view.finish().unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        let frames: Vec<&str> = text.trim_end().split("\n\n").collect();
        assert_eq!(
            frames,
            [
                "step 0 · 0 model calls · 0/4 decoded\n░░░░",
                "step 1 · 1 model calls · 1/4 decoded\na░░░",
                "step 2 · 2 model calls · 2/4 decoded\nab░░",
                "step 3 · 3 model calls · 3/4 decoded\nabc░",
                "step 4 · 4 model calls · 4/4 decoded\nabcd",
                "step 5 · 5 model calls · 4/4 decoded\nabcd",
            ]
        );
    }
}
