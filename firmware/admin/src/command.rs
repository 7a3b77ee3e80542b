//! Words, parse errors and usage lines shared by the command families.

/// Why a command line was not understood. Displayed after `FAILURE: `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no command given")]
    Empty,
    #[error("unknown command '{0}'")]
    UnknownCommand(String),
    #[error("{command}: missing {what}")]
    Missing { command: &'static str, what: &'static str },
    #[error("{command}: unexpected argument '{argument}'")]
    Unexpected { command: &'static str, argument: String },
    #[error("{command}: {reason}")]
    Invalid { command: &'static str, reason: String },
    #[error("unterminated quote")]
    UnterminatedQuote,
}

/// One line of `help`: how a command is written and what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub syntax: &'static str,
    pub summary: &'static str,
}

/// Split a line into words on white space; a double-quoted run is one word without its quotes.
pub fn split_words(line: &str) -> Result<Vec<String>, ParseError> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut in_quotes = false;
    for c in line.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                in_word = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_quotes {
        return Err(ParseError::UnterminatedQuote);
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

/// Read a family's arguments in order, with errors that name the command.
pub(crate) struct Args<'a> {
    command: &'static str,
    words: std::slice::Iter<'a, String>,
}

impl<'a> Args<'a> {
    pub(crate) fn new(command: &'static str, words: &'a [String]) -> Args<'a> {
        Args {
            command,
            words: words.iter(),
        }
    }

    pub(crate) fn required(&mut self, what: &'static str) -> Result<&'a str, ParseError> {
        self.words.next().map(String::as_str).ok_or(ParseError::Missing {
            command: self.command,
            what,
        })
    }

    pub(crate) fn optional(&mut self) -> Option<&'a str> {
        self.words.next().map(String::as_str)
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> Vec<&'a str> {
        self.words.by_ref().map(String::as_str).collect()
    }

    pub(crate) fn end(mut self) -> Result<(), ParseError> {
        match self.words.next() {
            None => Ok(()),
            Some(extra) => Err(ParseError::Unexpected {
                command: self.command,
                argument: extra.clone(),
            }),
        }
    }

    /// The address word of a `<service> listen <iface or address> <port>` command: the port
    /// must come as its own word.
    pub(crate) fn listen_address(&self, address: &str) -> Result<sb_store::ListenTarget, ParseError> {
        let target = sb_store::ListenTarget::parse(address).map_err(|e| self.invalid(e))?;
        if target.port.is_some() {
            return Err(self.invalid(format!(
                "give the port as its own word: {} <address> <port>",
                self.command
            )));
        }
        Ok(target)
    }

    pub(crate) fn port(&self, word: &str) -> Result<u16, ParseError> {
        word.parse::<u16>()
            .map_err(|_| self.invalid(format!("'{word}' is not a port (0-65535)")))
    }

    pub(crate) fn invalid(&self, reason: impl std::fmt::Display) -> ParseError {
        ParseError::Invalid {
            command: self.command,
            reason: reason.to_string(),
        }
    }
}

/// The error for a family word that names no known subcommand, e.g. `xmpp frobnicate`.
pub(crate) fn unknown_subcommand(prefix: &[&str], args: &[String]) -> ParseError {
    let mut words: Vec<&str> = prefix.to_vec();
    words.extend(args.iter().take(1).map(String::as_str));
    ParseError::UnknownCommand(words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_white_space_and_group_quotes() {
        assert_eq!(
            split_words("  pki selfsigned web \"CN:My Server\"\tx").unwrap(),
            vec!["pki", "selfsigned", "web", "CN:My Server", "x"]
        );
        assert_eq!(split_words("a \"\" b").unwrap(), vec!["a", "", "b"]);
        assert_eq!(split_words("   ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("a \"b"), Err(ParseError::UnterminatedQuote));
    }
}
