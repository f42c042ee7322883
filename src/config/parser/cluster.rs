//! The `cluster_*` keys: read into [`ClusterKeys`] line by line, then made into the node's
//! [`LinkConfig`] (and checked as a whole) when the file is done. Part of the parser (`parser.rs`),
//! which dispatches the keys here; docs/CLUSTER.md has what they do.

use std::path::PathBuf;

use super::{Line, Parser};
use crate::cluster::link::LinkConfig;
use crate::config::{ClusterProblem, ConfigError};

/// The `cluster_*` keys as read.
#[derive(Debug, Default)]
pub(super) struct ClusterKeys {
    name: Option<String>,
    node: Option<String>,
    urls: Vec<String>,
    user: Option<String>,
    password: Option<String>,
    credentials: Option<PathBuf>,
    cafile: Option<PathBuf>,
    replicas: Option<usize>,
    /// Whether any `cluster_*` key was given.
    any: bool,
}

/// Sets a key that may be given once.
fn once<T>(
    line: &Line<'_>,
    key: &'static str,
    slot: &mut Option<T>,
    value: T,
) -> Result<(), ConfigError> {
    if slot.is_some() {
        return Err(line.duplicate(key));
    }
    *slot = Some(value);
    Ok(())
}

impl Parser {
    /// One `cluster_*` line. Returns false when `key` is not one of them.
    pub(super) fn cluster_key(
        &mut self,
        line: &Line<'_>,
        key: &str,
        rest: &str,
    ) -> Result<bool, ConfigError> {
        let k = &mut self.cluster;
        match key {
            "cluster_name" => once(
                line,
                "cluster_name",
                &mut k.name,
                line.one("cluster_name", rest)?.to_owned(),
            )?,
            "cluster_node" => once(
                line,
                "cluster_node",
                &mut k.node,
                line.one("cluster_node", rest)?.to_owned(),
            )?,
            "cluster_nats" => {
                // Comma- or space-separated, and the key may repeat: each URL is one more server to try.
                let text = line.text("cluster_nats", rest)?;
                k.urls.extend(
                    text.split([',', ' ', '\t'])
                        .filter(|u| !u.is_empty())
                        .map(str::to_owned),
                );
            }
            "cluster_nats_user" => once(
                line,
                "cluster_nats_user",
                &mut k.user,
                line.one("cluster_nats_user", rest)?.to_owned(),
            )?,
            "cluster_nats_password" => once(
                line,
                "cluster_nats_password",
                &mut k.password,
                line.text("cluster_nats_password", rest)?.to_owned(),
            )?,
            "cluster_nats_credentials" => once(
                line,
                "cluster_nats_credentials",
                &mut k.credentials,
                PathBuf::from(line.text("cluster_nats_credentials", rest)?),
            )?,
            "cluster_nats_cafile" => once(
                line,
                "cluster_nats_cafile",
                &mut k.cafile,
                PathBuf::from(line.text("cluster_nats_cafile", rest)?),
            )?,
            // JetStream keeps at most 5 replicas of a stream.
            "cluster_replicas" => once(
                line,
                "cluster_replicas",
                &mut k.replicas,
                line.int_in("cluster_replicas", rest, 1, 5)? as usize,
            )?,
            _ => return Ok(false),
        }
        k.any = true;
        Ok(true)
    }

    /// The node's cluster configuration, once every line is read: `None` without any `cluster_*` key;
    /// otherwise all three of `cluster_nats`, `cluster_name` and `cluster_node`, valid names, and a user
    /// only with a password.
    pub(super) fn finish_cluster(&mut self) -> Result<Option<LinkConfig>, ConfigError> {
        let keys = std::mem::take(&mut self.cluster);
        if !keys.any {
            return Ok(None);
        }
        let problem = |problem| ConfigError::Cluster {
            file: self.main_file.clone(),
            problem,
        };
        if keys.urls.is_empty() {
            return Err(problem(ClusterProblem::Missing("cluster_nats")));
        }
        let name = keys
            .name
            .ok_or_else(|| problem(ClusterProblem::Missing("cluster_name")))?;
        let node = keys
            .node
            .ok_or_else(|| problem(ClusterProblem::Missing("cluster_node")))?;
        let user = match (keys.user, keys.password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => return Err(problem(ClusterProblem::UserWithoutPassword)),
        };
        let config = LinkConfig {
            cluster: name,
            node,
            urls: keys.urls,
            user,
            credentials: keys.credentials,
            cafile: keys.cafile,
            replicas: keys.replicas.unwrap_or(crate::cluster::store::REPLICAS),
        };
        config
            .check()
            .map_err(|e| problem(ClusterProblem::Link(e)))?;
        if let Some(n) = self
            .config
            .shards
            .filter(|n| n.get() >= crate::index::MAX_SHARDS)
        {
            return Err(problem(ClusterProblem::TooManyShards(n.get())));
        }
        Ok(Some(config))
    }
}
