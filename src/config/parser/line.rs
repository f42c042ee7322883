//! One line of a configuration file: where it came from, for errors and notices, and the readers
//! that take its value apart with Mosquitto's rules (one word, the rest of the line, a boolean, an
//! integer in a range, a limit where negative means none), plus `persistent_client_expiration`'s
//! duration. Part of the parser (`parser.rs`), which makes one [`Line`] per line it reads.

use std::path::Path;
use std::time::Duration;

use crate::config::{Arity, ConfigError, ValueProblem};

/// Where one line came from, for errors and notices.
pub(super) struct Line<'a> {
    pub(super) file: &'a Path,
    pub(super) number: usize,
}

impl Line<'_> {
    pub(super) fn arity(&self, key: &'static str, expected: Arity, found: usize) -> ConfigError {
        ConfigError::Arity {
            file: self.file.to_owned(),
            line: self.number,
            key,
            expected,
            found,
        }
    }

    pub(super) fn invalid(
        &self,
        key: &'static str,
        value: &str,
        reason: ValueProblem,
    ) -> ConfigError {
        ConfigError::InvalidValue {
            file: self.file.to_owned(),
            line: self.number,
            key,
            value: value.to_owned(),
            reason,
        }
    }

    pub(super) fn duplicate(&self, key: &'static str) -> ConfigError {
        ConfigError::Duplicate {
            file: self.file.to_owned(),
            line: self.number,
            key,
        }
    }

    pub(super) fn unsupported(&self, key: &str, value: Option<&str>) -> ConfigError {
        ConfigError::Unsupported {
            file: self.file.to_owned(),
            line: self.number,
            key: key.to_owned(),
            value: value.map(str::to_owned),
        }
    }

    /// The value's words, up to a word starting with `#` (a trailing comment, as Mosquitto tolerates).
    pub(super) fn words<'v>(&self, rest: &'v str) -> Vec<&'v str> {
        rest.split_whitespace()
            .take_while(|w| !w.starts_with('#'))
            .collect()
    }

    pub(super) fn one<'v>(&self, key: &'static str, rest: &'v str) -> Result<&'v str, ConfigError> {
        match self.words(rest).as_slice() {
            [w] => Ok(w),
            other => Err(self.arity(key, Arity::One, other.len())),
        }
    }

    /// The whole rest of the line (it may contain spaces), like Mosquitto's string options.
    pub(super) fn text<'v>(
        &self,
        key: &'static str,
        rest: &'v str,
    ) -> Result<&'v str, ConfigError> {
        if rest.is_empty() {
            return Err(self.arity(key, Arity::Text, 0));
        }
        if rest.contains('\0') {
            return Err(self.invalid(key, rest, ValueProblem::NulByte));
        }
        Ok(rest)
    }

    pub(super) fn bool(&self, key: &'static str, rest: &str) -> Result<bool, ConfigError> {
        match self.one(key, rest)? {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(self.invalid(key, other, ValueProblem::NotABoolean)),
        }
    }

    pub(super) fn int(&self, key: &'static str, rest: &str) -> Result<i64, ConfigError> {
        let w = self.one(key, rest)?;
        w.parse::<i64>()
            .map_err(|_| self.invalid(key, w, ValueProblem::NotAnInteger))
    }

    pub(super) fn int_in(
        &self,
        key: &'static str,
        rest: &str,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        let v = self.int(key, rest)?;
        if v < min || v > max {
            return Err(self.invalid(key, &v.to_string(), ValueProblem::OutOfRange { min, max }));
        }
        Ok(v)
    }

    /// An integer where Mosquitto reads any negative value as "no limit" (0), capped at `max`.
    pub(super) fn limit(
        &self,
        key: &'static str,
        rest: &str,
        max: i64,
    ) -> Result<i64, ConfigError> {
        let v = self.int(key, rest)?;
        if v > max {
            return Err(self.invalid(
                key,
                &v.to_string(),
                ValueProblem::OutOfRange { min: 0, max },
            ));
        }
        Ok(v.max(0))
    }
}

/// `persistent_client_expiration`'s value as Mosquitto reads it: a positive count and a unit, `h`, `d`,
/// `w`, `m` (30 days) or `y` (365 days), e.g. `14d`. shardmq also takes `s` (seconds), which Mosquitto
/// does not, for setups (and tests) that need a short one.
pub(super) fn parse_expiration(v: &str) -> Option<Duration> {
    let unit = v.chars().last()?;
    let secs_per_unit: u64 = match unit {
        's' => 1,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return None,
    };
    let count: u64 = v[..v.len() - 1].parse().ok().filter(|&n| n > 0)?;
    Some(Duration::from_secs(count.checked_mul(secs_per_unit)?))
}
