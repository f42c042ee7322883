use super::*;

/// RFC 7677 §3: user "user", password "pencil".
const SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_file() -> Arc<ScramFile> {
    let salt = BASE64.decode(SALT_B64).unwrap();
    let line = make_entry_with_salt("user", b"pencil", 4096, &salt).unwrap();
    Arc::new(ScramFile::parse(&line).unwrap())
}

fn exchange(file: Arc<ScramFile>) -> ScramExchange {
    ScramExchange::with_nonce(file, SERVER_NONCE)
}

#[test]
fn rfc7677_example_authenticates_and_the_server_proves_itself() {
    let mut x = exchange(rfc_file());
    assert_eq!(
        x.step(Some(CLIENT_FIRST.as_bytes())),
        Step::Continue(SERVER_FIRST.as_bytes().to_vec())
    );
    assert_eq!(
        x.step(Some(CLIENT_FINAL.as_bytes())),
        Step::Success {
            username: "user".into(),
            data: Some(SERVER_FINAL.as_bytes().to_vec())
        }
    );
    // Over: a replayed final message is not accepted again.
    assert_eq!(
        x.step(Some(CLIENT_FINAL.as_bytes())),
        Step::Failure(AuthFailure::Complete)
    );
}

#[test]
fn a_wrong_proof_fails() {
    let mut x = exchange(rfc_file());
    x.step(Some(CLIENT_FIRST.as_bytes()));
    let forged = CLIENT_FINAL.replace("p=dHz", "p=dHy");
    assert_eq!(
        x.step(Some(forged.as_bytes())),
        Step::Failure(AuthFailure::WrongProof)
    );
}

#[test]
fn an_unknown_user_gets_a_stable_decoy_salt_and_fails_at_the_end() {
    let first = "n,,n=nobody,r=abc";
    let challenge = |file| match exchange(file).step(Some(first.as_bytes())) {
        Step::Continue(d) => String::from_utf8(d).unwrap(),
        other => panic!("{other:?}"),
    };
    let a = challenge(rfc_file());
    assert_eq!(a, challenge(rfc_file()), "the same salt each time");
    assert!(a.ends_with(",i=4096"), "{a}");
    let mut x = exchange(rfc_file());
    x.step(Some(first.as_bytes()));
    let last = format!("c=biws,r=abc{SERVER_NONCE},p={}", BASE64.encode([0u8; 32]));
    assert_eq!(
        x.step(Some(last.as_bytes())),
        Step::Failure(AuthFailure::UnknownUser)
    );
}

#[test]
fn the_final_message_must_repeat_header_and_nonce() {
    for (bad, why) in [
        (CLIENT_FINAL.replace("c=biws", "c=eSws"), "c="),
        (CLIENT_FINAL.replace("r=rOpr", "r=xOpr"), "r="),
        ("c=biws".to_owned(), "p="),
    ] {
        let mut x = exchange(rfc_file());
        x.step(Some(CLIENT_FIRST.as_bytes()));
        match x.step(Some(bad.as_bytes())) {
            Step::Failure(AuthFailure::Malformed(_)) => {}
            other => panic!("{why}: {other:?}"),
        }
    }
}

#[test]
fn malformed_or_unsupported_first_messages_fail() {
    for (first, want) in [
        ("", AuthFailure::Malformed("no GS2 header")),
        ("n,,r=abc", AuthFailure::Malformed("n=")),
        ("n,,n=user", AuthFailure::Malformed("r=")),
        ("n,,n=user,r=", AuthFailure::Malformed("r=")),
        ("n,,n=user,r=a\tb", AuthFailure::Malformed("r=")),
        (
            "n,,n=us=er,r=abc",
            AuthFailure::Malformed("username escape"),
        ),
        (
            "p=tls-unique,,n=user,r=abc",
            AuthFailure::Unsupported("channel binding"),
        ),
        (
            "n,a=admin,n=user,r=abc",
            AuthFailure::Unsupported("authorisation identity"),
        ),
        (
            "n,,m=x,n=user,r=abc",
            AuthFailure::Unsupported("mandatory extension"),
        ),
        (
            "x,,n=user,r=abc",
            AuthFailure::Malformed("GS2 channel binding flag"),
        ),
    ] {
        let mut x = exchange(rfc_file());
        assert_eq!(
            x.step(Some(first.as_bytes())),
            Step::Failure(want),
            "{first:?}"
        );
    }
    let mut x = exchange(rfc_file());
    assert!(matches!(x.step(None), Step::Failure(_)), "no data at all");
}

#[test]
fn escaped_usernames_are_decoded() {
    assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
    assert!(decode_saslname("a=2").is_err());
}

#[test]
fn entries_round_trip_and_bad_lines_are_named() {
    let line = make_entry("alice", b"secret", 10).unwrap();
    let file = ScramFile::parse(&format!("# comment\n\n{line}\n")).unwrap();
    let c = file.get("alice").unwrap();
    assert_eq!(*c, Credential::derive(b"secret", &c.salt, 10));
    assert_eq!(file.len(), 1);
    let dup = format!("{line}\n{line}\n");
    assert_eq!(
        ScramFile::parse(&dup).unwrap_err(),
        (2, EntryError::Duplicate("alice".into()))
    );
    let fields: Vec<&str> = line.split(':').collect();
    let with = |i: usize, v: &str| {
        let mut f = fields.clone();
        f[i] = v;
        ScramFile::parse(&f.join(":")).unwrap_err().1
    };
    assert_eq!(with(0, ""), EntryError::EmptyUsername);
    assert_eq!(
        with(1, "SCRAM-SHA-1"),
        EntryError::Mechanism("SCRAM-SHA-1".into())
    );
    assert_eq!(with(2, "!!"), EntryError::Base64("salt"));
    assert_eq!(with(3, "0"), EntryError::Iterations);
    assert_eq!(with(4, "AAAA"), EntryError::KeyLength("stored_key"));
    assert_eq!(with(5, "%"), EntryError::Base64("server_key"));
    assert_eq!(ScramFile::parse("a:b").unwrap_err().1, EntryError::Fields);
    assert!(matches!(
        make_entry("a:b", b"x", 1),
        Err(MakeEntryError::Username)
    ));
    assert!(matches!(
        make_entry("a", b"x", 0),
        Err(MakeEntryError::Iterations(0))
    ));
}

#[test]
fn the_method_knows_its_users() {
    let m = ScramSha256::new(ScramFile::parse(&make_entry("alice", b"x", 1).unwrap()).unwrap());
    assert_eq!(m.name(), "SCRAM-SHA-256");
    assert!(m.knows("alice"));
    assert!(!m.knows("bob"));
}
