//! What `password_file` and `acl_file` cost per CONNECT and per delivered message.
//!
//! - `password/pbkdf2-101`, `password/sha512`: one CONNECT's password check against an entry written
//!   by `mosquitto_passwd` (PBKDF2-SHA512 with its default 101 iterations; `-H sha512`). It runs on the
//!   shard that accepted the connection.
//! - `acl/allowed-*`, `acl/denied`: one [`ClientAcl::allows`] for a delivery, with a user section of 10
//!   rules plus 2 patterns (expanded per client at CONNECT), as each subscriber's read check costs.
//!
//! Run: `cargo bench --bench auth`; add `-- --quick` for a short run.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use shardmq::auth::acl::{Access, AclFile};
use shardmq::auth::password::PasswordFile;

/// `mosquitto_passwd -c -b FILE alice secret` and `mosquitto_passwd -H sha512 -b FILE carol hunter2`
/// (mosquitto 2.0.11).
const PASSWORDS: &str = "\
alice:$7$101$6Fy9rgrB1Q7zblxB$JrzNwggJB9R7hungMBl6brFD7IaxUJNojsPhrw2bWOtDL2webI/iwT6yRz1/xfgs4Ep+8/Qzq5oG6eVeqZgnAA==
carol:$6$M5j26XeULRClwY32$hjhlptCdB6XYtJ7uNdc1pcidJuPXHw2SXVRu4ff5kLrrHrpWHNtOYpWcsaD7w8YTQ6yR34XG7qa7KcdwVWAWJg==
";

const ACL: &str = "\
user app
topic deny site/secret/#
topic read site/1/#
topic read site/2/#
topic read site/3/#
topic read site/4/#
topic write cmd/#
topic read status/+/online
topic read fleet/+/gps
topic readwrite app/#
topic read $SYS/broker/uptime
pattern readwrite devices/%c/#
pattern read users/%u/inbox
";

fn bench(c: &mut Criterion) {
    let (passwords, warnings) = PasswordFile::parse(PASSWORDS);
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut g = c.benchmark_group("password");
    g.bench_function("pbkdf2-101", |b| {
        b.iter(|| assert!(passwords.check(black_box("alice"), Some(black_box(b"secret")))))
    });
    g.bench_function("sha512", |b| {
        b.iter(|| assert!(passwords.check(black_box("carol"), Some(black_box(b"hunter2")))))
    });
    g.finish();

    let acl = AclFile::parse(ACL).expect("valid ACL");
    let client = acl.for_client("dev-42", Some("app"));
    let mut g = c.benchmark_group("acl");
    // First rule that grants (after the deny), last one, a pattern, and a topic nothing grants.
    for (name, topic, allowed) in [
        ("allowed-first", "site/1/dev/7/temp", true),
        ("allowed-late", "fleet/truck9/gps", true),
        ("allowed-pattern", "devices/dev-42/state", true),
        ("denied", "other/topic/here", false),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| assert_eq!(client.allows(black_box(topic), Access::READ), allowed))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
