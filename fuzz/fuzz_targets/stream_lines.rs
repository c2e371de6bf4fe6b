//! The agent-output line splitter, against a plain reference: split on `\n`,
//! keep at most `max_line` bytes of each line (flagging the cut), drop one
//! trailing `\r` of a terminated line, deliver a final unterminated line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn reference(input: &[u8], max_line: usize) -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    let last = pieces.pop().unwrap_or_default(); // the part after the final newline
    for piece in pieces {
        let mut kept = piece[..piece.len().min(max_line)].to_vec();
        if kept.last() == Some(&b'\r') {
            kept.pop();
        }
        out.push((kept, piece.len() > max_line));
    }
    if !last.is_empty() {
        out.push((last[..last.len().min(max_line)].to_vec(), last.len() > max_line));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&max, input)) = data.split_first() else { return };
    let max_line = usize::from(max % 64) + 1;
    let mut lines = Vec::new();
    aloop::supervise::read_lines(input, max_line, |line, cut| {
        lines.push((line, cut));
        true
    })
    .unwrap();
    assert_eq!(lines, reference(input, max_line));
});
