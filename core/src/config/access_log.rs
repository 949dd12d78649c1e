//! Access logs (`access_log` of the connection manager and the TCP proxy): the stdout, stderr
//! and file loggers with their formats. Every distinct destination becomes one
//! [`LogSink`] of the config, which the driver opens once; loggers name theirs by index.

use super::fields::{at, decode, err, inline_string, not_supported, split_typed, Result};
use super::model::*;
use super::raw;
use crate::format::Format;

pub const STDOUT_LOG_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
pub const STDERR_LOG_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog";
pub const FILE_LOG_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";

pub(super) fn access_logs(
    logs: Vec<raw::AccessLog>,
    path: &str,
    sinks: &mut Vec<LogSink>,
) -> Result<Vec<AccessLog>> {
    let mut out = Vec::with_capacity(logs.len());
    for (i, log) in logs.into_iter().enumerate() {
        let lpath = format!("{path}[{i}]");
        if log.filter.is_some() {
            return not_supported(at(&lpath, "filter"), "", "every request or connection is logged");
        }
        let Some(typed) = log.typed_config else { return err(lpath, "missing typed_config") };
        let tpath = at(&lpath, "typed_config");
        let (url, body) = split_typed(&typed, &tpath)?;
        let (sink, format) = match url.as_str() {
            STDOUT_LOG_TYPE_URL | STDERR_LOG_TYPE_URL => {
                let stream: raw::StreamAccessLog = decode(&body, &tpath)?;
                let sink = if url == STDOUT_LOG_TYPE_URL { LogSink::Stdout } else { LogSink::Stderr };
                (sink, log_format(stream.log_format, &at(&tpath, "log_format"))?)
            }
            FILE_LOG_TYPE_URL => {
                let file: raw::FileAccessLog = decode(&body, &tpath)?;
                if file.path.is_empty() {
                    return err(at(&tpath, "path"), "empty");
                }
                let format = match (file.format, file.json_format, file.log_format) {
                    (Some(text), None, None) => text_format(&text, &at(&tpath, "format"))?,
                    (None, Some(json), None) => json_format(&json, &at(&tpath, "json_format"))?,
                    (None, None, f) => log_format(f, &at(&tpath, "log_format"))?,
                    _ => return err(tpath, "set one of format, json_format and log_format"),
                };
                (LogSink::File(file.path), format)
            }
            _ => {
                return err(
                    at(&tpath, "@type"),
                    format!(
                        "unsupported access logger '{url}' (burrow supports {STDOUT_LOG_TYPE_URL}, \
                         {STDERR_LOG_TYPE_URL} and {FILE_LOG_TYPE_URL})"
                    ),
                )
            }
        };
        let sink = match sinks.iter().position(|s| *s == sink) {
            Some(index) => index,
            None => {
                sinks.push(sink);
                sinks.len() - 1
            }
        };
        out.push(AccessLog { sink, format });
    }
    Ok(out)
}

/// A logger's `log_format`, or Envoy's default line without one.
fn log_format(f: Option<raw::SubstitutionFormatString>, path: &str) -> Result<Format> {
    let Some(f) = f else { return Ok(Format::envoy_default()) };
    if f.omit_empty_values == Some(true) {
        return not_supported(at(path, "omit_empty_values"), "", "absent values print as '-' (null in JSON)");
    }
    match (f.text_format, f.text_format_source, f.json_format) {
        (Some(text), None, None) => text_format(&text, &at(path, "text_format")),
        (None, Some(source), None) => {
            let spath = at(path, "text_format_source");
            text_format(&inline_string(source, &spath)?, &at(&spath, "inline_string"))
        }
        (None, None, Some(json)) => json_format(&json, &at(path, "json_format")),
        (None, None, None) => Ok(Format::envoy_default()),
        _ => err(path, "set one of text_format, text_format_source and json_format"),
    }
}

fn text_format(text: &str, path: &str) -> Result<Format> {
    Format::text(text).or_else(|e| err(path, e))
}

fn json_format(json: &serde_json::Map<String, serde_json::Value>, path: &str) -> Result<Format> {
    Format::json(json).or_else(|e| err(path, e))
}
