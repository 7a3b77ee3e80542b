//! The MMP command line: one-shot, batch and interactive, over the daemon's socket or directly
//! on the store.
//!
//! `mmp -d DIR [command...]`. Standard output carries nothing but the replies, so scripts can
//! read them; logs (warn and above) go to standard error. Exit status: 0 when every command
//! succeeded, 1 when one printed `FAILURE`, 2 on a usage error (bad options, or a one-shot
//! command that does not parse).

mod backend;
mod secrets;

use backend::Backend;
use sb_admin::{Command, HostnameCommand, Reply};
use secrets::SecretInput;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: mmp -d DIR [command...]\n\
    \n\
    With a command: run it and exit. Without one: read commands from standard input, one per\n\
    line (batch), or prompt for them on a terminal. `mmp -d DIR help` lists the commands.";

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    if let Err(err) = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Warn)
        .init()
    {
        eprintln!("mmp: logger: {err}");
    }
    let invocation = match parse_invocation(std::env::args().skip(1)) {
        Ok(Some(invocation)) => invocation,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("mmp: {message}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if !invocation.dir.is_dir() {
        println!("FAILURE: {} is not a directory", invocation.dir.display());
        return ExitCode::from(EXIT_FAILURE);
    }
    if !invocation.words.is_empty() {
        one_shot(&invocation)
    } else if io::stdin().is_terminal() {
        interactive(&invocation)
    } else {
        batch(&invocation)
    }
}

struct Invocation {
    dir: PathBuf,
    words: Vec<String>,
}

/// `Ok(None)` for `--help`.
fn parse_invocation(mut args: impl Iterator<Item = String>) -> Result<Option<Invocation>, String> {
    let mut dir = None;
    let mut words = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" if words.is_empty() => return Ok(None),
            "-d" | "--dir" if words.is_empty() => {
                dir = Some(args.next().ok_or_else(|| format!("{arg} needs a directory"))?);
            }
            "--" if words.is_empty() => {
                words.extend(args.by_ref());
            }
            option if words.is_empty() && option.starts_with('-') => {
                return Err(format!("unknown option '{option}'"));
            }
            _ => words.push(arg),
        }
    }
    let dir = dir.ok_or("missing -d DIR")?;
    Ok(Some(Invocation {
        dir: PathBuf::from(dir),
        words,
    }))
}

fn print_reply(reply: &Reply) {
    if !reply.text.is_empty() {
        let mut out = io::stdout().lock();
        // A closed stdout (`mmp ... | head`) is not worth a panic.
        let _ = writeln!(out, "{}", reply.text);
        let _ = out.flush();
    }
}

fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

fn one_shot(invocation: &Invocation) -> ExitCode {
    let command = match sb_admin::parse_words(&invocation.words) {
        Ok(command) => command,
        Err(err) => {
            print_reply(&Reply::from(err));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let stdin = io::stdin();
    let mut input = if stdin.is_terminal() {
        SecretInput::Terminal
    } else {
        SecretInput::Lines(Box::new(stdin.lock().lines()))
    };
    // Appliance commands need neither the daemon nor the store: do not open the store (and
    // hold its lock against an xmppd restarting) for them.
    if command.runs_in_front_end() {
        let reply = run_in_front_end(&invocation.dir, command, &mut input);
        print_reply(&reply);
        return exit_code(reply.ok);
    }
    let mut backend = match Backend::connect(&invocation.dir) {
        Ok(backend) => backend,
        Err(reply) => {
            print_reply(&reply);
            return exit_code(false);
        }
    };
    let reply = run(&invocation.dir, &mut backend, command, &mut input);
    print_reply(&reply);
    exit_code(reply.ok)
}

/// Fill in the secret a command needs, then execute it. A streaming command (`syslog follow`)
/// prints its lines as they come, until interrupted (Ctrl-C) or stdout closes.
fn run(dir: &std::path::Path, backend: &mut Backend, command: Command, input: &mut SecretInput<'_>) -> Reply {
    if command.runs_in_front_end() {
        return run_in_front_end(dir, command, input);
    }
    let command = match with_secret(command, input) {
        Ok(command) => command,
        Err(reply) => return reply,
    };
    if command.is_streaming() {
        return backend.stream(command, |line| {
            let mut out = io::stdout().lock();
            writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
        });
    }
    backend.execute(command)
}

fn with_secret(command: Command, input: &mut SecretInput<'_>) -> Result<Command, Reply> {
    match command.secret_request() {
        None => Ok(command),
        Some(request) => match secrets::read(request, input) {
            Ok(secret) => Ok(command.with_secret(secret)),
            Err(reason) => Err(Reply::failure(reason)),
        },
    }
}

/// An appliance command, on this machine (see [`Command::runs_in_front_end`]).
fn run_in_front_end(dir: &std::path::Path, command: Command, input: &mut SecretInput<'_>) -> Reply {
    match with_secret(command, input) {
        Ok(command) => sb_admin::appliance::execute_in_front_end_in(dir, command),
        Err(reply) => reply,
    }
}

/// Commands from standard input, one per line; a secret a command needs is read from the lines
/// that follow it. Blank lines and `#` comments are skipped.
fn batch(invocation: &Invocation) -> ExitCode {
    let mut backend = match Backend::connect(&invocation.dir) {
        Ok(backend) => backend,
        Err(reply) => {
            print_reply(&reply);
            return exit_code(false);
        }
    };
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    let mut all_ok = true;
    while let Some(line) = lines.next() {
        let line = match line {
            Ok(line) => line,
            Err(err) => {
                print_reply(&Reply::failure(format!("reading standard input: {err}")));
                return exit_code(false);
            }
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let reply = match sb_admin::parse(line) {
            Ok(command) => run(
                &invocation.dir,
                &mut backend,
                command,
                &mut SecretInput::Lines(Box::new(&mut lines)),
            ),
            Err(err) => Reply::from(err),
        };
        all_ok &= reply.ok;
        print_reply(&reply);
    }
    exit_code(all_ok)
}

/// The `<hostname>> ` prompt. Each command finds the daemon (or the store) afresh, so a daemon
/// started meanwhile is used, and the store is not held locked while the operator types. The
/// operator saw every FAILURE already, so leaving the prompt exits 0.
fn interactive(invocation: &Invocation) -> ExitCode {
    let stdin = io::stdin();
    loop {
        let hostname = match Backend::connect(&invocation.dir) {
            Ok(mut backend) => {
                let reply = backend.execute(Command::Hostname(HostnameCommand::Show));
                if reply.ok { reply.text } else { "mmp".to_owned() }
            }
            Err(_) => "mmp".to_owned(),
        };
        print!("{hostname}> ");
        let _ = io::stdout().flush();
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => {
                println!();
                return ExitCode::SUCCESS;
            }
            Ok(_) => {}
            Err(err) => {
                print_reply(&Reply::failure(format!("reading standard input: {err}")));
                return exit_code(false);
            }
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "exit" || line == "quit" {
            return ExitCode::SUCCESS;
        }
        let reply = match sb_admin::parse(line) {
            Ok(command) if command.runs_in_front_end() => {
                run_in_front_end(&invocation.dir, command, &mut SecretInput::Terminal)
            }
            Ok(command) => match Backend::connect(&invocation.dir) {
                Ok(mut backend) => run(&invocation.dir, &mut backend, command, &mut SecretInput::Terminal),
                Err(reply) => reply,
            },
            Err(err) => Reply::from(err),
        };
        print_reply(&reply);
    }
}
