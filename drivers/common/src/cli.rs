//! Command-line flags, with Envoy's names so Envoy command lines run unchanged.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// burrow: an Envoy-compatible proxy for HTTP upgrades, tunnels and pooled upstreams.
#[derive(Clone, Debug, Parser)]
#[command(version)]
pub struct Args {
    /// Envoy v3 YAML bootstrap; without it, a built-in loopback forward proxy
    /// (CONNECT on 127.0.0.1:10000, admin on 127.0.0.1:9901).
    #[arg(short = 'c', long = "config-path", value_name = "FILE")]
    pub config_path: Option<PathBuf>,

    /// Worker threads, each with its own listeners (SO_REUSEPORT) and connections
    /// [default: the number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,

    /// Log level; RUST_LOG, when set, takes precedence.
    #[arg(short = 'l', long = "log-level", value_name = "LEVEL", value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// `serve` runs the proxy; `validate` checks the configuration and exits.
    #[arg(long, value_enum, default_value = "serve")]
    pub mode: Mode,

    /// Seconds that open connections get to finish after SIGTERM/SIGINT (a second signal exits at once).
    #[arg(long = "drain-time-s", value_name = "N", default_value_t = 600)]
    pub drain_time_s: u64,

    /// Accepted for Envoy compatibility and ignored.
    #[arg(long = "base-id", value_name = "N", hide = true)]
    pub base_id: Option<u64>,

    /// How often access logs are flushed, in milliseconds.
    #[arg(long = "file-flush-interval-msec", value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub file_flush_interval_msec: u64,
}

/// Envoy's level names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    #[value(alias = "warn")]
    Warning,
    Error,
    Critical,
    Off,
}

impl LogLevel {
    /// The `tracing` filter directive for this level (Envoy's `critical` is `error`).
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error | LogLevel::Critical => "error",
            LogLevel::Off => "off",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Serve,
    Validate,
}

impl Args {
    /// `--concurrency`, or the number of cores.
    pub fn workers(&self) -> usize {
        match self.concurrency {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    pub fn drain_time(&self) -> Duration {
        Duration::from_secs(self.drain_time_s)
    }

    pub fn file_flush_interval(&self) -> Duration {
        Duration::from_millis(self.file_flush_interval_msec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_command_lines_parse() {
        let args = Args::try_parse_from([
            "burrow",
            "-c",
            "envoy.yaml",
            "--concurrency",
            "2",
            "-l",
            "warn",
            "--base-id",
            "7",
            "--drain-time-s",
            "5",
            "--file-flush-interval-msec",
            "250",
        ])
        .unwrap();
        assert_eq!(args.config_path.as_deref(), Some(std::path::Path::new("envoy.yaml")));
        assert_eq!(args.workers(), 2);
        assert_eq!(args.log_level, LogLevel::Warning);
        assert_eq!(args.drain_time(), Duration::from_secs(5));
        assert_eq!(args.file_flush_interval(), Duration::from_millis(250));
        assert_eq!(args.mode, Mode::Serve);

        let args = Args::try_parse_from(["burrow", "--mode", "validate", "--log-level", "critical"]).unwrap();
        assert_eq!(args.mode, Mode::Validate);
        assert_eq!(args.log_level.directive(), "error");
        assert_eq!(args.drain_time_s, 600);
        assert!(Args::try_parse_from(["burrow", "--concurrency", "0"]).is_err());
        assert!(Args::try_parse_from(["burrow", "-l", "loud"]).is_err());
    }
}
