//! Helpers the config modules share: decoding with field paths, joining paths, and the errors
//! and field rules that several sections use alike.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ConfigError;
use super::raw;

pub(super) const DEFAULT_BUFFER_LIMIT: u32 = 1024 * 1024;

pub(super) type Result<T> = std::result::Result<T, ConfigError>;

/// Decodes `value` as `T`, reporting errors at `base` joined with the path inside `value`.
pub(super) fn decode<T: DeserializeOwned>(value: &Value, base: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let inner = if inner == "." { "" } else { inner.as_str() };
        ConfigError::new(at(base, inner), e.into_inner().to_string())
    })
}

/// Joins field paths: `at("a.b", "c")` is `a.b.c`, `at("a", "[0]")` is `a[0]`.
pub(super) fn at(base: &str, rest: &str) -> String {
    if base.is_empty() {
        rest.to_string()
    } else if rest.is_empty() {
        base.to_string()
    } else if rest.starts_with('[') {
        format!("{base}{rest}")
    } else {
        format!("{base}.{rest}")
    }
}

pub(super) fn err<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T> {
    Err(ConfigError::new(path, message))
}

/// A field (or value) burrow parses but does not implement yet: refused rather than silently
/// ignored. `what` names the value when the field itself is fine (`"UDP"`), `why` says what
/// burrow does instead.
pub(super) fn not_supported<T>(path: impl Into<String>, what: &str, why: &str) -> Result<T> {
    let subject = if what.is_empty() { String::new() } else { format!("{what} is ") };
    err(path, format!("{subject}not supported yet ({why})"))
}

/// Splits a `typed_config` into its `@type` and the remaining fields.
pub(super) fn split_typed(value: &Value, path: &str) -> Result<(String, Value)> {
    let Value::Object(map) = value else {
        return err(path, "expected a map with an \"@type\" field");
    };
    let mut body = map.clone();
    match body.remove("@type") {
        Some(Value::String(url)) => Ok((url, Value::Object(body))),
        Some(_) => err(at(path, "@type"), "expected a string"),
        None => err(path, "missing @type"),
    }
}

/// A timeout field where zero disables the timeout and absence means `default`.
pub(super) fn timeout_or(value: Option<raw::Dur>, default: Option<Duration>) -> Option<Duration> {
    match value {
        None => default,
        Some(d) if d.0.is_zero() => None,
        Some(d) => Some(d.0),
    }
}

/// Envoy's non-strict `HTTP_HEADER_VALUE` rule: no NUL, CR or LF.
pub(super) fn header_value(value: &str, path: &str) -> Result<()> {
    if value.bytes().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
        return err(path, "must not contain NUL, CR or LF");
    }
    Ok(())
}

/// The text of a `DataSource`: only `inline_string` (the core reads no files or environment).
pub(super) fn inline_string(d: raw::DataSource, path: &str) -> Result<String> {
    let unsupported = |field: &str, why: &str| err(at(path, field), format!("unsupported: {why}"));
    if d.filename.is_some() {
        return unsupported("filename", "burrow does not read files here");
    }
    if d.environment_variable.is_some() {
        return unsupported("environment_variable", "burrow does not read the environment here");
    }
    if d.inline_bytes.is_some() {
        return unsupported("inline_bytes", "use inline_string");
    }
    match d.inline_string {
        Some(text) => Ok(text),
        None => err(path, "missing inline_string"),
    }
}
