//! Arbitrary text as an admin command line (console, `mmp`, the admin socket all parse with
//! `sb_admin::parse`). Properties: no panic; parsing a line equals parsing its words; a
//! parsed command survives the admin socket's JSON encoding unchanged; the error text names
//! the problem; a secret filled in after the prompt is kept, never shows in the command's
//! `Debug` form (which reaches logs), and once filled in no further prompt is asked.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_admin::{Command, Secret, command::split_words, parse, parse_words};

/// Two secrets to fill in where a command prompts for one: the `Debug` forms of the two
/// results must be the same, or the secret shows. (Looking for the secret's text in the
/// output instead is fooled by a user name that normalizes to it.)
const SECRET_A: &str = "fuzz-secret-a";
const SECRET_B: &str = "fuzz-secret-b";

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse(line);
    match split_words(line) {
        Ok(words) => assert_eq!(parse_words(&words), parsed),
        Err(error) => assert_eq!(Err(error), parsed),
    }
    let command = match parsed {
        Ok(command) => command,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    let json = serde_json::to_string(&command).expect("a command serializes");
    let back: Command = serde_json::from_str(&json).expect("a serialized command parses");
    assert_eq!(back, command);

    let _ = command.is_streaming();
    if command.secret_request().is_some() {
        let filled_a = command.clone().with_secret(Secret::new(SECRET_A));
        let filled_b = command.with_secret(Secret::new(SECRET_B));
        assert!(
            filled_a.secret_request().is_none(),
            "{filled_a:?} still asks for a secret"
        );
        assert_ne!(filled_a, filled_b, "the secret was not filled in");
        assert_eq!(format!("{filled_a:?}"), format!("{filled_b:?}"), "the secret shows");
    }
});
