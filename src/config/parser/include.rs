//! `include_dir`: the `.conf` files of a directory, read in Mosquitto's order and parsed one level
//! down (an included file may not include again), refusing the main file itself. Part of the parser
//! (`parser.rs`), which dispatches the key here.

use std::path::Path;

use super::{Line, Parser};
use crate::config::{ConfigError, ConfigNotice};

/// Mosquitto's include_dir order: case-insensitive first, then upper case before lower case.
fn mosquitto_file_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        let by_upper = x.to_ascii_uppercase().cmp(&y.to_ascii_uppercase());
        if by_upper.is_ne() {
            return by_upper;
        }
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

impl Parser {
    pub(super) fn include_dir(
        &mut self,
        line: &Line<'_>,
        rest: &str,
        level: usize,
    ) -> Result<(), ConfigError> {
        if level > 0 {
            return Err(ConfigError::NestedIncludeDir {
                file: line.file.to_owned(),
                line: line.number,
            });
        }
        let dir = Path::new(line.text("include_dir", rest)?);
        let dir = if dir.is_relative() {
            line.file.parent().unwrap_or(Path::new("")).join(dir)
        } else {
            dir.to_owned()
        };
        let io_error = |source| ConfigError::IncludeDir {
            dir: dir.clone(),
            file: line.file.to_owned(),
            line: line.number,
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            // Mosquitto takes names longer than 5 bytes ending in ".conf" (so ".conf" itself is skipped).
            if let Some(name) = entry.file_name().to_str() {
                if name.len() > 5 && name.ends_with(".conf") {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort_by(|a, b| mosquitto_file_order(a, b));
        let main = std::fs::canonicalize(&self.main_file).ok();
        for name in names {
            let path = dir.join(&name);
            if main.is_some() && std::fs::canonicalize(&path).ok() == main {
                return Err(ConfigError::IncludeDirContainsMainFile {
                    file: line.file.to_owned(),
                    line: line.number,
                    main: self.main_file.clone(),
                });
            }
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            self.config
                .notices
                .push(ConfigNotice::IncludedFile { path: path.clone() });
            self.parse_text(&text, &path, level + 1)?;
        }
        Ok(())
    }
}
