//! The command line, Mosquitto-compatible: `-c FILE`, `-p PORT` (repeatable), `-v`, `-d`, `-h`, plus
//! `--test-config` and `--version`.
//!
//! Concurrency: parsed once on the main thread at start-up, before logging and shards exist.

use std::path::PathBuf;

use clap::Parser;

use crate::auth::SecurityError;
use crate::config::{Config, ConfigError};

/// shardmq's command line arguments.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "shardmq",
    version = concat!("version ", env!("CARGO_PKG_VERSION")),
    about = "shardmq is a thread-per-core MQTT v5.0/v3.1.1/v3.1 broker, a drop-in replacement for Mosquitto 2.0.",
    after_help = "Without -c, shardmq listens on 127.0.0.1:1883 only (Mosquitto 2.0's local only mode).\n\
                  The commented default configuration is printed by --print-default-config."
)]
pub struct Args {
    /// Read the configuration from FILE (mosquitto.conf format). Without it, built-in defaults are used.
    #[arg(short = 'c', long = "config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Listen on PORT (loopback only), up to 10 times. Ignored when the config file defines listeners,
    /// as in Mosquitto 2.0.
    #[arg(short = 'p', long = "port", value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Vec<u16>,

    /// Log every message type (log_type all), overriding the config file's logging options.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    /// Run in the background after starting.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,

    /// Check the configuration, print "Configuration file is OK" and exit.
    #[arg(short = 't', long = "test-config")]
    pub test_config: bool,

    /// Print the commented default configuration file and exit.
    #[arg(long = "print-default-config")]
    pub print_default_config: bool,
}

/// The line `--test-config` prints when the configuration loads.
pub const CONFIG_OK_MESSAGE: &str = "Configuration file is OK";

/// Loads the configuration `args` names (or the defaults) and applies the command line's overrides:
/// `-p` ports, `-v` and `-d`.
pub fn load_config(args: &Args) -> Result<Config, ConfigError> {
    let mut config = match &args.config_file {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    config.apply_command_line_ports(&args.port)?;
    if args.verbose {
        config.apply_verbose();
    }
    config.daemon |= args.daemon;
    Ok(config)
}

/// Why `--test-config` found the configuration unusable.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Security(#[from] SecurityError),
}

/// What `--test-config` checks beyond parsing: the CPUs `shards`/`cpu_set` ask for exist for this
/// process, and the `password_file` / `acl_file` load. Returns the configuration on success, after which
/// `main` prints [`CONFIG_OK_MESSAGE`].
pub fn check_config(args: &Args) -> Result<Config, CheckError> {
    let config = load_config(args)?;
    config.shard_placement()?;
    crate::server::load_security(&config)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigNotice, ListenerConfig};
    use crate::logging::LogTypes;
    use clap::error::ErrorKind;
    use std::path::Path;

    fn args(argv: &[&str]) -> Args {
        match Args::try_parse_from(std::iter::once("shardmq").chain(argv.iter().copied())) {
            Ok(a) => a,
            Err(e) => panic!("{argv:?}: {e}"),
        }
    }

    fn args_err(argv: &[&str]) -> ErrorKind {
        match Args::try_parse_from(std::iter::once("shardmq").chain(argv.iter().copied())) {
            Ok(a) => panic!("{argv:?} should fail, got {a:?}"),
            Err(e) => e.kind(),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn no_arguments() {
        let a = args(&[]);
        assert_eq!(
            a,
            Args {
                config_file: None,
                port: vec![],
                verbose: false,
                daemon: false,
                test_config: false,
                print_default_config: false,
            }
        );
        assert_eq!(load_config(&a).unwrap(), Config::default());
    }

    #[test]
    fn short_and_long_flags() {
        let a = args(&[
            "-c",
            "/etc/m.conf",
            "-p",
            "1884",
            "-p",
            "1885",
            "-v",
            "-d",
            "-t",
        ]);
        assert_eq!(a.config_file.as_deref(), Some(Path::new("/etc/m.conf")));
        assert_eq!(a.port, vec![1884, 1885]);
        assert!(a.verbose && a.daemon && a.test_config);
        let b = args(&[
            "--config-file",
            "/etc/m.conf",
            "--port",
            "1884",
            "--port=1885",
            "--verbose",
            "--daemon",
            "--test-config",
        ]);
        assert_eq!(a, b);
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert_eq!(args_err(&["-p", "0"]), ErrorKind::ValueValidation);
        assert_eq!(args_err(&["-p", "65536"]), ErrorKind::ValueValidation);
        assert_eq!(args_err(&["-p", "x"]), ErrorKind::ValueValidation);
        assert_eq!(args_err(&["-c"]), ErrorKind::InvalidValue);
        assert_eq!(args_err(&["--bogus"]), ErrorKind::UnknownArgument);
    }

    #[test]
    fn help_and_version() {
        assert_eq!(args_err(&["-h"]), ErrorKind::DisplayHelp);
        assert_eq!(args_err(&["--help"]), ErrorKind::DisplayHelp);
        let e = Args::try_parse_from(["shardmq", "--version"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DisplayVersion);
        assert_eq!(
            e.to_string().trim_end(),
            format!("shardmq version {}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn overrides_are_applied() {
        let expected = Config {
            listeners: vec![ListenerConfig::local_only(1884)],
            log_types: LogTypes::ALL,
            verbose: true,
            daemon: true,
            ..Config::default()
        };
        assert_eq!(
            load_config(&args(&["-p", "1884", "-v", "-d"])).unwrap(),
            expected
        );
        assert!(matches!(
            load_config(&args(&[
                "-p", "1", "-p", "2", "-p", "3", "-p", "4", "-p", "5", "-p", "6", "-p", "7", "-p",
                "8", "-p", "9", "-p", "10", "-p", "11"
            ])),
            Err(ConfigError::TooManyPorts { count: 11 })
        ));
    }

    #[test]
    fn config_file_with_listener_ignores_ports() {
        let path = std::env::temp_dir().join(format!("shardmq-cli-{}.conf", std::process::id()));
        std::fs::write(&path, "listener 1999\nlog_type error\n").unwrap();
        let a = args(&["-c", path.to_str().unwrap(), "-p", "1884", "-v"]);
        let c = load_config(&a);
        let _ = std::fs::remove_file(&path);
        let c = c.unwrap();
        assert_eq!(c.listeners, vec![ListenerConfig::any_interface(1999)]);
        assert_eq!(c.log_types, LogTypes::ALL, "-v overrides log_type");
        assert!(c
            .notices
            .contains(&ConfigNotice::CommandLinePortsIgnored { ports: vec![1884] }));
        assert_eq!(c.config_file.as_deref(), Some(path.as_path()));
    }

    #[test]
    fn check_config_checks_cpus_too() {
        assert!(check_config(&args(&[])).is_ok());
        let path =
            std::env::temp_dir().join(format!("shardmq-cli-cpu-{}.conf", std::process::id()));
        std::fs::write(&path, "cpu_set 1023\n").unwrap();
        let a = args(&["-c", path.to_str().unwrap()]);
        let loaded = load_config(&a);
        let checked = check_config(&a);
        let _ = std::fs::remove_file(&path);
        assert!(loaded.is_ok(), "parses");
        assert!(matches!(
            checked,
            Err(CheckError::Config(ConfigError::CpuNotAvailable {
                cpu: 1023,
                ..
            }))
        ));
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let a = args(&["-c", "/nonexistent/shardmq.conf"]);
        assert!(matches!(load_config(&a), Err(ConfigError::Read { .. })));
    }
}
