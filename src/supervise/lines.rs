//! Splitting a byte stream into lines as its pieces arrive, without ever
//! holding more than `max_line` bytes of one line: the rest of an overlong
//! line is skipped and the kept part is flagged as cut. A line that arrives
//! whole within one piece is handed over from that piece, uncopied.

use std::io::{self, Read};

/// The state between pieces: the start of a line whose end has not come yet.
pub(crate) struct Lines {
    max_line: usize,
    line: Vec<u8>,
    cut: bool,
}

impl Lines {
    pub(crate) fn new(max_line: usize) -> Self {
        Self { max_line, line: Vec::new(), cut: false }
    }

    /// Hands each line that `piece` ends to `emit(line, cut)` (without its
    /// `\n` and one `\r` before it) and keeps the unfinished rest. Stops at
    /// the first error of `emit`.
    pub(crate) fn feed<E>(
        &mut self,
        mut piece: &[u8],
        mut emit: impl FnMut(&[u8], bool) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some(i) = memchr::memchr(b'\n', piece) {
            let chunk = &piece[..i];
            piece = &piece[i + 1..];
            if self.line.is_empty() && !self.cut && chunk.len() <= self.max_line {
                emit(chunk.strip_suffix(b"\r").unwrap_or(chunk), false)?;
            } else {
                self.keep(chunk);
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                let cut = std::mem::take(&mut self.cut);
                let result = emit(&self.line, cut);
                self.line.clear();
                result?;
            }
        }
        self.keep(piece);
        Ok(())
    }

    /// Delivers a final line that no `\n` ended.
    pub(crate) fn finish<E>(&mut self, emit: impl FnOnce(&[u8], bool) -> Result<(), E>) -> Result<(), E> {
        if self.line.is_empty() && !self.cut {
            return Ok(());
        }
        let cut = std::mem::take(&mut self.cut);
        let result = emit(&self.line, cut);
        self.line.clear();
        result
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = self.max_line.saturating_sub(self.line.len());
        if bytes.len() > room {
            self.cut = true;
        }
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Splits everything `pipe` yields into lines (see `Lines`); a final line
/// without `\n` is delivered. `emit` returns false to stop.
pub fn read_lines(
    mut pipe: impl Read,
    max_line: usize,
    mut emit: impl FnMut(Vec<u8>, bool) -> bool,
) -> io::Result<()> {
    let mut lines = Lines::new(max_line);
    let mut buf = vec![0u8; 64 * 1024];
    let mut each = |line: &[u8], cut: bool| if emit(line.to_vec(), cut) { Ok(()) } else { Err(()) };
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if lines.feed(&buf[..n], &mut each).is_err() {
            return Ok(());
        }
    }
    let _ = lines.finish(each);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        read_lines(input, max, |l, c| {
            out.push((l, c));
            true
        })
        .unwrap();
        out
    }

    /// The same input fed in pieces of every size gives the same lines.
    fn split_in_pieces(input: &[u8], max: usize, size: usize) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        let mut lines = Lines::new(max);
        let mut push = |l: &[u8], c: bool| {
            out.push((l.to_vec(), c));
            Ok::<(), ()>(())
        };
        for piece in input.chunks(size) {
            lines.feed(piece, &mut push).unwrap();
        }
        lines.finish(push).unwrap();
        out
    }

    #[test]
    fn splits_lines_and_keeps_a_final_partial_line() {
        assert_eq!(
            split(b"a\r\nbb\nccc", 10),
            vec![(b"a".to_vec(), false), (b"bb".to_vec(), false), (b"ccc".to_vec(), false)]
        );
    }

    #[test]
    fn cuts_overlong_lines_and_resumes_at_the_next() {
        assert_eq!(split(b"abcdef\nxy\n", 3), vec![(b"abc".to_vec(), true), (b"xy".to_vec(), false)]);
    }

    #[test]
    fn pieces_of_any_size_give_the_same_lines() {
        let input = b"one\r\ntwo is longer\n\nab\r\rcd\nlast without end";
        for max in [1, 3, 5, 100] {
            let whole = split(input, max);
            for size in 1..input.len() {
                assert_eq!(split_in_pieces(input, max, size), whole, "max {max}, pieces of {size}");
            }
        }
    }
}
