//! Subject mapping tests: the examples of the module documentation and every awkward byte (`.`, `*`,
//! `>`, whitespace, `$`, `~`, non-ASCII, empty levels) map as specified; filters give the subjects
//! specified, overflow subjects included; the length limit and the overflow subject's hash are pinned;
//! non-canonical subjects, subjects outside the prefix and bad prefixes are refused; NATS routing is
//! coarser than MQTT for `$` topics. `properties.rs` checks the properties over random topics and filters
//! (round trip, valid NATS tokens, no missed message), with the small NATS validator and matcher below.

mod properties;

use super::*;
use crate::topic::matches;

/// The prefix of the tables: a short one keeps the expected subjects readable.
fn p() -> SubjectPrefix {
    SubjectPrefix::new("p").expect("valid prefix")
}

/// NATS's whitespace (nats-server's subject check: space, tab, LF, FF, CR), which ends a token.
fn is_nats_whitespace(character: char) -> bool {
    matches!(character, ' ' | '\t' | '\n' | '\x0C' | '\r')
}

/// Whether `subject` is a valid NATS subject by NATS's rules: non-empty tokens separated by `.`, no
/// whitespace or U+0000, a `>` token only last; with `wildcards` false, no `*` or `>` token at all
/// (a subject messages are published to).
fn is_nats_subject(subject: &str, wildcards: bool) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    tokens.iter().enumerate().all(|(index, token)| {
        !token.is_empty()
            && !token.contains(|c| is_nats_whitespace(c) || c == '\0')
            && match *token {
                "*" => wildcards,
                ">" => wildcards && index + 1 == tokens.len(),
                _ => true,
            }
    })
}

/// NATS matching: `*` matches one token, `>` one or more trailing tokens, any other token itself.
fn nats_matches(pattern: &str, subject: &str) -> bool {
    let mut pattern_tokens = pattern.split('.');
    let mut subject_tokens = subject.split('.');
    loop {
        match (pattern_tokens.next(), subject_tokens.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(expected), Some(token)) if expected == token => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The subject a node publishes `topic` on: its own, or its overflow subject when that is too long.
fn publish_subject(prefix: &SubjectPrefix, topic: &str) -> String {
    match topic_to_subject(prefix, topic) {
        Ok(subject) => subject,
        Err(SubjectError::TooLong { .. }) => overflow_subject(prefix, topic),
        Err(error) => panic!("topic {topic:?}: {error}"),
    }
}

/// (topic, subject under `p.`).
const TOPICS: &[(&str, &str)] = &[
    // The module documentation's examples.
    ("a//b", "a.~.b"),
    ("$SYS/x", "~24SYS.x"),
    ("a.b", "a~2Eb"),
    ("/", "~.~"),
    // The kept class.
    ("a", "a"),
    ("AZaz09_-", "AZaz09_-"),
    ("sensors/room-1/temp_c", "sensors.room-1.temp_c"),
    // NATS's separator and wildcards.
    (".", "~2E"),
    ("a..b", "a~2E~2Eb"),
    ("*", "~2A"),
    ("a*b", "a~2Ab"),
    (">", "~3E"),
    ("a/>/b", "a.~3E.b"),
    ("a/*/>", "a.~2A.~3E"),
    // Whitespace and control characters.
    (" ", "~20"),
    ("hello world", "hello~20world"),
    ("tab\there", "tab~09here"),
    ("new\nline\r", "new~0Aline~0D"),
    ("\u{1}\u{7f}", "~01~7F"),
    // `$` anywhere, and the escape character itself.
    ("$", "~24"),
    ("a/$x", "a.~24x"),
    ("~", "~7E"),
    ("~2E", "~7E2E"),
    ("a~/~", "a~7E.~7E"),
    ("%/=/:/,/!/@/\\/'/\"", "~25.~3D.~3A.~2C.~21.~40.~5C.~27.~22"),
    // Non-ASCII, byte by byte of its UTF-8.
    ("température/°C", "temp~C3~A9rature.~C2~B0C"),
    ("\u{1f600}", "~F0~9F~98~80"),
    ("caf\u{e9}/\u{1f980}/x", "caf~C3~A9.~F0~9F~A6~80.x"),
    ("\u{feff}", "~EF~BB~BF"),
    // Empty levels at the start, in the middle, at the end, and nothing else.
    ("/a", "~.a"),
    ("a/", "a.~"),
    ("a//b/", "a.~.b.~"),
    ("/a/", "~.a.~"),
    ("//", "~.~.~"),
    ("///", "~.~.~.~"),
];

/// (filter, subjects under `p.`).
const FILTERS: &[(&str, &[&str])] = &[
    ("a", &["a"]),
    ("a/b", &["a.b"]),
    ("/", &["~.~"]),
    ("a.b/c d", &["a~2Eb.c~20d"]),
    ("+", &["*", "~~.>"]),
    ("a/+", &["a.*", "~~.>"]),
    ("+/a", &["*.a", "~~.>"]),
    ("a//+", &["a.~.*", "~~.>"]),
    ("a/+/c", &["a.*.c", "~~.>"]),
    ("a/#", &["a", "a.>", "~~.>"]),
    ("a/+/#", &["a.*", "a.*.>", "~~.>"]),
    ("/#", &["~", "~.>", "~~.>"]),
    ("$SYS/#", &["~24SYS", "~24SYS.>", "~~.>"]),
    ("a.b/+", &["a~2Eb.*", "~~.>"]),
    // These match every overflow subject already: no second subject for the same messages.
    ("#", &[">"]),
    ("+/#", &["*", "*.>"]),
    ("+/+", &["*.*"]),
    ("+/+/#", &["*.*", "*.*.>"]),
    ("+/+/+", &["*.*.*", "~~.>"]),
    // Shared subscriptions: the subjects of their filter.
    ("$share/g/a/+", &["a.*", "~~.>"]),
    ("$share/g/#", &[">"]),
    ("$share/g/a/b", &["a.b"]),
];

fn under_p(tail: &str) -> String {
    format!("p.{tail}")
}

#[test]
fn topics_map_to_their_subjects_and_back() {
    for (topic, tail) in TOPICS {
        let subject = under_p(tail);
        assert_eq!(
            topic_to_subject(&p(), topic),
            Ok(subject.clone()),
            "{topic:?}"
        );
        assert_eq!(
            subject_to_topic(&p(), &subject),
            Ok(topic.to_string()),
            "{subject:?}"
        );
        assert!(is_nats_subject(&subject, false), "{subject:?}");
    }
}

#[test]
fn a_longer_prefix_is_followed_by_the_tokens() {
    let prefix = SubjectPrefix::new("shardmq.c1.m").unwrap();
    assert_eq!(
        topic_to_subject(&prefix, "$SYS/x").as_deref(),
        Ok("shardmq.c1.m.~24SYS.x")
    );
    assert_eq!(
        subject_to_topic(&prefix, "shardmq.c1.m.~24SYS.x").as_deref(),
        Ok("$SYS/x")
    );
    assert_eq!(
        filter_to_subjects(&prefix, "a/#").unwrap().as_slice(),
        ["shardmq.c1.m.a", "shardmq.c1.m.a.>", "shardmq.c1.m.~~.>"]
    );
}

#[test]
fn invalid_topic_names_are_refused() {
    for (topic, error) in [
        ("", TopicError::Empty),
        (
            "a/+",
            TopicError::WildcardInTopicName {
                wildcard: '+',
                offset: 2,
            },
        ),
        (
            "#",
            TopicError::WildcardInTopicName {
                wildcard: '#',
                offset: 0,
            },
        ),
        ("a\0b", TopicError::NullCharacter { offset: 1 }),
    ] {
        assert_eq!(
            topic_to_subject(&p(), topic),
            Err(SubjectError::Topic(error))
        );
    }
}

#[test]
fn filters_map_to_their_subjects() {
    for (filter, tails) in FILTERS {
        let subjects = filter_to_subjects(&p(), filter).unwrap();
        let expected: Vec<String> = tails.iter().map(|tail| under_p(tail)).collect();
        assert_eq!(subjects.as_slice(), expected.as_slice(), "{filter:?}");
        for subject in &subjects {
            assert!(is_nats_subject(subject, true), "{subject:?}");
        }
    }
}

#[test]
fn invalid_filters_are_refused() {
    for (filter, error) in [
        ("", TopicError::Empty),
        (
            "a/#/b",
            TopicError::MisplacedMultiLevelWildcard { offset: 2 },
        ),
        ("a+", TopicError::MisplacedSingleLevelWildcard { offset: 1 }),
        ("a\0", TopicError::NullCharacter { offset: 1 }),
        ("$share//a", TopicError::EmptyShareName),
    ] {
        assert_eq!(
            filter_to_subjects(&p(), filter),
            Err(SubjectError::Filter(error)),
            "{filter:?}"
        );
    }
}

#[test]
fn root_wildcards_match_dollar_topics_in_nats_and_the_node_filters_them() {
    // NATS routing is coarse: `+/x` and `#` reach a node for `$SYS/x` ...
    let subject = topic_to_subject(&p(), "$SYS/x").unwrap();
    for filter in ["+/x", "#", "+/#"] {
        let subjects = filter_to_subjects(&p(), filter).unwrap();
        assert!(
            subjects
                .iter()
                .any(|pattern| nats_matches(pattern, &subject)),
            "{filter:?}"
        );
        // ... and the node's own MQTT match (what its index does) drops the message.
        assert!(!matches(filter, "$SYS/x"), "{filter:?}");
    }
    // A filter naming `$SYS` matches in both.
    let subjects = filter_to_subjects(&p(), "$SYS/+").unwrap();
    assert!(subjects
        .iter()
        .any(|pattern| nats_matches(pattern, &subject)));
    assert!(matches("$SYS/+", "$SYS/x"));
}

#[test]
fn the_subject_length_limit_is_exact() {
    // `p.` and one level of kept bytes: 2 + n bytes.
    let longest = "a".repeat(MAX_SUBJECT_LEN - 2);
    let subject = topic_to_subject(&p(), &longest).unwrap();
    assert_eq!(subject.len(), MAX_SUBJECT_LEN);
    assert_eq!(subject_to_topic(&p(), &subject), Ok(longest.clone()));
    let too_long = format!("{longest}a");
    assert_eq!(
        topic_to_subject(&p(), &too_long),
        Err(SubjectError::TooLong {
            len: MAX_SUBJECT_LEN + 1
        })
    );
    assert_eq!(
        subject_to_topic(&p(), &format!("p.{too_long}")),
        Err(SubjectError::TooLong {
            len: MAX_SUBJECT_LEN + 1
        })
    );
    // Escapes count three bytes each: 1,100 `é` are 2,200 bytes and a 6,602-byte subject.
    assert_eq!(
        topic_to_subject(&p(), &"é".repeat(1100)),
        Err(SubjectError::TooLong { len: 6602 })
    );
    // The longest MQTT topic, escaped throughout, is measured without being built.
    let dots = ".".repeat(crate::topic::MAX_TOPIC_LEN);
    assert_eq!(
        topic_to_subject(&p(), &dots),
        Err(SubjectError::TooLong {
            len: 2 + 3 * crate::topic::MAX_TOPIC_LEN
        })
    );
}

#[test]
fn overflow_subjects_are_the_first_128_bits_of_sha256() {
    // Known answers (FIPS 180-2 for "abc"): the hash is part of the wire format between nodes and
    // versions, so it is pinned here.
    assert_eq!(
        overflow_subject(&p(), "abc"),
        "p.~~.BA7816BF8F01CFEA414140DE5DAE2223"
    );
    assert_eq!(
        overflow_subject(&p(), "a/b"),
        "p.~~.C14CDDC033F64B9DEA80EA675CF280A0"
    );
    let long = "x".repeat(MAX_SUBJECT_LEN);
    let subject = overflow_subject(&p(), &long);
    assert!(is_overflow_subject(&p(), &subject));
    assert!(is_nats_subject(&subject, false));
    assert_eq!(
        subject_to_topic(&p(), &subject),
        Err(SubjectError::Overflow)
    );
    assert_ne!(subject, overflow_subject(&p(), &format!("{long}y")));
}

#[test]
fn is_overflow_subject_takes_only_the_exact_form() {
    let hash = "BA7816BF8F01CFEA414140DE5DAE2223";
    assert!(is_overflow_subject(&p(), &format!("p.~~.{hash}")));
    for not_overflow in [
        format!("q.~~.{hash}"),
        format!("p.~~.{}", hash.to_lowercase()),
        format!("p.~~.{hash}0"),
        format!("p.~~.{}", &hash[1..]),
        format!("p.~~.{hash}.a"),
        format!("p.a.~~.{hash}"),
        "p.~~.>".to_string(),
        "p.~~".to_string(),
    ] {
        assert!(
            !is_overflow_subject(&p(), &not_overflow),
            "{not_overflow:?}"
        );
    }
}

#[test]
fn long_filters_subscribe_to_the_overflow_subjects() {
    // A literal filter too long for a subject: exactly its topic's overflow subject.
    let long = "é".repeat(1100);
    assert_eq!(
        filter_to_subjects(&p(), &long).unwrap().as_slice(),
        [overflow_subject(&p(), &long)]
    );
    // A wildcard filter whose subject is too long: every topic it matches overflows too.
    assert_eq!(
        filter_to_subjects(&p(), &format!("{long}/+"))
            .unwrap()
            .as_slice(),
        ["p.~~.>"]
    );
    // `a/#` whose parent subject fits exactly but whose `.>` subject does not.
    let parent = "a".repeat(MAX_SUBJECT_LEN - 2);
    assert_eq!(
        filter_to_subjects(&p(), &format!("{parent}/#"))
            .unwrap()
            .as_slice(),
        [format!("p.{parent}"), "p.~~.>".to_string()]
    );
}

#[test]
fn non_canonical_subjects_are_refused() {
    use SubjectError::*;
    let cases: &[(&str, SubjectError)] = &[
        // Lowercase hex, truncated escapes, non-hex digits after `~`.
        ("p.a~2eb", BadEscape { offset: 3 }),
        ("p.~c3~a9", BadEscape { offset: 2 }),
        ("p.a~2", BadEscape { offset: 3 }),
        ("p.a~", BadEscape { offset: 3 }),
        ("p.~G0", BadEscape { offset: 2 }),
        ("p.~0G", BadEscape { offset: 2 }),
        ("p.~~2E", BadEscape { offset: 2 }),
        ("p.~~", Overflow),
        ("p.a.~~", BadEscape { offset: 4 }),
        ("p.~~~", BadEscape { offset: 2 }),
        ("p.a~~.b", BadEscape { offset: 3 }),
        // Escapes of bytes the encoding keeps.
        ("p.~41", NeedlessEscape { offset: 2 }),
        ("p.b~61", NeedlessEscape { offset: 3 }),
        ("p.~30", NeedlessEscape { offset: 2 }),
        ("p.~2D", NeedlessEscape { offset: 2 }),
        ("p.~5F", NeedlessEscape { offset: 2 }),
        // A separator inside a level: `a/b` is `a.b`, never `a~2Fb`.
        ("p.a~2Fb", EscapedSlash { offset: 3 }),
        ("p.~2F", EscapedSlash { offset: 2 }),
        // Bytes the encoding escapes, unescaped.
        (
            "p.*",
            UnescapedByte {
                byte: b'*',
                offset: 2,
            },
        ),
        (
            "p.a.>",
            UnescapedByte {
                byte: b'>',
                offset: 4,
            },
        ),
        (
            "p.a b",
            UnescapedByte {
                byte: b' ',
                offset: 3,
            },
        ),
        (
            "p.$SYS",
            UnescapedByte {
                byte: b'$',
                offset: 2,
            },
        ),
        (
            "p.\u{e9}",
            UnescapedByte {
                byte: 0xC3,
                offset: 2,
            },
        ),
        (
            "p.a/b",
            UnescapedByte {
                byte: b'/',
                offset: 3,
            },
        ),
        // Empty tokens: an empty level is `~`, never nothing.
        ("p.", EmptyToken { offset: 2 }),
        ("p..a", EmptyToken { offset: 2 }),
        ("p.a.", EmptyToken { offset: 4 }),
        ("p.a..b", EmptyToken { offset: 4 }),
        // Valid escapes whose bytes are not UTF-8, or not a topic name.
        ("p.~C3", NotUtf8),
        ("p.~FF", NotUtf8),
        ("p.a~C3.~A9", NotUtf8),
        (
            "p.~2B",
            Topic(TopicError::WildcardInTopicName {
                wildcard: '+',
                offset: 0,
            }),
        ),
        (
            "p.a.~23",
            Topic(TopicError::WildcardInTopicName {
                wildcard: '#',
                offset: 2,
            }),
        ),
        ("p.~00", Topic(TopicError::NullCharacter { offset: 0 })),
    ];
    for (subject, error) in cases {
        assert_eq!(subject_to_topic(&p(), subject), Err(*error), "{subject:?}");
    }
}

#[test]
fn subjects_outside_the_prefix_are_refused() {
    let prefix = SubjectPrefix::new("shardmq.c1.m").unwrap();
    for subject in [
        "",
        "shardmq.c1.m",
        "shardmq.c1.ma",
        "shardmq.c1.mx.a",
        "shardmq.c2.m.a",
        "shardmq.c1.a",
        "Shardmq.c1.m.a",
        "p.a",
        "xshardmq.c1.m.a",
    ] {
        assert_eq!(
            subject_to_topic(&prefix, subject),
            Err(SubjectError::NotUnderPrefix),
            "{subject:?}"
        );
    }
}

#[test]
fn prefixes_are_checked() {
    for valid in [
        "p",
        "shardmq.c1.m",
        "shardmq.cluster-one_2.m",
        "a.b.c.d.e",
        "shardmq.caf\u{e9}.m",
        "x$.~",
        &"x".repeat(MAX_PREFIX_LEN),
    ] {
        let prefix = SubjectPrefix::new(valid).unwrap();
        assert_eq!(prefix.as_str(), valid);
        assert_eq!(prefix.to_string(), valid);
        assert!(is_nats_subject(valid, false), "{valid:?}");
    }
    let too_long = "x".repeat(MAX_PREFIX_LEN + 1);
    for (invalid, error) in [
        ("", PrefixError::Empty),
        (
            too_long.as_str(),
            PrefixError::TooLong {
                len: MAX_PREFIX_LEN + 1,
            },
        ),
        (".", PrefixError::EmptyToken { offset: 0 }),
        (".a", PrefixError::EmptyToken { offset: 0 }),
        ("a.", PrefixError::EmptyToken { offset: 2 }),
        ("a..b", PrefixError::EmptyToken { offset: 2 }),
        (
            "a.*",
            PrefixError::Wildcard {
                wildcard: '*',
                offset: 2,
            },
        ),
        (
            "a.>",
            PrefixError::Wildcard {
                wildcard: '>',
                offset: 2,
            },
        ),
        (
            "a*b",
            PrefixError::Wildcard {
                wildcard: '*',
                offset: 1,
            },
        ),
        ("a b", PrefixError::Whitespace { offset: 1 }),
        ("a\tb", PrefixError::Whitespace { offset: 1 }),
        ("a.b\r\n", PrefixError::Whitespace { offset: 3 }),
        ("a\0", PrefixError::Whitespace { offset: 1 }),
        ("a\u{a0}", PrefixError::Whitespace { offset: 1 }),
        ("$SYS.shardmq", PrefixError::Reserved),
        ("$JS", PrefixError::Reserved),
    ] {
        assert_eq!(SubjectPrefix::new(invalid), Err(error), "{invalid:?}");
    }
}

#[test]
fn errors_display_their_fields() {
    assert_eq!(
        SubjectError::TooLong { len: 4000 }.to_string(),
        "subject is 4000 bytes long, the limit is 3072"
    );
    assert_eq!(
        SubjectError::UnescapedByte {
            byte: b'*',
            offset: 2
        }
        .to_string(),
        "subject has the unescaped byte 0x2a at byte 2"
    );
    assert_eq!(
        PrefixError::Wildcard {
            wildcard: '>',
            offset: 2
        }
        .to_string(),
        "subject prefix contains the wildcard '>' at byte 2"
    );
}

#[test]
fn the_test_nats_helpers_follow_nats_rules() {
    assert!(is_nats_subject("a.b", false));
    assert!(is_nats_subject("a.*.>", true));
    for invalid in ["", "a.", ".a", "a..b", "a b", "a\tb", "a\0"] {
        assert!(!is_nats_subject(invalid, true), "{invalid:?}");
    }
    assert!(!is_nats_subject("a.*", false));
    assert!(!is_nats_subject("a.>.b", true));
    assert!(nats_matches("a.*", "a.b"));
    assert!(!nats_matches("a.*", "a"));
    assert!(!nats_matches("a.*", "a.b.c"));
    assert!(nats_matches("a.>", "a.b.c"));
    assert!(!nats_matches("a.>", "a"));
    assert!(nats_matches(">", "a"));
    assert!(!nats_matches("a.b", "a.bc"));
}
