//! Property tests over random topics and filters, levels drawn from what the mapping must handle (NATS's
//! separator and wildcards, whitespace, `$`, `~` and look-alike escapes, non-ASCII, empty levels, levels
//! long enough to overflow a subject) and from arbitrary characters:
//! - a topic's subject decodes back to the topic, is a valid literal NATS subject of kept bytes and
//!   escapes, and is refused as too long only past [`MAX_SUBJECT_LEN`];
//! - any subject that is accepted re-encodes to itself (only the canonical encoding is accepted);
//! - when an MQTT filter matches a topic, one of the filter's subjects matches the subject the topic is
//!   published on (its overflow subject if it is long), and every subject is a valid NATS subject;
//! - conversely a filter's subjects match nothing more than the filter does, but for the `$` rule of
//!   MQTT and the overflow subjects of wildcard filters.

use proptest::prelude::*;
use proptest::sample::select;

use super::*;

/// Levels the mapping must get right.
const LEVELS: &[&str] = &[
    "",
    "a",
    "b",
    "A",
    "$SYS",
    "$",
    ".",
    "a.b",
    "*",
    ">",
    " ",
    "\t",
    "~",
    "~2E",
    "~~",
    "~41",
    "é",
    "°C",
    "\u{1f600}",
    "-_",
    "_",
    "-",
    "~7E",
    "a/b",
    "x y",
];

/// A level too long for some subjects: from 500 to 1,600 units of one to three escaped bytes each.
fn long_level() -> impl Strategy<Value = String> {
    (
        select(&["x", "é", ".", "a~", "\u{1f600}"][..]),
        500usize..1600,
    )
        .prop_map(|(unit, count)| unit.repeat(count))
}

/// One level (or, for `a/b`, two) of a topic name: no NUL, `+` or `#`.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(LEVELS).prop_map(String::from),
        3 => "[^\\x00+#/]{0,8}",
        1 => long_level(),
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(level(), 1..6).prop_map(|levels| levels.join("/")),
        "[^\\x00+#]{1,40}",
    ]
    .prop_filter("a topic name has at least one byte", |topic| {
        !topic.is_empty()
    })
}

fn prefix() -> impl Strategy<Value = SubjectPrefix> {
    select(&["p", "shardmq.c1.m"][..]).prop_map(|prefix| SubjectPrefix::new(prefix).unwrap())
}

/// What becomes of one level of the topic in the filter.
#[derive(Debug, Clone)]
enum Change {
    Keep,
    Plus,
    Replace(String),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        5 => Just(Change::Keep),
        3 => Just(Change::Plus),
        1 => level().prop_map(Change::Replace),
    ]
}

/// A topic and a filter made from it: some levels kept, some `+`, some replaced (so it may not match),
/// maybe cut short and ended with `#`, maybe a shared subscription. Returns (topic, filter as
/// subscribed, filter as matched).
fn topic_and_filter() -> impl Strategy<Value = (String, String, String)> {
    (
        prop::collection::vec(level(), 1..6),
        prop::collection::vec(change(), 6),
        prop::option::of(0usize..7),
        any::<bool>(),
    )
        .prop_map(|(levels, changes, cut, shared)| {
            let topic = levels.join("/");
            let mut filter_levels: Vec<String> = levels
                .iter()
                .zip(changes)
                .map(|(level, change)| match change {
                    Change::Keep => level.clone(),
                    Change::Plus => "+".to_string(),
                    Change::Replace(other) => other,
                })
                .collect();
            if let Some(cut) = cut {
                filter_levels.truncate(cut);
                filter_levels.push("#".to_string());
            }
            let filter = filter_levels.join("/");
            let subscribed = if shared {
                format!("$share/g/{filter}")
            } else {
                filter.clone()
            };
            (topic, subscribed, filter)
        })
        .prop_filter(
            "topic names and filters have at least one byte",
            |(t, _, f)| !t.is_empty() && !f.is_empty(),
        )
}

fn has_wildcard(filter: &str) -> bool {
    filter.split('/').any(|level| level == "+" || level == "#")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn topics_round_trip_through_valid_subjects(prefix in prefix(), topic in topic()) {
        match topic_to_subject(&prefix, &topic) {
            Ok(subject) => {
                prop_assert!(subject.len() <= MAX_SUBJECT_LEN);
                prop_assert!(is_nats_subject(&subject, false), "{:?}", subject);
                let tail = &subject[prefix.as_str().len() + 1..];
                prop_assert!(tail
                    .bytes()
                    .all(|byte| byte == b'.' || byte == b'~' || is_kept(byte)));
                prop_assert_eq!(tail.split('.').count(), topic.split('/').count());
                prop_assert_ne!(tail.split('.').next(), Some(OVERFLOW_TOKEN));
                prop_assert_eq!(subject_to_topic(&prefix, &subject), Ok(topic));
            }
            Err(SubjectError::TooLong { len }) => {
                prop_assert!(len > MAX_SUBJECT_LEN);
                let overflow = overflow_subject(&prefix, &topic);
                prop_assert!(is_nats_subject(&overflow, false));
                prop_assert!(is_overflow_subject(&prefix, &overflow));
                prop_assert_eq!(subject_to_topic(&prefix, &overflow), Err(SubjectError::Overflow));
            }
            Err(error) => prop_assert!(false, "{:?}: {}", topic, error),
        }
    }

    #[test]
    fn accepted_random_subjects_are_canonical(tail in "[A-Fa-f0-9~._*zZ -]{1,24}") {
        let subject = format!("p.{tail}");
        if let Ok(topic) = subject_to_topic(&p(), &subject) {
            prop_assert_eq!(topic_to_subject(&p(), &topic), Ok(subject));
        }
    }

    #[test]
    fn accepted_altered_subjects_are_canonical(
        topic in topic(),
        at in any::<prop::sample::Index>(),
        byte in select(&b"~.aA0Ff7_-*"[..]),
        insert in any::<bool>(),
    ) {
        let Ok(subject) = topic_to_subject(&p(), &topic) else {
            return Ok(());
        };
        // One byte of the tokens replaced, or one inserted (the subject is ASCII).
        let mut altered = subject.clone().into_bytes();
        let at = 2 + at.index(altered.len() - 2);
        if insert {
            altered.insert(at, byte);
        } else {
            altered[at] = byte;
        }
        let altered = String::from_utf8(altered).unwrap();
        if let Ok(decoded) = subject_to_topic(&p(), &altered) {
            prop_assert_eq!(topic_to_subject(&p(), &decoded), Ok(altered.clone()));
            prop_assert_eq!(decoded == topic, altered == subject);
        }
    }

    #[test]
    fn a_matching_filter_routes_the_topic_and_nothing_it_does_not_match(
        prefix in prefix(),
        (topic, subscribed, filter) in topic_and_filter(),
    ) {
        let subjects = filter_to_subjects(&prefix, &subscribed).unwrap();
        prop_assert!(!subjects.is_empty());
        for subject in &subjects {
            prop_assert!(is_nats_subject(subject, true), "{:?}", subject);
            prop_assert!(subject.len() <= MAX_SUBJECT_LEN);
        }
        let published = publish_subject(&prefix, &topic);
        let routed = subjects.iter().any(|pattern| nats_matches(pattern, &published));
        let matched = matches(&filter, &topic);
        if matched {
            prop_assert!(
                routed,
                "{:?} matches {:?}, {:?} miss {:?}", filter, topic, subjects, published
            );
        }
        if routed && !matched {
            // Over-delivery the receiving node filters, and only that.
            let dollar_rule =
                topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#'));
            let overflow = is_overflow_subject(&prefix, &published) && has_wildcard(&filter);
            prop_assert!(
                dollar_rule || overflow,
                "{:?} does not match {:?}, {:?} take {:?}", filter, topic, subjects, published
            );
        }
    }
}
