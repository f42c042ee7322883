use super::*;
use crate::auth::password::PasswordFile;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn msg(text: &str) -> Failure {
    Failure::msg(text)
}

#[test]
fn parses_mosquitto_passwd_command_lines() {
    let r = parse_args(&args(&["-b", "f", "alice", "pw"])).unwrap();
    assert_eq!(r.hash, HashType::Sha512Pbkdf2);
    assert_eq!(r.iterations, DEFAULT_PBKDF2_ITERATIONS);
    assert_eq!(
        r.action,
        Action::Set {
            file: "f".into(),
            username: "alice".into(),
            password: Some("pw".into()),
            create: false
        }
    );
    let r = parse_args(&args(&["-H", "sha512", "-I", "5000", "-c", "f", "bob"])).unwrap();
    assert_eq!(r.hash, HashType::Sha512);
    assert_eq!(r.iterations, 5000);
    assert_eq!(
        r.action,
        Action::Set {
            file: "f".into(),
            username: "bob".into(),
            password: None,
            create: true
        }
    );
    assert_eq!(
        parse_args(&args(&["-D", "f", "bob"])).unwrap().action,
        Action::Delete {
            file: "f".into(),
            username: "bob".into()
        }
    );
    assert_eq!(
        parse_args(&args(&["-U", "f"])).unwrap().action,
        Action::Convert { file: "f".into() }
    );
}

#[test]
fn refuses_what_mosquitto_passwd_refuses() {
    let cases: &[(&[&str], Failure)] = &[
        (&[], Failure::Usage(1)),
        (&["f"], Failure::Usage(1)),
        (&["-b", "f", "u"], Failure::Usage(1)),
        (
            &["-H"],
            msg("Error: -H argument given but not enough other arguments."),
        ),
        (
            &["-H", "md5", "f", "u"],
            msg("Error: Unknown hash type 'md5'"),
        ),
        (
            &["-I", "0", "f", "u"],
            msg("Error: Number of iterations must be > 0."),
        ),
        (
            &["-I", "x", "f", "u"],
            msg("Error: Number of iterations must be > 0."),
        ),
        (
            &["-c", "-D", "f", "u"],
            msg("Error: -c and -D cannot be used together."),
        ),
        (
            &["-c", "-U", "f"],
            msg("Error: -c and -U cannot be used together."),
        ),
        (
            &["-D", "-U", "f"],
            msg("Error: -D and -U cannot be used together."),
        ),
        (
            &["-b", "-D", "f", "u"],
            msg("Error: -b and -D cannot be used together."),
        ),
        (
            &["-c", "-b", "f", "u"],
            msg("Error: -c argument given but password file, username, or password missing."),
        ),
        (
            &["-D", "f"],
            msg("Error: -D argument given but password file or username missing."),
        ),
        (
            &["-U"],
            msg("Error: -U argument given but password file missing."),
        ),
        (
            &["-b", "f", "a:b", "pw"],
            msg("Error: Username must not contain the ':' character."),
        ),
        (
            &["-b", "f", "a\tb", "pw"],
            msg("Error: Username must not contain control characters."),
        ),
        (
            &["-b", "f", "", "pw"],
            msg("Error: Username must not be empty."),
        ),
    ];
    for (list, want) in cases {
        assert_eq!(parse_args(&args(list)).unwrap_err(), *want, "{list:?}");
    }
    assert_eq!(
        parse_args(&args(&["--help"])).unwrap_err(),
        Failure::Usage(0)
    );
}

#[test]
fn set_user_replaces_in_place_and_appends_new_users() {
    let data = b"# users\nalice:old\n\nbob:old2\n";
    let out = set_user(data, "alice", "NEW").unwrap();
    assert_eq!(out, b"# users\nalice:NEW\n\nbob:old2\n");
    let out = set_user(b"bob:x", "carol", "C").unwrap();
    assert_eq!(out, b"bob:x\ncarol:C\n");
    // Surrounding blanks do not hide a user, as Mosquitto trims fields.
    let out = set_user(b" alice : old \n", "alice", "N").unwrap();
    assert_eq!(out, b"alice:N\n");
}

#[test]
fn delete_user_keeps_the_rest_in_order() {
    let data = b"a:1\nb:2\nc:3\n";
    assert_eq!(delete_user(data, "b").unwrap(), b"a:1\nc:3\n");
    assert_eq!(
        delete_user(data, "z").unwrap_err(),
        msg("Warning: User z not found in password file.")
    );
}

#[test]
fn corrupt_lines_are_reported_with_their_number() {
    assert_eq!(
        set_user(b"a:1\nnocolon\n", "a", "x").unwrap_err(),
        msg("Error: Corrupt password file at line 2.")
    );
    assert_eq!(
        delete_user(b"a:\n", "a").unwrap_err(),
        msg("Error: Corrupt password file at line 1.")
    );
}

#[test]
fn convert_hashes_plain_passwords_only() {
    let hashed = hash_field(b"already", HashType::Sha512Pbkdf2, 101).unwrap();
    let data = format!("# c\nalice:secret\nbob:{hashed}\ncarol : hunter2 \n");
    let (out, kept) = convert_plain(data.as_bytes(), |p| {
        hash_field(p, HashType::Sha512Pbkdf2, 7)
    })
    .unwrap();
    assert_eq!(kept, vec![3]);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("# c\nalice:$7$7$"), "{text}");
    assert!(text.contains(&format!("\nbob:{hashed}\n")), "{text}");
    let (file, warnings) = PasswordFile::parse(&text);
    assert_eq!(warnings, vec![]);
    assert!(file.check("alice", Some(b"secret")));
    assert!(file.check("bob", Some(b"already")));
    assert!(file.check("carol", Some(b"hunter2")));
}

#[test]
fn replace_file_keeps_mode_and_leaves_no_temporary() {
    let dir = std::env::temp_dir().join(format!("shardmq-passwd-unit-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pw");
    replace_file(&path, b"a:1\n").unwrap();
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    replace_file(&path, b"b:2\n").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"b:2\n");
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scram_entries_are_made_with_dash_s_and_read_by_the_broker() {
    let r = parse_args(&args(&["-S", "-b", "f", "alice", "pw"])).unwrap();
    assert_eq!((r.hash, r.iterations), (HashType::Scram, 4096));
    let r = parse_args(&args(&[
        "--scram", "-I", "10", "-c", "-b", "f", "bob", "pw",
    ]))
    .unwrap();
    assert_eq!((r.hash, r.iterations), (HashType::Scram, 10));
    assert_eq!(
        parse_args(&args(&["-S", "-U", "f"])).unwrap_err(),
        msg("Error: -S and -U cannot be used together.")
    );
    assert_eq!(
        parse_args(&args(&["-S", "-H", "sha512", "-b", "f", "a", "p"])).unwrap_err(),
        msg("Error: -H and -S cannot be used together.")
    );
    let field = hash_field(b"pw", HashType::Scram, 10).unwrap();
    let data = set_user(b"# users\n", "bob", &field).unwrap();
    let file = crate::auth::scram::ScramFile::parse(std::str::from_utf8(&data).unwrap()).unwrap();
    let c = file.get("bob").expect("bob's entry");
    assert_eq!(
        *c,
        crate::auth::scram::Credential::derive(b"pw", &c.salt, 10)
    );
}
