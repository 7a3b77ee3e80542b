//! The line editing a serial console's terminal gives the MMP prompt, done here because an SSH
//! client with a pty sends every key as typed: printable characters echo, Backspace/Delete
//! erase one character, Ctrl-U the line, Ctrl-C abandons it, Ctrl-D on an empty line ends the
//! session, Enter submits. Escape sequences (arrow keys) are swallowed rather than inserted. A
//! secret is edited the same way with nothing echoed.

/// What one key did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// Keep reading; send these bytes back to the terminal.
    Echo(Vec<u8>),
    /// The line is complete (without its line end).
    Line(String),
    /// Ctrl-C: the line was abandoned.
    Interrupt,
    /// Ctrl-D on an empty line.
    EndOfInput,
}

/// Longest line kept; more is ignored (and rung as a bell), so a paste cannot grow memory.
pub const MAX_LINE_BYTES: usize = 4096;

#[derive(Default)]
enum Escape {
    #[default]
    None,
    /// ESC seen.
    Start,
    /// ESC `[` or ESC `O` seen: parameters until a final byte.
    Sequence,
}

#[derive(Default)]
pub struct LineEditor {
    line: Vec<u8>,
    escape: Escape,
    /// The last key was CR: a following LF is the same line end.
    after_cr: bool,
}

impl LineEditor {
    pub fn new() -> LineEditor {
        LineEditor::default()
    }

    /// Feed one byte from the client; `echo` false for secrets.
    pub fn key(&mut self, byte: u8, echo: bool) -> Key {
        let after_cr = std::mem::take(&mut self.after_cr);
        match self.escape {
            Escape::Start => {
                self.escape = if byte == b'[' || byte == b'O' {
                    Escape::Sequence
                } else {
                    Escape::None
                };
                return Key::Echo(Vec::new());
            }
            Escape::Sequence => {
                if (0x40..=0x7e).contains(&byte) {
                    self.escape = Escape::None;
                }
                return Key::Echo(Vec::new());
            }
            Escape::None => {}
        }
        match byte {
            b'\r' => {
                self.after_cr = true;
                Key::Line(self.take())
            }
            b'\n' if after_cr => Key::Echo(Vec::new()),
            b'\n' => Key::Line(self.take()),
            0x03 => {
                self.line.clear();
                Key::Interrupt
            }
            0x04 if self.line.is_empty() => Key::EndOfInput,
            0x7f | 0x08 => match self.pop_char() {
                true if echo => Key::Echo(b"\x08 \x08".to_vec()),
                _ => Key::Echo(Vec::new()),
            },
            0x15 => {
                let erased = String::from_utf8_lossy(&self.line).chars().count();
                self.line.clear();
                Key::Echo(if echo { b"\x08 \x08".repeat(erased) } else { Vec::new() })
            }
            0x1b => {
                self.escape = Escape::Start;
                Key::Echo(Vec::new())
            }
            byte if byte < 0x20 && byte != b'\t' => Key::Echo(Vec::new()),
            byte if self.line.len() >= MAX_LINE_BYTES => {
                let _ = byte;
                Key::Echo(b"\x07".to_vec())
            }
            byte => {
                self.line.push(byte);
                Key::Echo(if echo { vec![byte] } else { Vec::new() })
            }
        }
    }

    fn take(&mut self) -> String {
        let line = std::mem::take(&mut self.line);
        String::from_utf8_lossy(&line).into_owned()
    }

    /// Remove the last character (all of its UTF-8 bytes); false when the line was empty.
    fn pop_char(&mut self) -> bool {
        // A continuation byte is 10xxxxxx: keep popping until the character's lead byte is gone.
        let mut popped = false;
        while let Some(byte) = self.line.pop() {
            popped = true;
            if byte & 0xc0 != 0x80 {
                break;
            }
        }
        popped
    }
}

/// Text for a terminal in raw mode: every line feed becomes CR LF.
pub fn crlf(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 8);
    for byte in text.bytes() {
        if byte == b'\n' {
            out.push(b'\r');
        }
        out.push(byte);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(editor: &mut LineEditor, bytes: &[u8], echo: bool) -> (Vec<u8>, Vec<Key>) {
        let mut echoed = Vec::new();
        let mut events = Vec::new();
        for byte in bytes {
            match editor.key(*byte, echo) {
                Key::Echo(bytes) => echoed.extend(bytes),
                other => events.push(other),
            }
        }
        (echoed, events)
    }

    #[test]
    fn typing_echoes_and_enter_submits() {
        let mut editor = LineEditor::new();
        let (echoed, events) = feed(&mut editor, b"xmpp status\r\n", true);
        assert_eq!(echoed, b"xmpp status");
        assert_eq!(events, [Key::Line("xmpp status".into())]);
        // LF alone ends a line too (a client without a pty sends that).
        let (_, events) = feed(&mut editor, b"help\n\n", true);
        assert_eq!(events, [Key::Line("help".into()), Key::Line(String::new())]);
    }

    #[test]
    fn backspace_erases_whole_characters_and_ctrl_u_the_line() {
        let mut editor = LineEditor::new();
        let (echoed, events) = feed(&mut editor, "xmpq\x7fp é\x7fe\r".as_bytes(), true);
        assert_eq!(events, [Key::Line("xmpp e".into())]);
        let (_, events) = feed(&mut editor, "éa\x7f\r".as_bytes(), true);
        assert_eq!(events, [Key::Line("é".into())]);
        assert!(echoed.windows(3).any(|w| w == b"\x08 \x08"));
        let (echoed, events) = feed(&mut editor, b"garbage\x15help\r", true);
        assert_eq!(events, [Key::Line("help".into())]);
        assert_eq!(
            echoed,
            [b"garbage".to_vec(), b"\x08 \x08".repeat(7), b"help".to_vec()].concat()
        );
        // Backspace on an empty line echoes nothing.
        let (echoed, _) = feed(&mut editor, b"\x7f", true);
        assert!(echoed.is_empty());
    }

    #[test]
    fn secrets_echo_nothing_and_escape_sequences_are_swallowed() {
        let mut editor = LineEditor::new();
        let (echoed, events) = feed(&mut editor, b"s3cret!\x7f!\r", false);
        assert!(echoed.is_empty());
        assert_eq!(events, [Key::Line("s3cret!".into())]);
        let (echoed, events) = feed(&mut editor, b"a\x1b[Ab\x1b[1;5Cc\x1bOd\r", true);
        assert_eq!(echoed, b"abc");
        assert_eq!(events, [Key::Line("abc".into())]);
    }

    #[test]
    fn ctrl_c_abandons_and_ctrl_d_ends_only_an_empty_line() {
        let mut editor = LineEditor::new();
        let (_, events) = feed(&mut editor, b"half\x03", true);
        assert_eq!(events, [Key::Interrupt]);
        let (_, events) = feed(&mut editor, b"x\x04\x7f\x04", true);
        assert_eq!(events, [Key::EndOfInput]);
    }

    #[test]
    fn a_line_has_a_bounded_length() {
        let mut editor = LineEditor::new();
        let long = vec![b'a'; MAX_LINE_BYTES + 10];
        let (echoed, _) = feed(&mut editor, &long, true);
        assert_eq!(echoed.iter().filter(|b| **b == 0x07).count(), 10);
        let (_, events) = feed(&mut editor, b"\r", true);
        assert_eq!(events, [Key::Line("a".repeat(MAX_LINE_BYTES))]);
    }

    #[test]
    fn crlf_turns_line_feeds_into_terminal_line_ends() {
        assert_eq!(crlf("a\nb\n"), b"a\r\nb\r\n");
    }
}
