//! `shardmq passwd`: the built binary manages a password file the way `mosquitto_passwd` 2.0 does
//! (`-c`, `-b`, `-D`, `-U`, `-H`, `-I`, interactive prompts from stdin), and the broker admits the users
//! it wrote with their passwords only.
//!
//! Each broker case runs for 3.1.1 and 5.0 with 1 and 4 shards. When `mosquitto_passwd` is on PATH, a
//! file it edits after `shardmq passwd` (and the reverse) is checked too; without it that test says it
//! skipped.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::raw::{Connect, RawClient};
use common::{for_each_case, unique_id, Proto, BOTH};

/// A scratch directory for one test's files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("shardmq-passwd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `shardmq passwd ARGS` with `stdin` as its input.
fn passwd_with_input(args: &[&str], file: &Path, stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .arg("passwd")
        .args(args.iter().map(|a| {
            if *a == "FILE" {
                file.as_os_str()
            } else {
                a.as_ref()
            }
        }))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shardmq passwd");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for shardmq passwd")
}

/// Runs `shardmq passwd ARGS` (the word `FILE` stands for `file`) and asserts it succeeded.
fn passwd(args: &[&str], file: &Path) {
    let out = passwd_with_input(args, file, "");
    assert!(
        out.status.success(),
        "shardmq passwd {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn users(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .expect("read password file")
        .lines()
        .filter_map(|l| l.split_once(':').map(|(u, _)| u.to_string()))
        .collect()
}

fn connack_code(addr: std::net::SocketAddr, proto: Proto, user: &str, password: &str) -> u8 {
    let connect = Connect::new(proto, &unique_id("pw")).login(user, password.as_bytes());
    let mut c = RawClient::open(addr, proto);
    c.send(&connect.encode());
    let ack = c.read_packet().connack(proto);
    if ack.code != 0 {
        c.expect_closed();
    }
    ack.code
}

fn not_authorised(proto: Proto) -> u8 {
    if proto.is_v5() {
        0x87
    } else {
        5
    }
}

#[test]
fn a_file_made_by_shardmq_passwd_admits_its_users_only() {
    let dir = Scratch::new("admit");
    let file = dir.path("passwd");
    passwd(&["-c", "-b", "FILE", "alice", "s3cret"], &file);
    passwd(&["-b", "FILE", "bob", "b0b"], &file);
    passwd(&["-H", "sha512", "-b", "FILE", "carol", "hunter2"], &file);
    passwd(&["-I", "1000", "-b", "FILE", "dave", "d4ve"], &file);
    passwd(&["-H", "argon2id", "-b", "FILE", "frank", "fr4nk"], &file);
    // Interactive: the password twice on stdin (not a terminal).
    let out = passwd_with_input(&["FILE", "erin"], &file, "er1n\ner1n\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Password: \nReenter password: \n"
    );
    // Changing a password keeps the user where it was.
    passwd(&["-b", "FILE", "bob", "new-b0b"], &file);
    passwd(&["-b", "FILE", "mallory", "m"], &file);
    passwd(&["-D", "FILE", "mallory"], &file);
    assert_eq!(
        users(&file),
        ["alice", "bob", "carol", "dave", "frank", "erin"]
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\ncarol:$6$"), "{text}");
    assert!(text.contains("\ndave:$7$1000$"), "{text}");
    assert!(
        text.contains("\nfrank:$argon2id$v=19$m=47104,t=1,p=1$"),
        "{text}"
    );

    let config = format!("password_file {}\nallow_anonymous false\n", file.display());
    for_each_case(BOTH, &config, |case| {
        let refused = not_authorised(case.proto);
        for (user, password) in [
            ("alice", "s3cret"),
            ("bob", "new-b0b"),
            ("carol", "hunter2"),
            ("dave", "d4ve"),
            ("erin", "er1n"),
            ("frank", "fr4nk"),
        ] {
            if user == "frank" && common::broker::external_mosquitto() {
                // An $argon2id$ entry (Mosquitto 2.1's): Mosquitto 2.0 cannot read it.
                continue;
            }
            assert_eq!(
                connack_code(case.addr, case.proto, user, password),
                0,
                "{user}"
            );
            assert_eq!(
                connack_code(case.addr, case.proto, user, "wrong"),
                refused,
                "{user} with a wrong password"
            );
        }
        assert_eq!(connack_code(case.addr, case.proto, "bob", "b0b"), refused);
        assert_eq!(connack_code(case.addr, case.proto, "mallory", "m"), refused);
    });
}

#[test]
fn dash_u_converts_a_plain_text_file_in_place() {
    let dir = Scratch::new("convert");
    let file = dir.path("passwd");
    std::fs::write(&file, "# users\nalice:s3cret\nbob:b0b\n").unwrap();
    passwd(&["-U", "FILE"], &file);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("# users\nalice:$7$101$"), "{text}");
    assert!(!text.contains("s3cret") && !text.contains("b0b"), "{text}");
    // A second -U leaves the hashes alone instead of hashing them again.
    let out = passwd_with_input(&["-U", "FILE"], &file, "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);

    let config = format!("password_file {}\nallow_anonymous false\n", file.display());
    for_each_case(&[Proto::V311], &config, |case| {
        assert_eq!(connack_code(case.addr, case.proto, "alice", "s3cret"), 0);
        assert_eq!(connack_code(case.addr, case.proto, "bob", "b0b"), 0);
        assert_eq!(connack_code(case.addr, case.proto, "bob", "s3cret"), 5);
    });
}

#[test]
fn errors_and_exit_codes_match_mosquitto_passwd() {
    let dir = Scratch::new("errors");
    let file = dir.path("passwd");
    let missing = passwd_with_input(&["-b", "FILE", "alice", "pw"], &file, "");
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).starts_with("Error: Unable to open password file"),
        "{}",
        stderr(&missing)
    );
    passwd(&["-c", "-b", "FILE", "alice", "pw"], &file);
    let before = std::fs::read(&file).unwrap();
    let colon = passwd_with_input(&["-b", "FILE", "a:b", "pw"], &file, "");
    assert_eq!(colon.status.code(), Some(1));
    assert_eq!(
        stderr(&colon),
        "Error: Username must not contain the ':' character.\n"
    );
    let absent = passwd_with_input(&["-D", "FILE", "nobody"], &file, "");
    assert_eq!(absent.status.code(), Some(1));
    assert_eq!(
        stderr(&absent),
        "Warning: User nobody not found in password file.\n"
    );
    let mismatch = passwd_with_input(&["FILE", "bob"], &file, "one\ntwo\n");
    assert_eq!(mismatch.status.code(), Some(2));
    assert_eq!(stderr(&mismatch), "Error: Passwords do not match.\n");
    let empty = passwd_with_input(&["FILE", "bob"], &file, "\n");
    assert_eq!(empty.status.code(), Some(1));
    assert_eq!(stderr(&empty), "Error: Empty password.\n");
    let usage = passwd_with_input(&[], &file, "");
    assert_eq!(usage.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&usage.stdout).contains("Usage: shardmq passwd"));
    // None of the refusals touched the file, and no temporary file was left behind.
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
}

#[test]
fn files_edited_by_both_tools_stay_readable() {
    if Command::new("mosquitto_passwd")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!(
            "SKIPPED: mosquitto_passwd is not on PATH; no cross-check with Mosquitto's tool."
        );
        return;
    }
    let dir = Scratch::new("cross");
    let file = dir.path("passwd");
    passwd(&["-c", "-b", "FILE", "alice", "s3cret"], &file);
    let status = Command::new("mosquitto_passwd")
        .arg("-b")
        .arg(&file)
        .args(["bob", "b0b"])
        .stdin(Stdio::null())
        .status()
        .expect("run mosquitto_passwd");
    assert!(status.success(), "mosquitto_passwd refused shardmq's file");
    passwd(&["-H", "sha512", "-b", "FILE", "carol", "hunter2"], &file);
    assert_eq!(users(&file), ["alice", "bob", "carol"]);
    let config = format!("password_file {}\nallow_anonymous false\n", file.display());
    for_each_case(&[Proto::V5], &config, |case| {
        assert_eq!(connack_code(case.addr, case.proto, "alice", "s3cret"), 0);
        assert_eq!(connack_code(case.addr, case.proto, "bob", "b0b"), 0);
        assert_eq!(connack_code(case.addr, case.proto, "carol", "hunter2"), 0);
        assert_eq!(connack_code(case.addr, case.proto, "bob", "x"), 0x87);
    });
}
