//! The config snippet `sweep --write` leaves behind: comments saying where the figures came from, then
//! only `shards`, `cpu_affinity` and (pinned) `cpu_set`. No `listener` or `allow_anonymous`: the snippet
//! is meant to be dropped into an existing config's `include_dir`, and on its own (`shardmq -c FILE`) it
//! starts the broker in Mosquitto's local only mode on 127.0.0.1:1883 (`-p PORT` moves it).

use std::fmt::Write as _;

use crate::broker::placement_lines;

/// What the snippet's comments report.
#[derive(Debug, Clone, PartialEq)]
pub struct SnippetInfo {
    /// When the sweep ran, e.g. `2025-12-01 22:40 UTC`.
    pub date: String,
    /// The host summary line.
    pub host: String,
    /// How the sweep ran: quick or full, run lengths, number of candidates.
    pub sweep: String,
    /// The winner's placement name and score.
    pub winner: String,
    /// The winner's figures, one `name: value` per line.
    pub figures: Vec<String>,
    /// `shards N`.
    pub shards: usize,
    /// `cpu_set`, when pinned.
    pub cpu_set: Option<Vec<usize>>,
}

/// The snippet text.
pub fn render(info: &SnippetInfo) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Written by shardmq-tune sweep on {}.", info.date);
    let _ = writeln!(s, "# Host: {}", info.host);
    let _ = writeln!(s, "# Sweep: {}", info.sweep);
    let _ = writeln!(s, "# Winner: {}", info.winner);
    for f in &info.figures {
        let _ = writeln!(s, "#   {f}");
    }
    s.push_str(
        "# Include this file from a config that defines listeners (include_dir; the file name must end\n\
         # in .conf), or run `shardmq -c THIS_FILE`: without a listener the broker listens on\n\
         # 127.0.0.1:1883 only (Mosquitto's local only mode; -p PORT changes the port).\n",
    );
    s.push_str(&placement_lines(info.shards, info.cpu_set.as_deref()));
    s
}

/// The date line for [`SnippetInfo::date`]: UTC, so that it means the same on every host.
pub fn now_utc() -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "unknown date".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(cpu_set: Option<Vec<usize>>) -> SnippetInfo {
        SnippetInfo {
            date: "2025-12-01 22:40 UTC".into(),
            host: "vm: 2 CPUs (2 cores, no SMT), 1 NUMA node, Linux 6.8.0".into(),
            sweep: "quick, 1s warmup + 2s per run, 4 candidates".into(),
            winner: "all/cores, score 1.000".into(),
            figures: vec!["p2p-q1: 500000 msg/s, p99 900 µs".into()],
            shards: 2,
            cpu_set,
        }
    }

    /// The lines the broker reads, comments and blank lines left out.
    fn settings(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect()
    }

    #[test]
    fn pinned_snippet() {
        let text = render(&info(Some(vec![0, 1])));
        assert!(text.starts_with("# Written by shardmq-tune sweep on 2025-12-01 22:40 UTC.\n"));
        assert!(text.contains("# Host: vm: 2 CPUs"));
        assert!(text.contains("#   p2p-q1: 500000 msg/s"));
        assert_eq!(
            settings(&text),
            ["shards 2", "cpu_affinity true", "cpu_set 0-1"]
        );
    }

    #[test]
    fn unpinned_snippet_has_no_cpu_set() {
        let text = render(&info(None));
        assert_eq!(settings(&text), ["shards 2", "cpu_affinity false"]);
    }

    #[test]
    fn no_listener_or_authentication_lines() {
        for text in [render(&info(None)), render(&info(Some(vec![3, 1])))] {
            for line in settings(&text) {
                let key = line.split_whitespace().next().unwrap();
                assert!(
                    ["shards", "cpu_affinity", "cpu_set"].contains(&key),
                    "unexpected setting {line:?}"
                );
            }
        }
    }

    #[test]
    fn dates_look_like_dates() {
        let d = now_utc();
        assert!(d.ends_with(" UTC") && d.len() == 20, "{d}");
    }
}
