//! Secrets a command needs: typed without echo on a terminal, or read as lines when piped.

use sb_admin::{Secret, SecretPrompt};
use std::io;

pub enum SecretInput<'a> {
    /// Prompt on the terminal, without echo.
    Terminal,
    /// The next lines of standard input (one-shot and batch with piped input).
    Lines(Box<dyn Iterator<Item = io::Result<String>> + 'a>),
}

/// The secret, asked twice when the request wants a confirmation; `Err` is the FAILURE reason.
pub fn read(request: SecretPrompt, input: &mut SecretInput<'_>) -> Result<Secret, String> {
    // "Enter password" -> "password", for the messages below.
    let what = request.prompt.strip_prefix("Enter ").unwrap_or(request.prompt);
    let first = read_one(request.prompt, what, input)?;
    if let Some(confirm) = request.confirm {
        let second = read_one(confirm, what, input)?;
        if first != second {
            return Err(format!("{what}s do not match"));
        }
    }
    Ok(Secret::new(first))
}

fn read_one(prompt: &str, what: &str, input: &mut SecretInput<'_>) -> Result<String, String> {
    match input {
        SecretInput::Terminal => {
            rpassword::prompt_password(format!("{prompt}: ")).map_err(|err| format!("cannot read the {what}: {err}"))
        }
        SecretInput::Lines(lines) => match lines.next() {
            Some(Ok(line)) => Ok(line.strip_suffix('\r').unwrap_or(&line).to_owned()),
            Some(Err(err)) => Err(format!("cannot read the {what}: {err}")),
            None => Err(format!("no {what} given on standard input")),
        },
    }
}
