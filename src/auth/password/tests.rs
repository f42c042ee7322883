//! Tests of the password file reader, the password check and the hash writers.
use super::*;

// Real-peer vectors, made with Debian's mosquitto_passwd (mosquitto 2.0.11) by:
//   rm -f /tmp/pw && mosquitto_passwd -c -b /tmp/pw alice secret \
//     && mosquitto_passwd -b /tmp/pw bob 'pässwörd' \
//     && mosquitto_passwd -H sha512 -b /tmp/pw carol hunter2 && cat /tmp/pw
// (bob's password is UTF-8.)
const ALICE: &str = "alice:$7$101$6Fy9rgrB1Q7zblxB$JrzNwggJB9R7hungMBl6brFD7IaxUJNojsPhrw2bWOtDL2webI/iwT6yRz1/xfgs4Ep+8/Qzq5oG6eVeqZgnAA==";
const BOB: &str = "bob:$7$101$CVsDUNWmpuaLPZ0+$E78i4op8fVz31wj1Olsj9Aq36DkpBkTe2YHU92nA1Owagu3oG8gSowT4Da2p49BwAT7YCLpupQA5EHvZJx9CYA==";
const CAROL: &str = "carol:$6$M5j26XeULRClwY32$hjhlptCdB6XYtJ7uNdc1pcidJuPXHw2SXVRu4ff5kLrrHrpWHNtOYpWcsaD7w8YTQ6yR34XG7qa7KcdwVWAWJg==";

// Pieces of ALICE, to build broken variants of an entry known to be good.
const ALICE_SALT: &str = "6Fy9rgrB1Q7zblxB";
const ALICE_HASH: &str =
    "JrzNwggJB9R7hungMBl6brFD7IaxUJNojsPhrw2bWOtDL2webI/iwT6yRz1/xfgs4Ep+8/Qzq5oG6eVeqZgnAA==";
// BOB's hash field, to give a second user (or a duplicate) a different password.
const BOB_FIELD: &str = "$7$101$CVsDUNWmpuaLPZ0+$E78i4op8fVz31wj1Olsj9Aq36DkpBkTe2YHU92nA1Owagu3oG8gSowT4Da2p49BwAT7YCLpupQA5EHvZJx9CYA==";

fn real_file() -> PasswordFile {
    let (file, warnings) = PasswordFile::parse(&format!("{ALICE}\n{BOB}\n{CAROL}\n"));
    assert_eq!(warnings, vec![]);
    file
}

fn removed(line: usize, username: &str, reason: EntryError) -> Warning {
    Warning {
        line,
        kind: WarningKind::EntryRemoved {
            username: username.to_owned(),
            reason,
        },
    }
}

#[test]
fn real_vectors_accept_the_right_password() {
    let file = real_file();
    assert_eq!(file.len(), 3);
    assert!(file.check("alice", Some(b"secret")));
    assert!(file.check("bob", Some("pässwörd".as_bytes())));
    assert!(file.check("carol", Some(b"hunter2")));
    assert_eq!(
        file.hash_algorithm("alice"),
        Some(HashAlgorithm::Pbkdf2Sha512 { iterations: 101 })
    );
    assert_eq!(file.hash_algorithm("carol"), Some(HashAlgorithm::Sha512));
}

#[test]
fn wrong_password_is_refused() {
    let file = real_file();
    for (user, wrong) in [
        ("alice", &b"Secret"[..]),
        ("alice", b"secre"),
        ("alice", b"secret "),
        ("alice", b"hunter2"),
        ("bob", "passwort".as_bytes()),
        ("bob", b"secret"),
        ("carol", b"hunter3"),
        ("carol", b"secret"),
    ] {
        assert!(!file.check(user, Some(wrong)), "{user} accepted {wrong:?}");
    }
}

#[test]
fn missing_or_empty_password_is_refused() {
    let file = real_file();
    for user in ["alice", "bob", "carol"] {
        assert!(!file.check(user, None), "{user} accepted no password");
        // Mosquitto reads a zero-length password field as no password.
        assert!(
            !file.check(user, Some(b"")),
            "{user} accepted empty password"
        );
    }
}

#[test]
fn unknown_user_is_refused() {
    let file = real_file();
    assert!(!file.check("dave", Some(b"secret")));
    assert!(
        !file.check("Alice", Some(b"secret")),
        "usernames are case-sensitive"
    );
    assert!(!file.check("", Some(b"secret")));
    assert!(!file.contains_user("dave"));
    assert!(file.contains_user("alice"));
}

#[test]
fn password_is_cut_at_the_first_nul_like_mosquitto() {
    // Mosquitto 2.0.11 accepted "secret\0junk" for a user whose password is "secret".
    let file = real_file();
    assert!(file.check("alice", Some(b"secret\0junk")));
    assert!(file.check("carol", Some(b"hunter2\0")));
    assert!(!file.check("alice", Some(b"\0secret")));
    assert!(!file.check("alice", Some(b"secre\0t")));
}

#[test]
fn comments_blank_and_colonless_lines_are_skipped_silently() {
    let text = format!(
        "# a comment\n\n# {BOB}\nno colon on this line\n   \n{ALICE}\n#carol:{BOB_FIELD}\n{CAROL}"
    );
    let (file, warnings) = PasswordFile::parse(&text);
    assert_eq!(warnings, vec![]);
    assert_eq!(file.len(), 2);
    assert!(file.check("alice", Some(b"secret")));
    assert!(
        file.check("carol", Some(b"hunter2")),
        "last line needs no newline"
    );
    assert!(
        !file.contains_user("bob"),
        "commented-out entry must not load"
    );
    assert!(!file.contains_user("# bob"));
}

#[test]
fn hash_is_only_a_comment_in_the_first_column() {
    // Mosquitto tests buf[0] == '#' before trimming; 2.0.11 let "#hashuser" log in from this line.
    let (file, warnings) = PasswordFile::parse(&format!(" #hashuser:{BOB_FIELD}\n"));
    assert_eq!(warnings, vec![]);
    assert!(file.check("#hashuser", Some("pässwörd".as_bytes())));
}

#[test]
fn blanks_around_fields_are_trimmed() {
    let text = format!("  alice \t:  $7$101${ALICE_SALT}${ALICE_HASH} \x0b\x0c \n");
    let (file, warnings) = PasswordFile::parse(&text);
    assert_eq!(warnings, vec![]);
    assert!(file.check("alice", Some(b"secret")));
}

#[test]
fn crlf_line_endings_work() {
    let text = format!("# made on Windows\r\n{ALICE}\r\n\r\n{BOB}\r\n{CAROL}\r\n");
    let (file, warnings) = PasswordFile::parse(&text);
    assert_eq!(warnings, vec![]);
    assert!(file.check("alice", Some(b"secret")));
    assert!(file.check("bob", Some("pässwörd".as_bytes())));
    assert!(file.check("carol", Some(b"hunter2")));
}

#[test]
fn bad_entries_are_removed_with_a_warning_and_good_ones_still_work() {
    let lines = [
        ALICE.to_owned(),
        // line 2: salt of 9 bytes
        format!("shortsalt:$7$101$6Fy9rgrB1Q7z${ALICE_HASH}"),
        // line 3: salt of 15 bytes
        format!("longsalt:$7$101${ALICE_SALT}AAAA${ALICE_HASH}"),
        // line 4: salt not base64
        format!("badsalt:$7$101$6Fy9rgrB1Q7z!!!!${ALICE_HASH}"),
        // line 5: hash not base64
        format!("badhash:$7$101${ALICE_SALT}$*{}", &ALICE_HASH[1..]),
        // line 6: hash without its padding (OpenSSL refuses it too)
        format!("unpadded:$7$101${ALICE_SALT}${}", ALICE_HASH.trim_end_matches('=')),
        // line 7: URL-safe alphabet
        format!(
            "urlsafe:$6$M5j26XeULRClwY32${}",
            "hjhlptCdB6XYtJ7uNdc1pcidJuPXHw2SXVRu4ff5kLrrHrpWHNtOYpWcsaD7w8YTQ6yR34XG7qa7KcdwVWAWJg=="
                .replace('7', "_")
        ),
        // line 8: unknown type
        format!("type5:$5$101${ALICE_SALT}${ALICE_HASH}"),
        // line 9: a plain-text password, as `mosquitto_passwd -U` would convert
        "plain:secret".to_owned(),
        // line 10-12: iterations that read as < 1
        format!("iter0:$7$0${ALICE_SALT}${ALICE_HASH}"),
        format!("iterneg:$7$-5${ALICE_SALT}${ALICE_HASH}"),
        format!("iterword:$7$many${ALICE_SALT}${ALICE_HASH}"),
        // line 13: hash field missing
        format!("nohash:$7$101${ALICE_SALT}"),
        // line 14-15: empty or blank password field, followed by a newline
        "empty:".to_owned(),
        "blank:   \t".to_owned(),
        // line 16: salt fails first, so that is the reason given
        "saltfirst:$6$AAAA".to_owned(),
        CAROL.to_owned(),
    ];
    let (file, warnings) = PasswordFile::parse(&(lines.join("\n") + "\n"));
    assert_eq!(
        warnings,
        vec![
            removed(2, "shortsalt", EntryError::InvalidSalt),
            removed(3, "longsalt", EntryError::InvalidSalt),
            removed(4, "badsalt", EntryError::InvalidSalt),
            removed(5, "badhash", EntryError::InvalidDigest),
            removed(6, "unpadded", EntryError::InvalidDigest),
            removed(7, "urlsafe", EntryError::InvalidDigest),
            removed(8, "type5", EntryError::InvalidHashType),
            removed(9, "plain", EntryError::InvalidHashType),
            removed(10, "iter0", EntryError::InvalidIterations),
            removed(11, "iterneg", EntryError::InvalidIterations),
            removed(12, "iterword", EntryError::InvalidIterations),
            removed(13, "nohash", EntryError::InvalidHash),
            removed(14, "empty", EntryError::InvalidHash),
            removed(15, "blank", EntryError::InvalidHash),
            removed(16, "saltfirst", EntryError::InvalidSalt),
        ]
    );
    assert!(warnings.iter().all(|w| w.severity() == Severity::Error));
    assert_eq!(file.len(), 2);
    assert!(file.check("alice", Some(b"secret")));
    assert!(file.check("carol", Some(b"hunter2")));
    assert!(!file.check("plain", Some(b"secret")));
    assert!(!file.check("iter0", Some(b"secret")));
}

#[test]
fn username_without_password_field_at_end_of_file_is_skipped() {
    let (file, warnings) = PasswordFile::parse(&format!("{ALICE}\nlast:"));
    assert_eq!(
        warnings,
        vec![Warning {
            line: 2,
            kind: WarningKind::MissingPassword {
                username: "last".to_owned()
            }
        }]
    );
    assert_eq!(warnings[0].severity(), Severity::Warning);
    assert!(!file.contains_user("last"));
    assert!(file.check("alice", Some(b"secret")));
}

#[test]
fn fields_split_like_strtok() {
    // Each of these lines let its user log in with "secret" on Mosquitto 2.0.11.
    let lines = [
        format!("colons::$7$101${ALICE_SALT}${ALICE_HASH}"),
        format!(":lead:$7$101${ALICE_SALT}${ALICE_HASH}"),
        format!("extra:$7$101${ALICE_SALT}${ALICE_HASH}:ignored"),
        format!("nodollar:7$101${ALICE_SALT}${ALICE_HASH}"),
        format!("doubled:$7$$101$${ALICE_SALT}$${ALICE_HASH}$junk"),
        format!("itersuffix:$7$101abc${ALICE_SALT}${ALICE_HASH}"),
        format!("iterspace:$7$ 101${ALICE_SALT}${ALICE_HASH}"),
        format!("iterplus:$7$+101${ALICE_SALT}${ALICE_HASH}"),
    ];
    let (file, warnings) = PasswordFile::parse(&lines.join("\n"));
    assert_eq!(warnings, vec![]);
    for user in [
        "colons",
        "lead",
        "extra",
        "nodollar",
        "doubled",
        "itersuffix",
        "iterspace",
        "iterplus",
    ] {
        assert!(file.check(user, Some(b"secret")), "{user} refused");
    }
    assert_eq!(file.len(), 8);
}

#[test]
fn iteration_overflow_wraps_like_glibc_atoi() {
    // 4294967397 = 2^32 + 101: Mosquitto 2.0.11 on amd64 accepted "secret" with this entry.
    let text = format!(
        "wrapped:$7$4294967397${ALICE_SALT}${ALICE_HASH}\n\
         negative:$7$2147483648${ALICE_SALT}${ALICE_HASH}\n"
    );
    let (file, warnings) = PasswordFile::parse(&text);
    assert_eq!(
        warnings,
        vec![
            Warning {
                line: 1,
                kind: WarningKind::IterationsWrapped {
                    username: "wrapped".to_owned(),
                    written: "4294967397".to_owned(),
                    used: 101,
                },
            },
            removed(2, "negative", EntryError::InvalidIterations),
        ]
    );
    assert!(file.check("wrapped", Some(b"secret")));
    assert!(!file.contains_user("negative"));
    assert_eq!(c_atoi(b"99999999999999999999"), (-1, true));
    assert_eq!(c_atoi(b"-99999999999999999999"), (0, true));
    assert_eq!(c_atoi(b"  -42x"), (-42, false));
    assert_eq!(c_atoi(b""), (0, false));
}

#[test]
fn later_valid_duplicate_replaces_the_earlier_one() {
    let text = format!("alice:$7$101${ALICE_SALT}${ALICE_HASH}\nalice:{BOB_FIELD}\n");
    let (file, warnings) = PasswordFile::parse(&text);
    assert_eq!(
        warnings,
        vec![Warning {
            line: 2,
            kind: WarningKind::Duplicate {
                username: "alice".to_owned(),
                previous_line: 1,
            },
        }]
    );
    assert_eq!(file.len(), 1);
    assert!(file.check("alice", Some("pässwörd".as_bytes())));
    assert!(!file.check("alice", Some(b"secret")));
}

#[test]
fn invalid_duplicate_does_not_shadow_a_valid_entry() {
    // Mosquitto removes the invalid entry before any lookup, so the valid one is found either way.
    let (file, warnings) = PasswordFile::parse(&format!("{ALICE}\nalice:bogus\n"));
    assert_eq!(
        warnings,
        vec![removed(2, "alice", EntryError::InvalidHashType)]
    );
    assert!(file.check("alice", Some(b"secret")));

    let (file, warnings) = PasswordFile::parse(&format!("alice:bogus\n{ALICE}\n"));
    assert_eq!(
        warnings,
        vec![removed(1, "alice", EntryError::InvalidHashType)]
    );
    assert!(file.check("alice", Some(b"secret")));
}

#[test]
fn lines_that_can_never_match_are_reported() {
    let mut data = format!("   :{BOB_FIELD}\n").into_bytes();
    data.extend_from_slice(b"b\xffd:");
    data.extend_from_slice(BOB_FIELD.as_bytes());
    data.extend_from_slice(b"\n");
    data.extend_from_slice(ALICE.as_bytes());
    let (file, warnings) = PasswordFile::parse_bytes(&data);
    assert_eq!(
        warnings,
        vec![
            Warning {
                line: 1,
                kind: WarningKind::EmptyUsername
            },
            Warning {
                line: 2,
                kind: WarningKind::UsernameNotUtf8
            },
        ]
    );
    assert_eq!(file.len(), 1);
    assert!(!file.check("", Some("pässwörd".as_bytes())));
    assert!(file.check("alice", Some(b"secret")));
}

#[test]
fn overlong_fields_are_skipped() {
    let long_user = "u".repeat(MAX_FIELD_LEN + 1);
    let max_user = "m".repeat(MAX_FIELD_LEN);
    let long_field = format!(
        "$7$101${ALICE_SALT}${ALICE_HASH}{}",
        "=".repeat(MAX_FIELD_LEN)
    );
    let text = format!("{long_user}:{BOB_FIELD}\nlongpw:{long_field}\n{max_user}:{BOB_FIELD}\n");
    let (file, warnings) = PasswordFile::parse(&text);
    assert_eq!(
        warnings,
        vec![
            Warning {
                line: 1,
                kind: WarningKind::UsernameTooLong
            },
            Warning {
                line: 2,
                kind: WarningKind::PasswordTooLong {
                    username: "longpw".to_owned()
                }
            },
        ]
    );
    assert_eq!(file.len(), 1);
    assert!(file.check(&max_user, Some("pässwörd".as_bytes())));
}

#[test]
fn nul_in_a_line_ends_it() {
    let mut data = ALICE.as_bytes().to_vec();
    data.extend_from_slice(b"\0garbage:after\n");
    data.extend_from_slice(b"\0bob:");
    data.extend_from_slice(BOB_FIELD.as_bytes());
    let (file, warnings) = PasswordFile::parse_bytes(&data);
    assert_eq!(warnings, vec![]);
    assert!(file.check("alice", Some(b"secret")));
    assert!(
        !file.contains_user("bob"),
        "a line starting with NUL is empty to C"
    );
}

#[test]
fn hash_allows_non_canonical_trailing_bits_like_openssl() {
    // Mosquitto 2.0.11 accepted ALICE's hash with its last symbol changed from 'A' to 'B'.
    let tweaked = format!("{}B==", &ALICE_HASH[..85]);
    let (file, warnings) = PasswordFile::parse(&format!("alice:$7$101${ALICE_SALT}${tweaked}"));
    assert_eq!(warnings, vec![]);
    assert!(file.check("alice", Some(b"secret")));
}

#[test]
fn generated_entries_are_accepted() {
    let field = hash_password_pbkdf2(b"correct horse", DEFAULT_PBKDF2_ITERATIONS)
        .expect("hash with a random salt");
    let parts: Vec<&str> = field.split('$').collect();
    assert_eq!(parts.len(), 5, "{field}");
    assert_eq!((parts[0], parts[1], parts[2]), ("", "7", "101"));
    assert_eq!(parts[3].len(), 16);
    assert_eq!(parts[4].len(), 88);

    let again = hash_password_pbkdf2(b"correct horse", DEFAULT_PBKDF2_ITERATIONS)
        .expect("hash with a random salt");
    assert_ne!(field, again, "salts must differ");

    let low = hash_password_pbkdf2("élan".as_bytes(), 1).expect("one iteration");
    let empty = hash_password_pbkdf2(b"", 7).expect("empty password, like mosquitto_passwd");
    let (file, warnings) = PasswordFile::parse(&format!(
        "dave:{field}\nerin:{again}\nfrank:{low}\ngina:{empty}\n"
    ));
    assert_eq!(warnings, vec![]);
    assert!(file.check("dave", Some(b"correct horse")));
    assert!(!file.check("dave", Some(b"correct horse ")));
    assert!(file.check("erin", Some(b"correct horse")));
    assert!(file.check("frank", Some("élan".as_bytes())));
    assert_eq!(
        file.hash_algorithm("frank"),
        Some(HashAlgorithm::Pbkdf2Sha512 { iterations: 1 })
    );
    // An empty password is only reachable through a NUL-prefixed CONNECT password, as in Mosquitto.
    assert!(!file.check("gina", Some(b"")));
    assert!(file.check("gina", Some(b"\0")));
}

#[test]
fn generating_refuses_what_mosquitto_could_not_use() {
    assert!(matches!(
        hash_password_pbkdf2(b"pw", 0),
        Err(HashPasswordError::Iterations(0))
    ));
    assert!(matches!(
        hash_password_pbkdf2_with_salt(b"pw", MAX_ITERATIONS + 1, &[0; SALT_LEN]),
        Err(HashPasswordError::Iterations(_))
    ));
    assert!(matches!(
        hash_password_pbkdf2(b"p\0w", 101),
        Err(HashPasswordError::ContainsNul)
    ));
}

#[test]
fn fixed_salt_reproduces_mosquitto_passwd_output() {
    let salt: [u8; SALT_LEN] = decode_exact(ALICE_SALT.as_bytes()).expect("ALICE's salt decodes");
    let field = hash_password_pbkdf2_with_salt(b"secret", 101, &salt).expect("valid input");
    assert_eq!(format!("alice:{field}"), ALICE);
}

#[test]
fn sha512_with_fixed_salt_reproduces_mosquitto_passwd_output() {
    // CAROL was written by Debian's `mosquitto_passwd -H sha512`.
    let (_, rest) = CAROL.split_once(":$6$").expect("CAROL is a $6$ entry");
    let (salt, _) = rest.split_once('$').expect("salt then hash");
    let salt: [u8; SALT_LEN] = decode_exact(salt.as_bytes()).expect("CAROL's salt decodes");
    let field = hash_password_sha512_with_salt(b"hunter2", &salt).expect("valid input");
    assert_eq!(format!("carol:{field}"), CAROL);
    let fresh = hash_password_sha512(b"hunter2").expect("valid input");
    let (file, warnings) = PasswordFile::parse(&format!("carol:{fresh}\n"));
    assert_eq!(warnings, vec![]);
    assert!(file.check("carol", Some(b"hunter2")));
    assert!(is_password_hash(fresh.as_bytes()));
    assert!(is_password_hash(BOB_FIELD.as_bytes()));
    assert!(!is_password_hash(b"hunter2"));
    assert!(!is_password_hash(b"$7$101$short$hash"));
}

#[test]
fn argon2id_phc_strings_check_like_libargon2() {
    // phc-winner-argon2's src/test.c vector: password "password", salt "somesalt".
    let reference =
        "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
    let (file, warnings) = PasswordFile::parse(&format!("ref:{reference}\n"));
    assert_eq!(warnings, vec![]);
    assert!(file.check("ref", Some(b"password")));
    assert!(!file.check("ref", Some(b"passwore")));
    assert_eq!(
        file.hash_algorithm("ref"),
        Some(HashAlgorithm::Argon2id {
            m_cost: 65536,
            t_cost: 2,
            p_cost: 1
        })
    );
    // What `mosquitto_passwd -H argon2id` (2.1) writes: its parameters, 64-byte salt and hash.
    let salt = [7u8; HASH_LEN];
    let field = hash_password_argon2id_with_salt(b"s3cret", &salt).expect("valid input");
    assert!(
        field.starts_with("$argon2id$v=19$m=47104,t=1,p=1$"),
        "{field}"
    );
    let fresh = hash_password_argon2id(b"s3cret").expect("valid input");
    let (file, warnings) = PasswordFile::parse(&format!("a:{field}\nb:{fresh}\n"));
    assert_eq!(warnings, vec![]);
    assert!(file.check("a", Some(b"s3cret")));
    assert!(file.check("b", Some(b"s3cret")));
    assert!(!file.check("b", Some(b"s3cre")));
    assert!(is_password_hash(fresh.as_bytes()));
    // Malformed: wrong version, parameter order, salt too short, unknown variant, 4 GiB of memory.
    for bad in [
        "$argon2id$v=16$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$t=2,m=65536,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=65536,t=2,p=1$c29t$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
    ] {
        let (file, warnings) = PasswordFile::parse(&format!("x:{bad}\n"));
        assert!(file.is_empty(), "{bad}");
        assert_eq!(warnings.len(), 1, "{bad}");
    }
}

#[test]
fn constant_time_eq_compares_every_byte() {
    let a = [7u8; HASH_LEN];
    assert!(constant_time_eq(&a, &a));
    for index in [0, 31, HASH_LEN - 1] {
        let mut b = a;
        b[index] ^= 0x80;
        assert!(!constant_time_eq(&a, &b), "difference at {index} missed");
    }
}

#[test]
fn debug_output_leaves_hashes_out() {
    let shown = format!("{:?}", real_file());
    assert!(shown.contains("users: 3"), "{shown}");
    assert!(!shown.contains(ALICE_SALT), "{shown}");
}

#[test]
fn warnings_display_line_user_and_reason() {
    let (_, warnings) = PasswordFile::parse("x:$9$a$b\n");
    assert_eq!(
        warnings[0].to_string(),
        "line 1: invalid password hash type for user \"x\", removing entry"
    );
    let (_, warnings) = PasswordFile::parse(&format!("{ALICE}\nalice:{BOB_FIELD}"));
    assert!(
        warnings[0].to_string().contains("line 1"),
        "{}",
        warnings[0]
    );
}

#[test]
fn unopenable_file_is_an_error() {
    let path = std::env::temp_dir().join(format!(
        "shardmq-pwfile-missing-{}/none",
        std::process::id()
    ));
    let error = PasswordFile::load(&path).expect_err("missing file must not load");
    assert!(matches!(error, PasswordFileError::Open { .. }), "{error:?}");
    assert!(error.to_string().contains("unable to open password file"));
    assert!(error.to_string().contains(&*path.to_string_lossy()));

    let dir = std::env::temp_dir();
    let error = PasswordFile::load(&dir).expect_err("a directory must not load");
    assert!(matches!(error, PasswordFileError::Read { .. }), "{error:?}");
}

/// A scratch directory under the system temp dir, unique to this process, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("shardmq-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn load_reads_a_file_from_disk() {
    let dir = TempDir::new("pwfile-load");
    let path = dir.0.join("passwd");
    std::fs::write(&path, format!("{ALICE}\r\n{CAROL}\r\nbroken:\r\n")).expect("write file");
    let (file, warnings) = PasswordFile::load(&path).expect("load");
    assert_eq!(
        warnings,
        vec![removed(3, "broken", EntryError::InvalidHash)]
    );
    assert!(file.check("alice", Some(b"secret")));
    assert!(file.check("carol", Some(b"hunter2")));
}

#[test]
fn file_written_by_mosquitto_passwd_now_loads_and_checks() {
    const TOOL: &str = "/usr/bin/mosquitto_passwd";
    if !Path::new(TOOL).exists() {
        eprintln!("skipping: {TOOL} is not installed");
        return;
    }
    let dir = TempDir::new("pwfile-mosquitto-passwd");
    let path = dir.0.join("passwd");
    let run = |args: &[&str]| {
        let status = std::process::Command::new(TOOL)
            .args(args)
            .status()
            .expect("run mosquitto_passwd");
        assert!(
            status.success(),
            "mosquitto_passwd {args:?} failed: {status}"
        );
    };
    let file_arg = path.to_str().expect("temp path is UTF-8");
    run(&["-c", "-b", file_arg, "dave", "pass with spaces ünd ümlauts"]);
    run(&["-H", "sha512", "-b", file_arg, "erin", "s3cr3t!$:#"]);
    run(&["-b", file_arg, "frank", "x"]);
    let (file, warnings) = PasswordFile::load(&path).expect("load mosquitto_passwd output");
    assert_eq!(warnings, vec![]);
    assert_eq!(file.len(), 3);
    assert!(file.check("dave", Some("pass with spaces ünd ümlauts".as_bytes())));
    assert!(file.check("erin", Some(b"s3cr3t!$:#")));
    assert!(file.check("frank", Some(b"x")));
    assert!(!file.check("dave", Some(b"pass with spaces")));
    assert!(!file.check("frank", Some(b"y")));
    assert_eq!(file.hash_algorithm("erin"), Some(HashAlgorithm::Sha512));
    assert!(matches!(
        file.hash_algorithm("dave"),
        Some(HashAlgorithm::Pbkdf2Sha512 { .. })
    ));
}
