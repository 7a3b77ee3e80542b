//! kill -9 in the middle of writing: every change the store acknowledged must be there
//! after a reopen.
//!
//! The test re-executes its own binary with `SB_STORE_CRASH_WRITER` set; in that mode the
//! test function becomes the writer, which prints `ACK <n>` only after every call for record
//! n returned Ok. The parent reads some acknowledgements, SIGKILLs the writer at whatever
//! point it has reached, reopens the store and checks.

mod common;
use common::Changes;
use sb_store::{RosterItem, Store, UserCredentials};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const WRITER_ENV: &str = "SB_STORE_CRASH_WRITER";
const ROUND_ENV: &str = "SB_STORE_CRASH_ROUND";
const TEST_NAME: &str = "acknowledged_writes_survive_sigkill";
/// Upper bound for the writer if nobody kills it.
const WRITER_MAX_RECORDS: u64 = 100_000;
const ACKS_BEFORE_KILL: u64 = 120;
const ROUNDS: u32 = 3;
const OWNER: &str = "owner";

fn writer(dir: &Path, round: u32) {
    let store = Store::open(dir).unwrap();
    if !store.user_exists(OWNER).unwrap() {
        store.add_user(OWNER, &UserCredentials::new("pw").unwrap()).unwrap();
    }
    let creds = store.user_credentials(OWNER).unwrap().unwrap();
    for n in 0..WRITER_MAX_RECORDS {
        let tag = format!("r{round}-{n:06}");
        store.put_setting(&format!("rec.{tag}"), &n).unwrap();
        store.add_user(&format!("u{tag}"), &creds).unwrap();
        store
            .put_roster_item(OWNER, &RosterItem::new(format!("{tag}@example.com")))
            .unwrap();
        store.push_offline(OWNER, tag.as_bytes(), u32::MAX).unwrap();
        store
            .update_xmpp_config(|c| c.offline_limit = u32::try_from(n).unwrap_or(0))
            .unwrap();
        println!("ACK {n}");
    }
}

/// Run one writer, kill it after some acknowledgements; returns the highest acknowledged n.
fn run_and_kill(dir: &Path, round: u32) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(WRITER_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut last_ack = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ACK ") {
            let n: u64 = n.parse().unwrap();
            last_ack = Some(n);
            if n + 1 >= ACKS_BEFORE_KILL {
                // SIGKILL: no destructors, no flush, no chance to finish the record in flight.
                child.kill().unwrap();
                break;
            }
        }
    }
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "writer ended on its own ({status}) instead of being killed"
    );
    last_ack.expect("writer acknowledged nothing")
}

fn check_round(store: &Store, round: u32, last_ack: u64, offline: &[String]) {
    for n in 0..=last_ack {
        let tag = format!("r{round}-{n:06}");
        assert_eq!(
            store.get_setting::<u64>(&format!("rec.{tag}")).unwrap(),
            Some(n),
            "{tag}"
        );
        assert!(store.user_exists(&format!("u{tag}")).unwrap(), "{tag}");
        assert!(
            store
                .roster_item(OWNER, &format!("{tag}@example.com"))
                .unwrap()
                .is_some(),
            "{tag}"
        );
        assert!(offline.contains(&tag), "{tag} missing from the offline queue");
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Some(dir) = std::env::var_os(WRITER_ENV) {
        let round = std::env::var(ROUND_ENV).ok().and_then(|r| r.parse().ok()).unwrap_or(0);
        writer(Path::new(&dir), round);
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    for round in 0..ROUNDS {
        acked.push(run_and_kill(dir.path(), round));
        let store = Store::open(dir.path()).unwrap();
        // The offline queue is checked without draining it, so later rounds check it too:
        // take, verify, put back.
        let queued = store.take_offline(OWNER).unwrap();
        let offline: Vec<String> = queued.iter().map(|m| String::from_utf8(m.clone()).unwrap()).collect();
        let mut sorted = offline.clone();
        sorted.sort();
        assert_eq!(offline, sorted, "offline messages out of arrival order");
        for (earlier, &last) in acked.iter().enumerate() {
            check_round(&store, u32::try_from(earlier).unwrap(), last, &offline);
        }
        let config = store.xmpp_config().unwrap();
        assert!(u64::from(config.offline_limit) >= acked[acked.len() - 1]);
        for message in &queued {
            store.push_offline(OWNER, message, u32::MAX).unwrap();
        }
        assert_eq!(
            store.roster_version(OWNER).unwrap() as usize,
            store.roster(OWNER).unwrap().len()
        );
    }
}
