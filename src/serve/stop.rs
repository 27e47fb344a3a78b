//! Stop strings on streamed text.

/// Cuts a stream of text at the first of its stop strings. Text that could be the start of a
/// stop string is held back until the next piece settles it, so what has been sent never needs
/// taking back.
#[derive(Debug, Clone, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    /// Everything received.
    text: String,
    /// Bytes of `text` sent so far.
    sent: usize,
    stopped: bool,
}

impl StopFilter {
    /// A filter for `stops` (none: everything passes).
    pub fn new(stops: Vec<String>) -> Self {
        Self { stops, ..Self::default() }
    }

    /// Whether a stop string was met.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Takes the next piece of text and returns what may be sent now.
    pub fn push(&mut self, piece: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.text.push_str(piece);
        if let Some(at) = self.stops.iter().filter_map(|stop| self.text.find(stop.as_str())).min() {
            self.stopped = true;
            return self.take_until(at);
        }
        // Hold back the longest tail that is a proper prefix of a stop string.
        let held = self
            .stops
            .iter()
            .flat_map(|stop| stop.char_indices().skip(1).map(move |(end, _)| &stop[..end]))
            .filter(|prefix| self.text.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let until = (self.text.len() - held).max(self.sent);
        self.take_until(until)
    }

    /// The end of the stream: whatever was held back.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        self.take_until(self.text.len())
    }

    fn take_until(&mut self, end: usize) -> String {
        let out = self.text[self.sent..end].to_string();
        self.sent = end;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut filter = StopFilter::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out: Vec<String> = pieces.iter().map(|p| filter.push(p)).collect();
        out.push(filter.finish());
        (out, filter.stopped())
    }

    #[test]
    fn text_is_cut_at_the_first_stop_string_even_across_pieces() {
        assert_eq!(run(&[], &["ab", "cd"]), (vec!["ab".into(), "cd".into(), String::new()], false));
        // "\n\n" split over two pieces: the first "\n" is held, then dropped with the stop.
        let (out, stopped) = run(&["\n\n"], &["one\n", "\ntwo"]);
        assert_eq!((out.concat(), stopped), ("one".to_string(), true));
        assert_eq!(out[0], "one");
        // A held prefix that turns out not to be a stop is sent with the next piece.
        let (out, stopped) = run(&["END"], &["xE", "Ny", "z"]);
        assert_eq!(out, ["x", "ENy", "z", ""]);
        assert!(!stopped);
        // The earliest of several stops wins; nothing after it is sent.
        let (out, _) = run(&["b", "a"], &["xxabc", "more"]);
        assert_eq!(out.concat(), "xx");
        // Stop strings of several bytes per character.
        let (out, stopped) = run(&["«»"], &["a«", "»b"]);
        assert_eq!((out.concat(), stopped), ("a".to_string(), true));
    }
}
