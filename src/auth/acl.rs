//! Mosquitto's `acl_file`: who may publish (write) and receive (read) on which topics.
//!
//! The file format and the decisions are Mosquitto 2.0's (`aclfile__parse` and
//! `mosquitto_acl_check_default` in its `src/security_default.c`), so an existing file means the same
//! thing here:
//!
//! - `user NAME` starts the rules of one user; `topic [read|write|readwrite|deny] FILTER` lines before any
//!   `user` line are for clients without a username. `pattern [ACCESS] FILTER` lines are for every
//!   client, with `%c` replaced by its client id and `%u` by its username.
//! - A client's own rules are looked at first, then the patterns. Within each, a matching `deny` refuses at
//!   once, whatever the order of the lines; otherwise a matching rule that grants the access allows it.
//!   Nothing matching means refused, so a client with no rules at all may do nothing.
//! - With patterns in use, a client whose username or client id contains `+` or `#` gets no access from
//!   them (such an id could otherwise widen a `%c` filter to other clients' topics).
//! - Subscribing is never refused by the ACL file (Mosquitto 2.0 does not check SUBSCRIBE against it):
//!   the read rules apply to each message as it is delivered, retained ones included.
//!
//! The broker builds one [`ClientAcl`] per session at CONNECT, with the patterns already expanded for that
//! client, so a check per delivered message is a walk over a few filters with no allocation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ahash::AHashMap;

use crate::topic;

/// Read, write, both, or an explicit `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access(u8);

impl Access {
    pub const DENY: Access = Access(0);
    pub const READ: Access = Access(1);
    pub const WRITE: Access = Access(2);
    pub const READWRITE: Access = Access(3);

    fn grants(self, wanted: Access) -> bool {
        self.0 & wanted.0 != 0
    }
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub access: Access,
    pub filter: String,
}

/// Why an ACL file was refused. Mosquitto refuses to start on any of these, and so does shardmq.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("unable to open acl_file \"{}\": {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// One of the errors below, in the file at `path`.
    #[error("in acl_file \"{}\", {source}", path.display())]
    InFile {
        path: PathBuf,
        source: Box<AclError>,
    },
    #[error("line {line}: empty topic")]
    EmptyTopic { line: usize },
    #[error(
        "line {line}: invalid topic access type \"{access}\" (read, write, readwrite or deny)"
    )]
    InvalidAccess { line: usize, access: String },
    #[error("line {line}: invalid ACL topic \"{filter}\"")]
    InvalidTopic { line: usize, filter: String },
    #[error("line {line}: missing username")]
    MissingUsername { line: usize },
    #[error("line {line}: invalid line \"{text}\" (expected topic, pattern or user)")]
    InvalidLine { line: usize, text: String },
}

/// A parsed ACL file, shared read-only by every shard.
#[derive(Debug, Default)]
pub struct AclFile {
    /// Rules of clients without a username (lines before the first `user`).
    anonymous: Option<Arc<[Rule]>>,
    users: AHashMap<String, Arc<[Rule]>>,
    /// Pattern rules, `deny` first, then the others in file order.
    patterns: Vec<Pattern>,
    /// Patterns that use neither `%c` nor `%u` (Mosquitto warns about them too), for the caller to log.
    pub warnings: Vec<String>,
}

#[derive(Debug)]
struct Pattern {
    rule: Rule,
    uses_username: bool,
}

/// Rules being collected for one user (or the anonymous one): denies first, as Mosquitto keeps them.
#[derive(Default)]
struct RuleList {
    deny: Vec<Rule>,
    allow: Vec<Rule>,
}

impl RuleList {
    fn push(&mut self, rule: Rule) {
        if rule.access == Access::DENY {
            self.deny.push(rule);
        } else {
            self.allow.push(rule);
        }
    }
    fn finish(self) -> Arc<[Rule]> {
        self.deny.into_iter().chain(self.allow).collect()
    }
}

impl AclFile {
    pub fn load(path: &Path) -> Result<AclFile, AclError> {
        let text = std::fs::read_to_string(path).map_err(|source| AclError::Open {
            path: path.to_owned(),
            source,
        })?;
        AclFile::parse(&text).map_err(|e| AclError::InFile {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// Parse the text of an ACL file, line by line as Mosquitto does: trailing white space is dropped, a
    /// line starting with `#` is a comment, words are separated by spaces.
    pub fn parse(text: &str) -> Result<AclFile, AclError> {
        let mut anonymous: Option<RuleList> = None;
        let mut users: Vec<(String, RuleList)> = Vec::new();
        let mut pattern_deny = Vec::new();
        let mut pattern_allow = Vec::new();
        let mut warnings = Vec::new();
        let mut user: Option<usize> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let text = raw.trim_end();
            if text.starts_with('#') {
                continue;
            }
            let rest = text.trim_start_matches(' ');
            if rest.is_empty() {
                continue;
            }
            let (keyword, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            match keyword {
                "topic" | "pattern" => {
                    let rest = rest.trim_start_matches(' ');
                    let (first, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                    if first.is_empty() {
                        return Err(AclError::EmptyTopic { line });
                    }
                    let tail = trim_blanks(tail);
                    // `topic FILTER` (no access word) grants read and write; the filter is the rest of the
                    // line, spaces included.
                    let (access, filter) = if tail.is_empty() {
                        (Access::READWRITE, first)
                    } else {
                        let access = match first {
                            "read" => Access::READ,
                            "write" => Access::WRITE,
                            "readwrite" => Access::READWRITE,
                            "deny" => Access::DENY,
                            other => {
                                return Err(AclError::InvalidAccess {
                                    line,
                                    access: other.to_owned(),
                                })
                            }
                        };
                        (access, tail)
                    };
                    if topic::validate_topic_filter(filter).is_err() {
                        return Err(AclError::InvalidTopic {
                            line,
                            filter: filter.to_owned(),
                        });
                    }
                    let rule = Rule {
                        access,
                        filter: filter.to_owned(),
                    };
                    if keyword == "topic" {
                        let list = match user {
                            Some(i) => &mut users[i].1,
                            None => anonymous.get_or_insert_with(RuleList::default),
                        };
                        list.push(rule);
                    } else {
                        let uses_client_id = filter.contains("%c");
                        let uses_username = filter.contains("%u");
                        if !uses_client_id && !uses_username {
                            warnings.push(format!(
                                "ACL pattern '{filter}' does not contain '%c' or '%u'."
                            ));
                        }
                        let pattern = Pattern {
                            rule,
                            uses_username,
                        };
                        if access == Access::DENY {
                            pattern_deny.push(pattern);
                        } else {
                            pattern_allow.push(pattern);
                        }
                    }
                }
                "user" => {
                    let name = trim_blanks(rest);
                    if name.is_empty() {
                        return Err(AclError::MissingUsername { line });
                    }
                    // A user named twice keeps one list, as in Mosquitto.
                    user = Some(match users.iter().position(|(n, _)| n == name) {
                        Some(i) => i,
                        None => {
                            users.push((name.to_owned(), RuleList::default()));
                            users.len() - 1
                        }
                    });
                }
                _ => {
                    return Err(AclError::InvalidLine {
                        line,
                        text: text.to_owned(),
                    })
                }
            }
        }
        Ok(AclFile {
            anonymous: anonymous.map(RuleList::finish),
            users: users
                .into_iter()
                .map(|(name, list)| (name, list.finish()))
                .collect(),
            patterns: pattern_deny.into_iter().chain(pattern_allow).collect(),
            warnings,
        })
    }

    /// The rules that apply to one client, patterns expanded for it.
    pub fn for_client(&self, client_id: &str, username: Option<&str>) -> ClientAcl {
        let own = match username {
            Some(name) => self.users.get(name).cloned(),
            None => self.anonymous.clone(),
        };
        let dangerous = |s: &str| s.contains(['+', '#']);
        let refused_by_patterns =
            !self.patterns.is_empty() && (dangerous(client_id) || username.is_some_and(dangerous));
        let patterns = if refused_by_patterns {
            Box::default()
        } else {
            self.patterns
                .iter()
                // A `%u` pattern says nothing about a client without a username.
                .filter(|p| !p.uses_username || username.is_some())
                .map(|p| Rule {
                    access: p.rule.access,
                    filter: expand(&p.rule.filter, client_id, username),
                })
                .collect()
        };
        ClientAcl {
            own,
            patterns,
            refused_by_patterns,
        }
    }
}

/// Replace `%c` and `%u` in one left-to-right pass, as Mosquitto does (a `%c` inside a substituted
/// username is not expanded again).
fn expand(filter: &str, client_id: &str, username: Option<&str>) -> String {
    let mut out = String::with_capacity(filter.len() + client_id.len());
    let mut rest = filter;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match (after.as_bytes().first(), username) {
            (Some(b'c'), _) => out.push_str(client_id),
            (Some(b'u'), Some(u)) => out.push_str(u),
            _ => {
                out.push('%');
                rest = after;
                continue;
            }
        }
        rest = &after[1..];
    }
    out.push_str(rest);
    out
}

/// Mosquitto's `misc__trimblanks`: spaces and tabs off both ends.
fn trim_blanks(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// The rules for one client: its user's (or the anonymous) rules, then the patterns expanded for it.
#[derive(Debug, Clone)]
pub struct ClientAcl {
    own: Option<Arc<[Rule]>>,
    patterns: Box<[Rule]>,
    /// Its id or username contains `+` or `#` while patterns are in use: patterns grant it nothing.
    refused_by_patterns: bool,
}

impl ClientAcl {
    /// Whether this client may `access` (read or write) `topic`.
    pub fn allows(&self, topic: &str, access: Access) -> bool {
        let own = self.own.as_deref().unwrap_or(&[]);
        if let Some(allowed) = decide(own, topic, access) {
            return allowed;
        }
        if self.refused_by_patterns {
            return false;
        }
        decide(&self.patterns, topic, access).unwrap_or(false)
    }
}

impl ClientAcl {
    /// `refuse_unreadable_subscriptions`: whether some topic `filter` matches may be read by this
    /// client. A filter without wildcards is a topic, checked as one; with wildcards, it may be read
    /// unless a deny rule covers all of it, if a rule granting read shares a topic with it.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        if !filter.contains(['+', '#']) {
            return self.allows(filter, Access::READ);
        }
        let own = self.own.as_deref().unwrap_or(&[]);
        if let Some(allowed) = decide_filter(own, filter) {
            return allowed;
        }
        !self.refused_by_patterns && decide_filter(&self.patterns, filter).unwrap_or(false)
    }
}

/// [`decide`] for a wildcard filter: a deny rule covering it refuses, a read rule sharing a topic
/// with it grants.
fn decide_filter(rules: &[Rule], filter: &str) -> Option<bool> {
    if rules
        .iter()
        .any(|r| r.access == Access::DENY && covers(&r.filter, filter))
    {
        return Some(false);
    }
    rules
        .iter()
        .any(|r| r.access.grants(Access::READ) && intersects(&r.filter, filter))
        .then_some(true)
}

/// Whether some topic matches both filters.
fn intersects(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('/'), b.split('/'));
    loop {
        match (a.next(), b.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(x), Some(y)) if x == y || x == "+" || y == "+" => {}
            _ => return false,
        }
    }
}

/// Whether every topic `specific` matches also matches `general`.
fn covers(general: &str, specific: &str) -> bool {
    let (mut g, mut s) = (general.split('/'), specific.split('/'));
    loop {
        match (g.next(), s.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(y)) if y != "#" => {}
            (Some(x), Some(y)) if x == y && y != "+" && y != "#" => {}
            _ => return false,
        }
    }
}

/// First decision of a rule list (denies come first): Some(false) for a matching deny, Some(true) for a
/// matching grant, None when no rule decides.
fn decide(rules: &[Rule], topic: &str, access: Access) -> Option<bool> {
    for rule in rules {
        if topic::matches(&rule.filter, topic) {
            if rule.access == Access::DENY {
                return Some(false);
            }
            if rule.access.grants(access) {
                return Some(true);
            }
        }
    }
    None
}

/// Topics no client may publish to, with or without an ACL file (Mosquitto's `acl__check_dollar`):
/// `$SYS` belongs to the broker, except the bridge state topics a remote Mosquitto's bridge publishes to
/// the broker it connects to, and `$share/...` is only a subscription prefix.
pub fn reserved_for_write(topic: &str) -> bool {
    if topic.starts_with("$SYS") {
        return !topic::matches("$SYS/broker/connection/+/state", topic);
    }
    topic.starts_with("$share")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(text: &str) -> AclFile {
        AclFile::parse(text).expect("valid acl file")
    }

    const R: Access = Access::READ;
    const W: Access = Access::WRITE;

    #[test]
    fn a_subscription_may_be_made_where_some_topic_it_matches_is_readable() {
        let a = acl("topic read test/#
topic deny test/nosubscribe
topic deny test/secret/#
                     topic write up/#
pattern read dev/%c/#
");
        let c = a.for_client("c7", None);
        assert!(c.may_subscribe("test/a"));
        assert!(!c.may_subscribe("test/nosubscribe"), "denied topic");
        assert!(c.may_subscribe("test/+"), "some test/x is readable");
        assert!(c.may_subscribe("#"), "shares test/... with the read rule");
        assert!(!c.may_subscribe("test/secret/+"), "covered by a deny");
        assert!(!c.may_subscribe("test/secret/#"));
        assert!(!c.may_subscribe("up/+"), "write only");
        assert!(!c.may_subscribe("other/#"));
        assert!(
            c.may_subscribe("dev/c7/+"),
            "pattern expanded for the client"
        );
        assert!(c.may_subscribe("dev/+/x"));
        assert!(intersects("a/#", "a") && intersects("+/b", "a/+") && !intersects("a/b", "a/c"));
        assert!(covers("a/#", "a/+/c") && covers("+/b", "x/b") && !covers("a/+", "a/#"));
        assert!(!covers("a/b", "a/+") && covers("#", "#"));
    }

    #[test]
    fn anonymous_rules_are_the_lines_before_the_first_user() {
        let a = acl("topic read public/#\nuser alice\ntopic alice/#\n");
        let anon = a.for_client("c1", None);
        assert!(anon.allows("public/x", R));
        assert!(!anon.allows("public/x", W));
        assert!(!anon.allows("alice/x", R));
        let alice = a.for_client("c2", Some("alice"));
        assert!(alice.allows("alice/x", R) && alice.allows("alice/x", W));
        assert!(
            !alice.allows("public/x", R),
            "anonymous rules are not alice's"
        );
    }

    #[test]
    fn no_access_word_means_readwrite_and_the_filter_is_the_rest_of_the_line() {
        let a = acl("topic a/b\ntopic write with space/x\ntopic read\n");
        let c = a.for_client("c", None);
        assert!(c.allows("a/b", R) && c.allows("a/b", W));
        assert!(c.allows("with space/x", W) && !c.allows("with space/x", R));
        // Mosquitto reads `topic read` as readwrite on the topic "read".
        assert!(c.allows("read", R) && c.allows("read", W));
    }

    #[test]
    fn deny_wins_over_an_earlier_grant() {
        let a = acl("user u\ntopic readwrite a/#\ntopic deny a/secret\n");
        let c = a.for_client("c", Some("u"));
        assert!(c.allows("a/open", R));
        assert!(!c.allows("a/secret", R));
        assert!(!c.allows("a/secret", W));
    }

    #[test]
    fn a_grant_of_the_other_access_does_not_stop_the_search() {
        let a = acl("user u\ntopic read a/#\ntopic write a/b\n");
        let c = a.for_client("c", Some("u"));
        assert!(
            c.allows("a/b", W),
            "the read rule matches first but grants no write"
        );
        assert!(!c.allows("a/c", W));
    }

    #[test]
    fn user_rules_decide_before_patterns() {
        let a = acl("pattern deny %u/#\nuser u\ntopic u/x\n");
        let c = a.for_client("c", Some("u"));
        assert!(
            c.allows("u/x", W),
            "the user's grant is found before the pattern deny"
        );
        assert!(!c.allows("u/y", W), "then the pattern deny refuses");
    }

    #[test]
    fn patterns_expand_client_id_and_username() {
        let a = acl("pattern write devices/%c/out\npattern read users/%u/#\n");
        let c = a.for_client("dev1", Some("bob"));
        assert!(c.allows("devices/dev1/out", W));
        assert!(!c.allows("devices/dev2/out", W));
        assert!(c.allows("users/bob/inbox", R));
        assert!(!c.allows("users/eve/inbox", R));
        // No username: the %u pattern is skipped, the %c one still applies.
        let anon = a.for_client("dev1", None);
        assert!(anon.allows("devices/dev1/out", W));
        assert!(!anon.allows("users//inbox", R));
    }

    #[test]
    fn a_wildcard_in_client_id_or_username_gets_nothing_from_patterns() {
        let a = acl("pattern readwrite devices/%c/#\nuser u\ntopic own/#\n");
        assert!(!a.for_client("a/+", None).allows("devices/a/x/y", W));
        assert!(!a.for_client("#", None).allows("devices/x", R));
        let c = a.for_client("c", Some("u#"));
        assert!(!c.allows("devices/c/x", W));
        // Its own user rules (if it has any) still apply.
        let u = a.for_client("a+", Some("u"));
        assert!(u.allows("own/x", W));
        assert!(!u.allows("devices/a+/x", W));
    }

    #[test]
    fn a_client_with_no_rules_may_do_nothing() {
        let a = acl("user alice\ntopic #\n");
        assert!(!a.for_client("c", None).allows("x", R));
        assert!(!a.for_client("c", Some("bob")).allows("x", W));
        assert!(a.for_client("c", Some("alice")).allows("x", W));
        let empty = acl("# nothing\n\n");
        assert!(!empty.for_client("c", None).allows("x", R));
    }

    #[test]
    fn dollar_topics_need_a_dollar_rule() {
        let a = acl("topic read #\ntopic read $SYS/#\n");
        let c = a.for_client("c", None);
        assert!(c.allows("a/b", R));
        assert!(c.allows("$SYS/broker/uptime", R));
        let b = acl("topic read #\n");
        assert!(!b.for_client("c", None).allows("$SYS/broker/uptime", R));
    }

    #[test]
    fn a_user_named_twice_keeps_both_sections() {
        let a = acl("user u\ntopic a\nuser v\ntopic b\nuser u\ntopic c\n");
        let u = a.for_client("x", Some("u"));
        assert!(u.allows("a", R) && u.allows("c", R) && !u.allows("b", R));
    }

    #[test]
    fn comments_blank_lines_and_spacing_as_mosquitto_reads_them() {
        let a = acl("# comment\n\n   \r\nuser   alice  \r\n  topic   read   a/#  \r\n");
        assert!(a.for_client("c", Some("alice")).allows("a/x", R));
    }

    #[test]
    fn bad_lines_are_errors_with_their_line_number() {
        let err = |t: &str| AclFile::parse(t).unwrap_err().to_string();
        assert_eq!(
            err("topic read a\ntopic rw b\n"),
            "line 2: invalid topic access type \"rw\" (read, write, readwrite or deny)"
        );
        assert_eq!(err("topic a/#/b\n"), "line 1: invalid ACL topic \"a/#/b\"");
        assert_eq!(err("user\n"), "line 1: missing username");
        assert_eq!(err("topic\n"), "line 1: empty topic");
        assert_eq!(
            err("\ttopic a\n"),
            "line 1: invalid line \"\ttopic a\" (expected topic, pattern or user)"
        );
        assert_eq!(
            err("users alice\n"),
            "line 1: invalid line \"users alice\" (expected topic, pattern or user)"
        );
    }

    #[test]
    fn a_pattern_without_substitution_is_kept_with_a_warning() {
        let a = acl("pattern read fixed/#\n");
        assert_eq!(a.warnings.len(), 1);
        assert!(a.for_client("c", None).allows("fixed/x", R));
    }

    #[test]
    fn expansion_is_one_pass() {
        assert_eq!(expand("a/%c/%u/%x/%", "id", Some("%c")), "a/id/%c/%x/%");
        assert_eq!(expand("%u", "id", None), "%u");
    }

    #[test]
    fn reserved_topics() {
        assert!(reserved_for_write("$SYS/broker/uptime"));
        assert!(reserved_for_write("$SYS"));
        assert!(!reserved_for_write("$SYS/broker/connection/bridge1/state"));
        assert!(reserved_for_write("$share/g/t"));
        assert!(!reserved_for_write("$other/x"));
        assert!(!reserved_for_write("a/$SYS"));
    }
}
