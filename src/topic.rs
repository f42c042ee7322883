//! MQTT topic names and topic filters: validation and the reference matcher.
//!
//! Concurrency: pure functions over `&str`, no state; any thread may call them.
//!
//! Rules (MQTT 3.1.1 §4.7, MQTT 5.0 §4.7 and §4.8.2):
//! - a topic name (what PUBLISH carries) is 1..=65535 bytes, contains no `+`, `#` or U+0000;
//! - a topic filter (what SUBSCRIBE carries) is 1..=65535 bytes, contains no U+0000, uses `+` only as a
//!   whole level and `#` only as the whole last level;
//! - `$share/{group}/{filter}` is a shared subscription: the group is non-empty and has no `/`, `+`, `#`,
//!   the filter after it is an ordinary valid filter;
//! - levels are separated by `/` and may be empty (`a//b`, `/a`, `a/` all have an empty level);
//! - a filter whose first level is `+` or `#` does not match a topic starting with `$` (§4.7.2).
//!
//! [`matches()`] is the small, obviously correct oracle that the subscription index
//! ([`crate::index`]) is tested against; the index, not this function, is what the broker runs per publish.

use thiserror::Error;

/// Longest topic name or filter in bytes: an MQTT UTF-8 string has a 16-bit length prefix.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Prefix of a shared subscription filter (MQTT 5.0 §4.8.2).
pub const SHARED_PREFIX: &str = "$share/";

/// Why a topic name or topic filter was rejected. Offsets are byte offsets into the string checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TopicError {
    /// The string has no bytes; both names and filters must have at least one character.
    #[error("topic is empty")]
    Empty,
    /// The string is longer than an MQTT UTF-8 string can be.
    #[error("topic is {len} bytes long, the limit is {max}")]
    TooLong {
        /// Length of the rejected string in bytes.
        len: usize,
        /// The limit it exceeded ([`MAX_TOPIC_LEN`]).
        max: usize,
    },
    /// The string contains U+0000, which MQTT forbids in every UTF-8 string.
    #[error("topic contains U+0000 at byte {offset}")]
    NullCharacter {
        /// Byte offset of the NUL.
        offset: usize,
    },
    /// A topic name (not a filter) contains `+` or `#`.
    #[error("topic name contains wildcard '{wildcard}' at byte {offset}")]
    WildcardInTopicName {
        /// The wildcard found, `+` or `#`.
        wildcard: char,
        /// Byte offset of the wildcard.
        offset: usize,
    },
    /// A `+` in a filter that is not a whole level (`a+/b`, `a/+b`).
    #[error("'+' at byte {offset} is not a whole topic level")]
    MisplacedSingleLevelWildcard {
        /// Byte offset of the `+`.
        offset: usize,
    },
    /// A `#` in a filter that is not the whole last level (`a/#/b`, `a#`).
    #[error("'#' at byte {offset} is not the whole last topic level")]
    MisplacedMultiLevelWildcard {
        /// Byte offset of the `#`.
        offset: usize,
    },
    /// `$share//filter`: the share group name is empty.
    #[error("shared subscription has an empty share name")]
    EmptyShareName,
    /// The share group name contains `+` or `#`.
    #[error("share name contains wildcard '{wildcard}' at byte {offset}")]
    WildcardInShareName {
        /// The wildcard found, `+` or `#`.
        wildcard: char,
        /// Byte offset of the wildcard.
        offset: usize,
    },
    /// `$share/group` or `$share/group/`: no topic filter follows the share name.
    #[error("shared subscription has no topic filter after the share name")]
    MissingSharedFilter,
}

/// Checks a topic name as carried by PUBLISH (or a will topic).
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    check_length(topic)?;
    for (offset, &byte) in topic.as_bytes().iter().enumerate() {
        // Multi-byte UTF-8 sequences never contain ASCII bytes, so a byte scan is exact.
        match byte {
            0 => return Err(TopicError::NullCharacter { offset }),
            b'+' | b'#' => {
                return Err(TopicError::WildcardInTopicName {
                    wildcard: char::from(byte),
                    offset,
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a topic filter as carried by SUBSCRIBE or UNSUBSCRIBE, including `$share/{group}/{filter}`.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_length(filter)?;
    match split_shared(filter) {
        Some(shared) => shared.map(|_| ()),
        None => check_filter_levels(filter, 0),
    }
}

/// Splits a valid shared subscription `$share/{group}/{filter}` into `(group, filter)`.
///
/// Returns `None` when `s` is not a shared subscription or is an invalid one; [`validate_topic_filter`]
/// says why. So `parse_shared(s).is_some()` exactly when `s` starts with `$share/` and is valid.
pub fn parse_shared(s: &str) -> Option<(&str, &str)> {
    if check_length(s).is_err() {
        return None;
    }
    split_shared(s).and_then(Result::ok)
}

/// Whether `topic` matches any of `filters` ([`matches`]).
pub fn matches_any<'a>(
    filters: impl IntoIterator<Item = &'a crate::codec::Utf8Bytes>,
    topic: &str,
) -> bool {
    filters.into_iter().any(|f| matches(f, topic))
}

/// Whether `filter` matches `topic`. Both are assumed valid (see [`validate_topic_filter`] and
/// [`validate_topic_name`]); a shared subscription's `$share/{group}/` prefix must be stripped first.
///
/// This is the reference oracle: short enough to check by eye against the spec.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // `#` matches the parent level too: `a/#` matches `a`.
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether a topic (or a filter's first level) belongs to the `$` namespace that root wildcards skip.
pub fn is_dollar_topic(topic: &str) -> bool {
    topic.starts_with('$')
}

fn check_length(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong {
            len: s.len(),
            max: MAX_TOPIC_LEN,
        });
    }
    Ok(())
}

/// `None` when `s` is not a shared subscription, otherwise its validated `(group, filter)`.
fn split_shared(s: &str) -> Option<Result<(&str, &str), TopicError>> {
    let rest = s.strip_prefix(SHARED_PREFIX)?;
    let base = SHARED_PREFIX.len();
    let Some(slash) = rest.find('/') else {
        return Some(Err(if rest.is_empty() {
            TopicError::EmptyShareName
        } else {
            TopicError::MissingSharedFilter
        }));
    };
    let (group, filter) = (&rest[..slash], &rest[slash + 1..]);
    if group.is_empty() {
        return Some(Err(TopicError::EmptyShareName));
    }
    for (index, &byte) in group.as_bytes().iter().enumerate() {
        let offset = base + index;
        match byte {
            0 => return Some(Err(TopicError::NullCharacter { offset })),
            b'+' | b'#' => {
                return Some(Err(TopicError::WildcardInShareName {
                    wildcard: char::from(byte),
                    offset,
                }))
            }
            _ => {}
        }
    }
    if filter.is_empty() {
        return Some(Err(TopicError::MissingSharedFilter));
    }
    Some(check_filter_levels(filter, base + slash + 1).map(|()| (group, filter)))
}

/// Checks wildcard placement and NULs in a (non-shared) filter; `base` is added to reported offsets.
fn check_filter_levels(filter: &str, base: usize) -> Result<(), TopicError> {
    let bytes = filter.as_bytes();
    let mut level_start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let offset = base + index;
        match byte {
            0 => return Err(TopicError::NullCharacter { offset }),
            b'/' => level_start = index + 1,
            b'+' => {
                let whole_level =
                    index == level_start && matches!(bytes.get(index + 1), None | Some(b'/'));
                if !whole_level {
                    return Err(TopicError::MisplacedSingleLevelWildcard { offset });
                }
            }
            b'#' if index != level_start || index + 1 != bytes.len() => {
                return Err(TopicError::MisplacedMultiLevelWildcard { offset });
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid filters: Mosquitto's `src/subs.c` note and `test/unit/util_topic_test.c`, plus empty levels.
    const VALID_FILTERS: &[&str] = &[
        "a/b/+",
        "a/+/c",
        "a/#",
        "a/b/#",
        "#",
        "+/b/c",
        "+/+/+",
        "+",
        "sub/topic",
        "sub//topic",
        "sub/ /topic",
        "sub/+/topic",
        "sub/topic/#",
        "sub//topic/#",
        "sub/ /topic/#",
        "sub/+/topic/#",
        "+/+/+/#",
        "/",
        "//",
        "/a",
        "a/",
        "/#",
        "+/",
        "/+",
        "+/#",
        "$SYS/#",
        "$SYS/broker/+",
        "$",
        "a$b",
        "caf\u{e9}/\u{1f600}/+",
        "$share/group/a/b",
        "$share/group/#",
        "$share/g/+/x/#",
        "$share/g//",
        "$share/g/$SYS/#",
    ];

    const INVALID_FILTERS: &[(&str, TopicError)] = &[
        ("", TopicError::Empty),
        (
            "a/#/c",
            TopicError::MisplacedMultiLevelWildcard { offset: 2 },
        ),
        (
            "a+/b/c",
            TopicError::MisplacedSingleLevelWildcard { offset: 1 },
        ),
        (
            "+sub/topic",
            TopicError::MisplacedSingleLevelWildcard { offset: 0 },
        ),
        (
            "sub+/topic",
            TopicError::MisplacedSingleLevelWildcard { offset: 3 },
        ),
        (
            "sub/+topic",
            TopicError::MisplacedSingleLevelWildcard { offset: 4 },
        ),
        (
            "sub/topic+",
            TopicError::MisplacedSingleLevelWildcard { offset: 9 },
        ),
        (
            "#sub/topic",
            TopicError::MisplacedMultiLevelWildcard { offset: 0 },
        ),
        (
            "sub#/topic",
            TopicError::MisplacedMultiLevelWildcard { offset: 3 },
        ),
        (
            "sub/#topic",
            TopicError::MisplacedMultiLevelWildcard { offset: 4 },
        ),
        (
            "sub/topic#",
            TopicError::MisplacedMultiLevelWildcard { offset: 9 },
        ),
        (
            "#/sub/topic",
            TopicError::MisplacedMultiLevelWildcard { offset: 0 },
        ),
        ("#/", TopicError::MisplacedMultiLevelWildcard { offset: 0 }),
        ("##", TopicError::MisplacedMultiLevelWildcard { offset: 0 }),
        ("++", TopicError::MisplacedSingleLevelWildcard { offset: 0 }),
        ("+#", TopicError::MisplacedSingleLevelWildcard { offset: 0 }),
        (
            "foo/#a",
            TopicError::MisplacedMultiLevelWildcard { offset: 4 },
        ),
        ("/#a", TopicError::MisplacedMultiLevelWildcard { offset: 1 }),
        ("a\0b", TopicError::NullCharacter { offset: 1 }),
        ("$share/", TopicError::EmptyShareName),
        ("$share//a", TopicError::EmptyShareName),
        ("$share/g", TopicError::MissingSharedFilter),
        ("$share/g/", TopicError::MissingSharedFilter),
        (
            "$share/g+/a",
            TopicError::WildcardInShareName {
                wildcard: '+',
                offset: 8,
            },
        ),
        (
            "$share/#/a",
            TopicError::WildcardInShareName {
                wildcard: '#',
                offset: 7,
            },
        ),
        (
            "$share/g/a/#/b",
            TopicError::MisplacedMultiLevelWildcard { offset: 11 },
        ),
        ("$share/g\0/a", TopicError::NullCharacter { offset: 8 }),
    ];

    const VALID_NAMES: &[&str] = &[
        "pub/topic",
        "pub//topic",
        "pub/ /topic",
        "/",
        "a/",
        "/a",
        "$SYS/x",
        "\u{e9}",
    ];

    const INVALID_NAMES: &[(&str, TopicError)] = &[
        ("", TopicError::Empty),
        (
            "+pub/topic",
            TopicError::WildcardInTopicName {
                wildcard: '+',
                offset: 0,
            },
        ),
        (
            "pub+/topic",
            TopicError::WildcardInTopicName {
                wildcard: '+',
                offset: 3,
            },
        ),
        (
            "pub/+topic",
            TopicError::WildcardInTopicName {
                wildcard: '+',
                offset: 4,
            },
        ),
        (
            "pub/topic+",
            TopicError::WildcardInTopicName {
                wildcard: '+',
                offset: 9,
            },
        ),
        (
            "pub/topic/+",
            TopicError::WildcardInTopicName {
                wildcard: '+',
                offset: 10,
            },
        ),
        (
            "#pub/topic",
            TopicError::WildcardInTopicName {
                wildcard: '#',
                offset: 0,
            },
        ),
        (
            "pub#/topic",
            TopicError::WildcardInTopicName {
                wildcard: '#',
                offset: 3,
            },
        ),
        (
            "pub/#topic",
            TopicError::WildcardInTopicName {
                wildcard: '#',
                offset: 4,
            },
        ),
        (
            "pub/topic#",
            TopicError::WildcardInTopicName {
                wildcard: '#',
                offset: 9,
            },
        ),
        (
            "pub/topic/#",
            TopicError::WildcardInTopicName {
                wildcard: '#',
                offset: 10,
            },
        ),
        (
            "+/pub/topic",
            TopicError::WildcardInTopicName {
                wildcard: '+',
                offset: 0,
            },
        ),
        ("a\0", TopicError::NullCharacter { offset: 1 }),
    ];

    /// (filter, topic) pairs that match.
    const MATCHING: &[(&str, &str)] = &[
        ("foo/#", "foo/"),
        ("foo/#", "foo"),
        ("foo//bar", "foo//bar"),
        ("foo//+", "foo//bar"),
        ("foo/+/+/baz", "foo///baz"),
        ("foo/bar/+", "foo/bar/"),
        ("foo/bar", "foo/bar"),
        ("foo/+", "foo/bar"),
        ("foo/+/baz", "foo/bar/baz"),
        ("A/B/+/#", "A/B/B/C"),
        ("foo/+/#", "foo/bar/baz"),
        ("foo/+/#", "foo/bar"),
        ("#", "foo/bar/baz"),
        ("#", "/foo/bar"),
        ("/#", "/foo/bar"),
        ("/#", "/"),
        ("#", "/"),
        ("+", ""),
        ("+/+", "/"),
        ("/+", "/"),
        ("+/", "/"),
        ("+", "foo"),
        ("a/b/c", "a/b/c"),
        ("$SYS/#", "$SYS/broker/load"),
        ("$SYS/#", "$SYS"),
        ("$SYS/+", "$SYS/x"),
        ("$x/+/#", "$x/a"),
        ("$", "$"),
        ("a/$x", "a/$x"),
        ("+/$x", "a/$x"),
        ("+/+/#", "a/$x"),
        ("#", "a$"),
    ];

    /// (filter, topic) pairs that do not match.
    const NOT_MATCHING: &[(&str, &str)] = &[
        ("test/6/#", "test/3"),
        ("foo/bar", "foo"),
        ("foo/+", "foo/bar/baz"),
        ("foo/+/baz", "foo/bar/bar"),
        ("foo/+/#", "fo2/bar/baz"),
        ("/#", "foo/bar"),
        ("#", "$SYS/bar"),
        ("$BOB/bar", "$SYS/bar"),
        ("a/b", "a/b/c"),
        ("a/b/c", "a/b"),
        ("a/+", "a"),
        ("a/b/#", "a"),
        ("+", "/"),
        ("+", "a/b"),
        ("a", "a/"),
        ("a/", "a"),
        ("/a", "a"),
        ("#", "$SYS"),
        ("#", "$"),
        ("+", "$SYS"),
        ("+/#", "$SYS/x"),
        ("+/+", "$SYS/x"),
        ("+/monitor/Clients", "$SYS/monitor/Clients"),
        ("A", "a"),
    ];

    #[test]
    fn valid_filters_are_accepted() {
        for filter in VALID_FILTERS {
            assert_eq!(validate_topic_filter(filter), Ok(()), "filter {filter:?}");
        }
    }

    #[test]
    fn invalid_filters_are_rejected_with_their_reason() {
        for (filter, error) in INVALID_FILTERS {
            assert_eq!(
                validate_topic_filter(filter),
                Err(*error),
                "filter {filter:?}"
            );
        }
    }

    #[test]
    fn valid_names_are_accepted() {
        for name in VALID_NAMES {
            assert_eq!(validate_topic_name(name), Ok(()), "name {name:?}");
        }
    }

    #[test]
    fn invalid_names_are_rejected_with_their_reason() {
        for (name, error) in INVALID_NAMES {
            assert_eq!(validate_topic_name(name), Err(*error), "name {name:?}");
        }
    }

    #[test]
    fn length_limit_is_65535_bytes() {
        let longest = "a".repeat(MAX_TOPIC_LEN);
        let too_long = "a".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(validate_topic_name(&longest), Ok(()));
        assert_eq!(validate_topic_filter(&longest), Ok(()));
        let error = TopicError::TooLong {
            len: MAX_TOPIC_LEN + 1,
            max: MAX_TOPIC_LEN,
        };
        assert_eq!(validate_topic_name(&too_long), Err(error));
        assert_eq!(validate_topic_filter(&too_long), Err(error));
        let shared_too_long = format!("$share/g/{}", "a".repeat(MAX_TOPIC_LEN));
        assert_eq!(parse_shared(&shared_too_long), None);
    }

    #[test]
    fn matching_pairs_match() {
        for (filter, topic) in MATCHING {
            assert!(matches(filter, topic), "{filter:?} should match {topic:?}");
        }
    }

    #[test]
    fn non_matching_pairs_do_not_match() {
        for (filter, topic) in NOT_MATCHING {
            assert!(
                !matches(filter, topic),
                "{filter:?} should not match {topic:?}"
            );
        }
    }

    #[test]
    fn table_pairs_use_valid_filters() {
        for (filter, _) in MATCHING.iter().chain(NOT_MATCHING) {
            assert_eq!(validate_topic_filter(filter), Ok(()), "filter {filter:?}");
        }
    }

    #[test]
    fn parse_shared_splits_valid_shared_filters_only() {
        assert_eq!(parse_shared("$share/group/a/b"), Some(("group", "a/b")));
        assert_eq!(parse_shared("$share/g/#"), Some(("g", "#")));
        assert_eq!(parse_shared("$share/g//"), Some(("g", "/")));
        assert_eq!(parse_shared("$share/g/$SYS/+"), Some(("g", "$SYS/+")));
        for not_shared in ["a/b", "$share", "$sharex/g/a", "$SYS/#", "#"] {
            assert_eq!(parse_shared(not_shared), None, "{not_shared:?}");
        }
        for (invalid, _) in INVALID_FILTERS
            .iter()
            .filter(|(f, _)| f.starts_with(SHARED_PREFIX))
        {
            assert_eq!(parse_shared(invalid), None, "{invalid:?}");
        }
    }

    #[test]
    fn errors_display_their_fields() {
        let error = TopicError::MisplacedMultiLevelWildcard { offset: 2 };
        assert_eq!(
            error.to_string(),
            "'#' at byte 2 is not the whole last topic level"
        );
    }
}
