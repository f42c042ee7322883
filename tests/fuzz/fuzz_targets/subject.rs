//! Fuzz target `subject`: the MQTT topic <-> NATS subject mapping (src/cluster/subject.rs) must be
//! total (no panic on any string, as topic, filter or subject) and a bijection: a subject it accepts
//! maps back to itself through its topic, and a topic whose subject fits maps back to itself; the
//! subjects it gives are valid NATS subjects (non-empty tokens, no whitespace, no wildcard in a
//! topic's subject).
//!
//! Like the other targets, the modules are compiled from source (`#[path]`): the mapping and the
//! topic rules it uses are runtime-free leaves.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../../src/topic.rs"]
mod topic;

#[allow(dead_code)]
#[path = "../../../src/cluster/subject.rs"]
mod subject;

use subject::{
    filter_to_subjects, is_overflow_subject, overflow_subject, subject_to_topic, topic_to_subject,
    SubjectError, SubjectPrefix,
};

/// Whether `subject` is a NATS subject: tokens separated by `.`, none empty, no whitespace; and, when
/// `literal`, no wildcard token.
fn valid_subject(subject: &str, literal: bool) -> bool {
    subject.split('.').all(|token| {
        !token.is_empty()
            && !token.chars().any(char::is_whitespace)
            && !(literal && (token == "*" || token == ">"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let prefix = SubjectPrefix::new("shardmq.fuzz.m").expect("a valid prefix");

    // As a subject: what is accepted comes from exactly one topic.
    if let Ok(topic) = subject_to_topic(&prefix, text) {
        assert_eq!(topic_to_subject(&prefix, &topic).as_deref(), Ok(text));
    }

    // As a topic.
    if topic::validate_topic_name(text).is_ok() {
        match topic_to_subject(&prefix, text) {
            Ok(subject) => {
                assert!(valid_subject(&subject, true), "{subject:?}");
                assert_eq!(subject_to_topic(&prefix, &subject).as_deref(), Ok(text));
            }
            Err(SubjectError::TooLong { .. }) => {
                let overflow = overflow_subject(&prefix, text);
                assert!(valid_subject(&overflow, true), "{overflow:?}");
                assert!(is_overflow_subject(&prefix, &overflow));
            }
            Err(e) => panic!("a valid topic refused: {e}"),
        }
    } else {
        assert!(topic_to_subject(&prefix, text).is_err());
    }

    // As a filter: subjects that NATS would take (wildcards allowed).
    if let Ok(subjects) = filter_to_subjects(&prefix, text) {
        assert!(!subjects.is_empty());
        for s in &subjects {
            assert!(valid_subject(s, false), "{s:?}");
        }
    }
});
