//! `loadgen scram-creds`: SCRAM stored keys for many bench users, so a peer server's account
//! files can be written directly (one process instead of one registration command per user).
//!
//! Output, one user per line: `name TAB salt TAB iterations TAB StoredKey-hex TAB ServerKey-hex`.
//! The salt is printable text (used as raw bytes, as Prosody's own salts are).

use crate::load::Pattern;
use sb_proto::sasl::{ScramCredentials, ScramHash, random_nonce};
use std::fmt::Write as _;
use std::io::Write as _;

pub struct CredsOptions {
    pub hash: ScramHash,
    pub iterations: u32,
    pub users: Pattern,
    pub passwords: Pattern,
    pub first: usize,
    pub count: usize,
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn line_for(options: &CredsOptions, index: usize) -> Result<String, String> {
    let salt = random_nonce().map_err(|err| format!("no randomness for a salt: {err}"))?;
    let password = options.passwords.expand(index);
    let creds = ScramCredentials::derive(options.hash, &password, salt.as_bytes(), options.iterations)
        .map_err(|err| format!("user {index}: {err}"))?;
    Ok(format!(
        "{}\t{salt}\t{}\t{}\t{}",
        options.users.expand(index),
        creds.iterations,
        hex(&creds.stored_key),
        hex(&creds.server_key)
    ))
}

/// Compute every line (PBKDF2 dominates: spread over the cores) and print them in order.
pub fn run(options: &CredsOptions) -> Result<(), String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
    let indices: Vec<usize> = (options.first..options.first + options.count).collect();
    let chunk = indices.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<String>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = indices
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|&i| line_for(options, i)).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a worker thread panicked".to_owned())))
            .collect()
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for part in results {
        for line in part? {
            writeln!(out, "{line}").map_err(|err| format!("writing the output: {err}"))?;
        }
    }
    out.flush().map_err(|err| format!("writing the output: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
    }

    #[test]
    fn lines_carry_keys_that_match_a_fresh_derivation() {
        let options = CredsOptions {
            hash: ScramHash::Sha256,
            iterations: 4096,
            users: Pattern("u{n}".into()),
            passwords: Pattern("p{n}".into()),
            first: 0,
            count: 1,
        };
        let line = line_for(&options, 3).unwrap();
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields[0], "u3");
        assert_eq!(fields[2], "4096");
        let again = ScramCredentials::derive(ScramHash::Sha256, "p3", fields[1].as_bytes(), 4096).unwrap();
        assert_eq!(fields[3], hex(&again.stored_key));
        assert_eq!(fields[4], hex(&again.server_key));
        assert_eq!(fields[3].len(), 64);
    }
}
