//! The scenarios and the clients each one runs: [`Scenario`] (the first argument) and [`Plan`], its
//! publisher, subscriber and idle client counts, rate and fan-out from the arguments, with the topic each
//! publisher publishes to and the filter each subscriber subscribes to.

use clap::ValueEnum;

use crate::args::Args;
use crate::retained;
use crate::roles::PAYLOAD_HEADER;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// N pairs: publisher i → lg/p2p/i → subscriber i (--pairs, default 10).
    P2p,
    /// P publishers on lg/fanin/i (--pubs, default 10) → S subscribers on lg/fanin/# (--subs, default 1).
    #[value(alias = "fan-in")]
    Fanin,
    /// 1 publisher (--pubs) → lg/fanout → S subscribers (--subs, default 10).
    #[value(alias = "fan-out")]
    Fanout,
    /// P publishers on lg/shared/i (default 10) → one $share/lg/lg/shared/# group of S members (default 4):
    /// each message reaches one member.
    Shared,
    /// C idle connections (--connections, default 1000) held with keep-alive while one probe pair
    /// measures publish→receive round trips (default 100 msg/s).
    Conn,
    /// Subscribe storms: S subscribers (default 10) each repeat SUBSCRIBE lg/retained/# → receive the
    /// --topics retained messages (default 1000) → UNSUBSCRIBE; latency = SUBSCRIBE to last message.
    Retained,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::P2p => "p2p",
            Scenario::Fanin => "fanin",
            Scenario::Fanout => "fanout",
            Scenario::Shared => "shared",
            Scenario::Conn => "conn",
            Scenario::Retained => "retained",
        }
    }
}

/// The clients of a run.
#[derive(Debug)]
pub(crate) struct Plan {
    pub publishers: usize,
    pub subscribers: usize,
    pub idle: usize,
    /// Messages per second per publisher (0 = max).
    pub rate: u64,
    /// Deliveries each published message should produce.
    pub fanout: u64,
}

impl Plan {
    pub(crate) fn from_args(a: &Args) -> Result<Plan, String> {
        if a.size < PAYLOAD_HEADER {
            return Err(format!(
                "--size must be at least {PAYLOAD_HEADER} (publisher id, sequence, timestamp)"
            ));
        }
        if a.size > 200 * 1024 * 1024 {
            return Err("--size is too large".into());
        }
        if a.duration.is_zero() {
            return Err("--duration must be positive".into());
        }
        if a.connect_concurrency == 0 {
            return Err("--connect-concurrency must be positive".into());
        }
        if a.threads == Some(0) {
            return Err("--threads must be positive".into());
        }
        let only = |flag: &str, given: bool| -> Result<(), String> {
            if given {
                Err(format!("{flag} does not apply to {}", a.scenario.name()))
            } else {
                Ok(())
            }
        };
        let (publishers, subscribers) = match a.scenario {
            Scenario::P2p => {
                only(
                    "--pubs/--subs (use --pairs)",
                    a.pubs.is_some() || a.subs.is_some(),
                )?;
                let n = a.pairs.unwrap_or(10);
                (n, n)
            }
            Scenario::Fanin => {
                only("--pairs", a.pairs.is_some())?;
                (a.pubs.unwrap_or(10), a.subs.unwrap_or(1))
            }
            Scenario::Fanout => {
                only("--pairs", a.pairs.is_some())?;
                (a.pubs.unwrap_or(1), a.subs.unwrap_or(10))
            }
            Scenario::Shared => {
                only("--pairs", a.pairs.is_some())?;
                (a.pubs.unwrap_or(10), a.subs.unwrap_or(4))
            }
            Scenario::Conn => {
                only(
                    "--pubs/--subs/--pairs",
                    a.pubs.is_some() || a.subs.is_some() || a.pairs.is_some(),
                )?;
                (1, 1)
            }
            Scenario::Retained => {
                only("--pubs/--pairs", a.pubs.is_some() || a.pairs.is_some())?;
                (0, a.subs.unwrap_or(10))
            }
        };
        if (publishers == 0 && a.scenario != Scenario::Retained) || subscribers == 0 {
            return Err("need at least one publisher and one subscriber".into());
        }
        if publishers > u32::MAX as usize {
            return Err("too many publishers".into());
        }
        let fanout = match a.scenario {
            Scenario::P2p | Scenario::Shared | Scenario::Conn | Scenario::Retained => 1,
            Scenario::Fanin | Scenario::Fanout => subscribers as u64,
        };
        let idle = a.connections.unwrap_or(match a.scenario {
            Scenario::Conn => 1000,
            _ => 0,
        });
        let rate = a.rate.unwrap_or(match a.scenario {
            Scenario::Conn => 100,
            _ => 0,
        });
        Ok(Plan {
            publishers,
            subscribers,
            idle,
            rate,
            fanout,
        })
    }

    pub(crate) fn topic(scenario: Scenario, publisher: usize) -> String {
        match scenario {
            Scenario::P2p => format!("lg/p2p/{publisher}"),
            Scenario::Fanin => format!("lg/fanin/{publisher}"),
            Scenario::Fanout => "lg/fanout".into(),
            Scenario::Shared => format!("lg/shared/{publisher}"),
            Scenario::Conn => "lg/conn/probe".into(),
            Scenario::Retained => retained::topic(publisher),
        }
    }

    pub(crate) fn filter(scenario: Scenario, subscriber: usize) -> String {
        match scenario {
            Scenario::P2p => format!("lg/p2p/{subscriber}"),
            Scenario::Fanin => "lg/fanin/#".into(),
            Scenario::Fanout => "lg/fanout".into(),
            Scenario::Shared => "$share/lg/lg/shared/#".into(),
            Scenario::Conn => "lg/conn/probe".into(),
            Scenario::Retained => retained::FILTER.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn plans() {
        let args = |extra: &[&str]| {
            let mut v = vec!["shardmq-loadgen"];
            v.extend_from_slice(extra);
            Args::try_parse_from(v).unwrap()
        };
        let p = Plan::from_args(&args(&["p2p", "--pairs", "10"])).unwrap();
        assert_eq!(
            (p.publishers, p.subscribers, p.fanout, p.idle),
            (10, 10, 1, 0)
        );
        let p = Plan::from_args(&args(&["fanin", "--pubs", "5"])).unwrap();
        assert_eq!((p.publishers, p.subscribers, p.fanout), (5, 1, 1));
        let p = Plan::from_args(&args(&["fan-out", "--subs", "100"])).unwrap();
        assert_eq!((p.publishers, p.subscribers, p.fanout), (1, 100, 100));
        let p = Plan::from_args(&args(&["shared"])).unwrap();
        assert_eq!((p.publishers, p.subscribers, p.fanout), (10, 4, 1));
        let p = Plan::from_args(&args(&["conn", "--connections", "10000"])).unwrap();
        assert_eq!(
            (p.publishers, p.subscribers, p.idle, p.rate),
            (1, 1, 10000, 100)
        );
        let p = Plan::from_args(&args(&["conn", "--rate", "0"])).unwrap();
        assert_eq!((p.idle, p.rate), (1000, 0));
        assert!(Plan::from_args(&args(&["p2p", "--pubs", "2"])).is_err());
        assert!(Plan::from_args(&args(&["fanin", "--pairs", "2"])).is_err());
        assert!(Plan::from_args(&args(&["p2p", "--size", "8"])).is_err());
        assert!(Args::try_parse_from(["shardmq-loadgen"]).is_err());
        assert_eq!(Plan::filter(Scenario::Fanin, 3), "lg/fanin/#");
        assert_eq!(Plan::filter(Scenario::Shared, 3), "$share/lg/lg/shared/#");
        assert_eq!(Plan::topic(Scenario::P2p, 3), "lg/p2p/3");
        let a = args(&["p2p", "--host", "a,b", "--port", "1883", "--port", "1884"]);
        assert_eq!((a.host.len(), a.port), (2, vec![1883, 1884]));
    }
}
