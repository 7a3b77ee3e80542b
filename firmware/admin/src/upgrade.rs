//! `upgrade <file>`, `upgrade status`, `upgrade rollback`: A/B firmware upgrades.
//!
//! `upgrade <file>` checks the signed image in the file area (where SFTP uploads and `pki`
//! files land) with the appliance's upgrade key before asking PID 1, so a refusal names its
//! reason at once (unsigned, corrupt, another board, truncated, too large). PID 1 checks it
//! again (it is what trusts the image), writes the inactive slot, boots it once and makes it
//! the default only when it is healthy; `upgrade status` shows both slots and the outcome.
//! Like `reboot`, these run in the front end (the console is root; PID 1's socket is root's).

use std::path::{Path, PathBuf};

use crate::command::{Args, ParseError, Usage};
use crate::{Admin, ApplianceHost, Family, Reply};
use sb_appliance::control::{UpgradeRequest, plain_file_name};
use sb_upgrade::state::SlotState;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpgradeCommand {
    Install { file: String },
    Status,
    Rollback,
}

impl Family for UpgradeCommand {
    const PREFIX: &'static [&'static str] = &["upgrade"];
    const USAGE: &'static [Usage] = &[
        Usage {
            syntax: "upgrade <file>",
            summary: "verify a signed upgrade image from the file area, write the other slot, boot it once",
        },
        Usage {
            syntax: "upgrade status",
            summary: "both boot slots, their versions and the last upgrade's outcome",
        },
        Usage {
            syntax: "upgrade rollback",
            summary: "boot the other slot once; it becomes the default when healthy",
        },
    ];

    fn parse(words: &[String]) -> Result<Self, ParseError> {
        let mut args = Args::new("upgrade", words);
        let command = match args.required("file, status or rollback")? {
            "status" => UpgradeCommand::Status,
            "rollback" => UpgradeCommand::Rollback,
            file if plain_file_name(file) => UpgradeCommand::Install { file: file.to_owned() },
            file => return Err(args.invalid(format!("{file:?} is not a file name in the file area"))),
        };
        args.end()?;
        Ok(command)
    }

    fn apply(self, _admin: &Admin) -> Reply {
        self.run(&ApplianceHost::system())
    }
}

impl UpgradeCommand {
    pub fn run(self, host: &ApplianceHost) -> Reply {
        if !host.on_appliance() {
            return Reply::failure(crate::appliance::NOT_ON_APPLIANCE);
        }
        match self {
            UpgradeCommand::Status => status(host),
            UpgradeCommand::Rollback => rollback(host),
            UpgradeCommand::Install { file } => install(host, &file),
        }
    }
}

fn state(host: &ApplianceHost) -> Option<SlotState> {
    std::fs::read_to_string(host.run_dir.join("upgrade"))
        .ok()
        .map(|text| SlotState::parse(&text))
}

fn status(host: &ApplianceHost) -> Reply {
    let Some(state) = state(host) else {
        return Reply::failure("PID 1 published no slot state (upgrades unavailable on this boot)");
    };
    let mut text = state.render();
    if let Some(writing) = &state.writing {
        text.push_str(&format!("\nWriting: slot {} ({})", writing.slot, writing.version));
    }
    Reply::output(text)
}

fn rollback(host: &ApplianceHost) -> Reply {
    let Some(state) = state(host) else {
        return Reply::failure("upgrades unavailable on this boot");
    };
    let Some(running) = state.running else {
        return Reply::failure("upgrades unavailable on this boot (not booted from a slot)");
    };
    let other = running.other();
    if state.version(other).is_empty() {
        return Reply::failure(format!("slot {other} holds no image to roll back to"));
    }
    match host.request_upgrade(&UpgradeRequest::Rollback) {
        reply if reply.ok => Reply::output(format!(
            "Booting slot {other} ({}) once; it becomes the default when healthy.\nSUCCESS",
            state.version(other)
        )),
        failure => failure,
    }
}

/// The file area on the appliance: xmppd's certificate folder on /data.
fn file_area(host: &ApplianceHost) -> PathBuf {
    host.data_mount.join("xmpp").join(crate::pki::CERTS_DIR_NAME)
}

fn install(host: &ApplianceHost, name: &str) -> Reply {
    let path = file_area(host).join(name);
    let key_file = host
        .board_file
        .parent()
        .unwrap_or(Path::new("/"))
        .join("upgrade-key.pub");
    let key = match std::fs::read_to_string(&key_file)
        .ok()
        .and_then(|t| sb_upgrade::parse_public_key(&t))
    {
        Some(key) => key,
        None => return Reply::failure(format!("no upgrade key in this image ({})", key_file.display())),
    };
    let board = board_name(&host.board_file);
    let verified = std::fs::File::open(&path).and_then(|mut file| {
        let len = file.metadata()?.len();
        Ok(sb_upgrade::bundle::verify(
            &mut file,
            len,
            &key,
            &board,
            sb_upgrade::bundle::MAX_PAYLOAD,
        ))
    });
    let verified = match verified {
        Err(err) => return Reply::failure(format!("{name}: {err}")),
        Ok(Err(err)) => return Reply::failure(format!("{name}: {err}")),
        Ok(Ok(verified)) => verified,
    };
    let Some(state) = state(host) else {
        return Reply::failure("upgrades unavailable on this boot (not booted through UEFI from a boot slot)");
    };
    if state.trial.is_some() {
        return Reply::failure("a slot is on trial: wait until it is the default (upgrade status)");
    }
    let manifest = verified.manifest;
    let target = state
        .running
        .map(|slot| slot.other().to_string())
        .unwrap_or_else(|| "the other slot".into());
    match host.request_upgrade(&UpgradeRequest::Install(name.to_owned())) {
        reply if reply.ok => Reply::output(format!(
            "{name}: version {} for board {}, signed with the {} key: verified.\n\
             PID 1 writes slot {target}, then reboots into it once; it becomes the default when healthy.\n\
             SUCCESS",
            manifest.version, manifest.board, manifest.key
        )),
        failure => failure,
    }
}

fn board_name(board_file: &Path) -> String {
    sb_appliance::Board::load(board_file)
        .map(|board| board.board.name)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, parse};
    use std::io::Cursor;
    use std::os::unix::net::UnixDatagram;

    struct Node {
        _dir: tempfile::TempDir,
        host: ApplianceHost,
        init: UnixDatagram,
        key: Vec<u8>,
    }

    fn appliance() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let host = ApplianceHost {
            settings_dir: dir.path().join("data/appliance"),
            run_dir: dir.path().join("run"),
            board_file: dir.path().join("etc/board.toml"),
            data_mount: dir.path().join("data"),
        };
        std::fs::create_dir_all(&host.run_dir).unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(file_area(&host)).unwrap();
        // The board file as the image tool writes it: the layers merged.
        let board = concat!(env!("CARGO_MANIFEST_DIR"), "/../../board/qemu-q35.toml");
        let merged = sb_appliance::Board::load_layered(Path::new(board)).unwrap().text;
        std::fs::write(&host.board_file, merged).unwrap();
        let key = sb_upgrade::bundle::generate_key().unwrap();
        let public = sb_upgrade::bundle::public_key(&key).unwrap();
        std::fs::write(dir.path().join("etc/upgrade-key.pub"), sb_upgrade::hex(&public)).unwrap();
        let init = UnixDatagram::bind(host.run_dir.join("control")).unwrap();
        init.set_nonblocking(true).unwrap();
        Node {
            _dir: dir,
            host,
            init,
            key,
        }
    }

    fn put_image(b: &Node, name: &str, board: &str, key: &[u8]) -> Vec<u8> {
        let payload = vec![7u8; 4096];
        let manifest = sb_upgrade::bundle::manifest_for(board, "2.0", &payload, b"uki", "development");
        let mut bytes = Vec::new();
        sb_upgrade::bundle::write(&manifest, key, &mut Cursor::new(&payload), &mut bytes).unwrap();
        std::fs::write(file_area(&b.host).join(name), &bytes).unwrap();
        bytes
    }

    fn run(b: &Node, line: &str) -> Reply {
        match parse(line).unwrap() {
            Command::Upgrade(c) => c.run(&b.host),
            other => panic!("{other:?}"),
        }
    }

    fn received(init: &UnixDatagram) -> Option<String> {
        let mut buf = [0u8; 64];
        init.recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[test]
    fn parses_the_three_forms_and_refuses_paths() {
        assert_eq!(
            parse("upgrade status").unwrap(),
            Command::Upgrade(UpgradeCommand::Status)
        );
        assert_eq!(
            parse("upgrade rollback").unwrap(),
            Command::Upgrade(UpgradeCommand::Rollback)
        );
        assert_eq!(
            parse("upgrade sb-1.2.sbu").unwrap(),
            Command::Upgrade(UpgradeCommand::Install {
                file: "sb-1.2.sbu".into()
            })
        );
        assert!(parse("upgrade ../etc/passwd").is_err());
        assert!(parse("upgrade /data/x").is_err());
        assert!(parse("upgrade").is_err());
        assert!(parse("upgrade status now").is_err());
        assert!(parse("upgrade status").unwrap().runs_in_front_end());
    }

    #[test]
    fn a_good_image_is_handed_to_init_and_bad_ones_are_refused_with_the_reason() {
        let b = appliance();
        put_image(&b, "good.sbu", "qemu-q35", &b.key);
        // PID 1 published no slots (a -kernel boot): verified, but nothing to write to.
        assert!(
            run(&b, "upgrade good.sbu")
                .text
                .starts_with("FAILURE: upgrades unavailable")
        );
        let running_a = SlotState {
            running: Some(sb_upgrade::state::Slot::A),
            ..SlotState::default()
        };
        std::fs::write(b.host.run_dir.join("upgrade"), running_a.to_text()).unwrap();
        put_image(&b, "good.sbu", "qemu-q35", &b.key);
        let reply = run(&b, "upgrade good.sbu");
        assert!(reply.ok, "{reply:?}");
        assert!(reply.text.contains("version 2.0 for board qemu-q35"), "{}", reply.text);
        assert!(reply.text.contains("PID 1 writes slot B"), "{}", reply.text);
        assert_eq!(received(&b.init).as_deref(), Some("upgrade-install good.sbu"));

        let other_key = sb_upgrade::bundle::generate_key().unwrap();
        put_image(&b, "foreign.sbu", "qemu-q35", &other_key);
        let reply = run(&b, "upgrade foreign.sbu");
        assert!(
            reply
                .text
                .starts_with("FAILURE: foreign.sbu: the signature does not verify"),
            "{}",
            reply.text
        );

        put_image(&b, "x86.sbu", "appliance-x86", &b.key);
        assert_eq!(
            run(&b, "upgrade x86.sbu").text,
            "FAILURE: x86.sbu: made for board appliance-x86, this is qemu-q35"
        );

        let mut bytes = put_image(&b, "flipped.sbu", "qemu-q35", &b.key);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(file_area(&b.host).join("flipped.sbu"), &bytes).unwrap();
        assert!(run(&b, "upgrade flipped.sbu").text.contains("corrupt"));

        std::fs::write(file_area(&b.host).join("short.sbu"), &bytes[..bytes.len() / 2]).unwrap();
        assert!(run(&b, "upgrade short.sbu").text.contains("truncated"));

        assert!(
            run(&b, "upgrade missing.sbu")
                .text
                .starts_with("FAILURE: missing.sbu: ")
        );
        // Nothing but the good one reached init.
        assert_eq!(received(&b.init), None);
    }

    #[test]
    fn status_and_rollback_follow_the_state_pid1_published() {
        let b = appliance();
        assert!(!run(&b, "upgrade status").ok);
        let mut state = SlotState {
            a_version: "1.0".into(),
            running: Some(sb_upgrade::state::Slot::A),
            default: Some(sb_upgrade::state::Slot::A),
            ..SlotState::default()
        };
        std::fs::write(b.host.run_dir.join("upgrade"), state.to_text()).unwrap();
        assert_eq!(
            run(&b, "upgrade status").text,
            "Slot A: 1.0 (running, default)\nSlot B: (empty)\nLast outcome: none"
        );
        assert_eq!(
            run(&b, "upgrade rollback").text,
            "FAILURE: slot B holds no image to roll back to"
        );
        state.b_version = "0.9".into();
        std::fs::write(b.host.run_dir.join("upgrade"), state.to_text()).unwrap();
        assert!(run(&b, "upgrade rollback").ok);
        assert_eq!(received(&b.init).as_deref(), Some("upgrade-rollback"));
    }

    #[test]
    fn off_the_appliance_nothing_happens() {
        let dir = tempfile::tempdir().unwrap();
        let host = ApplianceHost {
            settings_dir: dir.path().join("s"),
            run_dir: dir.path().join("run"),
            board_file: dir.path().join("board.toml"),
            data_mount: dir.path().to_path_buf(),
        };
        assert_eq!(
            UpgradeCommand::Status.run(&host),
            Reply::failure(crate::appliance::NOT_ON_APPLIANCE)
        );
    }
}
