//! Envoy's substitution formats ("command operators"): access-log lines
//! (`text_format_source`, `json_format`) and tcp_proxy tunneling hostnames and header values.
//!
//! A format is parsed once at config load into literal text and operators; rendering walks
//! those pieces and appends to the caller's `String`, allocating nothing else. Parsing follows
//! Envoy's grammar, `%NAME%`, `%NAME(ARG)%`, `%NAME(ARG):LEN%` with NAME of `A-Z0-9_`, and like
//! Envoy it rejects unknown operators and a `%` that starts no operator (`%%` is a literal `%`).

use std::fmt::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::format::{Item, StrftimeItems};
use chrono::DateTime;

/// A parsed format: literal text and command operators, parsed once at config load.
#[derive(Clone, Debug, PartialEq)]
pub struct Format {
    body: Body,
}

#[derive(Clone, Debug, PartialEq)]
enum Body {
    Text(Vec<Piece>),
    /// The JSON object as constant JSON text between the operator-bearing values.
    Json(Vec<JsonPart>),
}

#[derive(Clone, Debug, PartialEq)]
enum JsonPart {
    /// Keys, punctuation and constant values, already serialized.
    Raw(String),
    /// A value that is exactly one operator: rendered typed (number, string or null).
    Typed(Piece),
    /// A value mixing text and operators: always a string, absent operators as "-".
    String(Vec<Piece>),
}

/// Header lookup for %REQ(...)% / %RESP(...)% / %TRAILER(...)%. Names are passed lower-cased;
/// pseudo-headers like ":method", ":path", ":authority", ":scheme" included.
pub(crate) trait HeaderSource {
    fn header(&self, name: &str) -> Option<&[u8]>;
}

/// Everything a format may draw on. Absent (None) renders "-" in text and null in JSON.
#[derive(Default)]
pub(crate) struct Facts<'a> {
    /// %START_TIME%, %START_TIME(fmt)%.
    pub(crate) start: Option<SystemTime>,
    /// %DURATION%, in whole milliseconds.
    pub(crate) duration: Option<Duration>,
    pub(crate) downstream_local: Option<SocketAddr>,
    pub(crate) downstream_remote: Option<SocketAddr>,
    /// The TLS SNI; empty counts as absent, as in Envoy.
    pub(crate) requested_server_name: Option<&'a str>,
    /// %HOSTNAME%: the machine's, given by the driver (the core makes no syscalls).
    pub(crate) hostname: Option<&'a str>,
    pub(crate) request: Option<&'a dyn HeaderSource>,
    pub(crate) response: Option<&'a dyn HeaderSource>,
    /// %TRAILER(...)%: the response trailers.
    pub(crate) trailers: Option<&'a dyn HeaderSource>,
    /// %PROTOCOL%: "HTTP/1.1", "HTTP/2".
    pub(crate) protocol: Option<&'a str>,
    /// %RESPONSE_CODE%: Envoy prints 0 when there was no response; callers pass Some(0) for that.
    pub(crate) response_code: Option<u16>,
    /// %RESPONSE_FLAGS%: e.g. "UF,URX"; empty renders "-" (a string even in JSON, as in Envoy).
    pub(crate) response_flags: &'a str,
    pub(crate) bytes_received: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) upstream_host: Option<SocketAddr>,
    pub(crate) upstream_local: Option<SocketAddr>,
    /// Empty counts as absent, as in Envoy.
    pub(crate) upstream_cluster: Option<&'a str>,
    /// Empty counts as absent; spaces render as '_' so the value stays one log token.
    pub(crate) upstream_transport_failure_reason: Option<&'a str>,
    pub(crate) connection_termination_details: Option<&'a str>,
}

/// One parsed element of a format.
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Literal(String),
    StartTime(Vec<TimeItem>),
    Header { from: HeaderFrom, name: String, fallback: Option<String>, max_len: Option<usize> },
    Protocol,
    ResponseCode,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    Address(AddrOf, AddrPart),
    UpstreamCluster,
    UpstreamTransportFailureReason,
    RequestedServerName,
    Hostname,
    ConnectionTerminationDetails,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum HeaderFrom {
    Request,
    Response,
    Trailers,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum AddrOf {
    DownstreamLocal,
    DownstreamRemote,
    UpstreamHost,
    UpstreamLocal,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum AddrPart {
    /// `1.2.3.4:80`, `[::1]:80`.
    WithPort,
    /// `1.2.3.4`, `::1`.
    Ip,
    Port,
}

/// A START_TIME format, pre-parsed: chrono renders the strftime runs; Envoy's `%1f`..`%9f`
/// (chrono knows only 3, 6 and 9 digits) are ours.
#[derive(Clone, Debug, PartialEq)]
enum TimeItem {
    Strftime(Vec<Item<'static>>),
    /// Fractional-second digits, truncated (not rounded), as Envoy does.
    Frac(u8),
}

/// Envoy's default START_TIME rendering (its `%Y-%m-%dT%H:%M:%E3SZ`).
const DEFAULT_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S.%3fZ";

const ENVOY_DEFAULT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% \
     %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% \
     %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \
     \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

impl Format {
    /// Envoy's text format (`text_format_source.inline_string`, `text_format`, or a
    /// hostname/header value). Errors name the bad operator.
    pub(crate) fn text(source: &str) -> Result<Format, String> {
        Ok(Format { body: Body::Text(parse(source)?) })
    }

    /// `json_format`: an object whose values are format strings (or nested objects and lists,
    /// or constants kept as they are). Renders as one JSON object on one line ending in "\n",
    /// keys sorted (as Envoy does). A value that is exactly one operator renders typed:
    /// numbers (RESPONSE_CODE, BYTES_*, DURATION, ports) as JSON numbers, absent values as
    /// null; a value mixing text and operators renders as a string.
    pub(crate) fn json(fields: &serde_json::Map<String, serde_json::Value>) -> Result<Format, String> {
        let mut builder = JsonBuilder { raw: String::new(), parts: Vec::new() };
        builder.object(fields, "")?;
        builder.raw.push('\n');
        let JsonBuilder { raw, mut parts } = builder;
        parts.push(JsonPart::Raw(raw));
        Ok(Format { body: Body::Json(parts) })
    }

    /// Envoy's default access-log format, used when an access logger has no log_format.
    pub(crate) fn envoy_default() -> Format {
        Format::text(ENVOY_DEFAULT).expect("Envoy's default format parses")
    }

    /// Renders into `out` (appends).
    pub(crate) fn render(&self, facts: &Facts<'_>, out: &mut String) {
        // Writing into a String cannot fail, and every START_TIME format was rendered once at
        // parse time, so there is no error to report here.
        let _ = self.render_into(facts, out);
    }

    fn render_into(&self, facts: &Facts<'_>, out: &mut String) -> fmt::Result {
        match &self.body {
            Body::Text(pieces) => {
                for piece in pieces {
                    if !piece.write(facts, out)? {
                        out.push('-');
                    }
                }
            }
            Body::Json(parts) => {
                for part in parts {
                    match part {
                        JsonPart::Raw(raw) => out.push_str(raw),
                        JsonPart::Typed(piece) => piece.write_json(facts, out)?,
                        JsonPart::String(pieces) => {
                            out.push('"');
                            let mut escaped = JsonEscaped(out);
                            for piece in pieces {
                                if !piece.write(facts, &mut escaped)? {
                                    escaped.write_char('-')?;
                                }
                            }
                            out.push('"');
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Parses a text format into pieces, merging adjacent literal text (so "a%%b" is one piece,
/// which decides typed rendering in JSON exactly as Envoy's provider count does).
fn parse(source: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut pos = 0;
    while let Some(found) = source[pos..].find('%') {
        literal.push_str(&source[pos..pos + found]);
        pos += found;
        if source[pos + 1..].starts_with('%') {
            literal.push('%');
            pos += 2;
            continue;
        }
        let (op, end) = scan_operator(source, pos)?;
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(op.build()?);
        pos = end;
    }
    literal.push_str(&source[pos..]);
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

/// An operator as written: `%NAME(ARG):LEN%`.
struct Operator<'s> {
    name: &'s str,
    /// None when absent or empty (Envoy treats `%START_TIME()%` as `%START_TIME%`).
    arg: Option<&'s str>,
    max_len: Option<usize>,
}

/// Matches Envoy's `^%([A-Z0-9_]+)(?:\((.*?)\))?(?::([0-9]+))?%` at `start` (a '%'): returns the
/// operator and the index just past its closing '%'. Like the lazy `.*?`, the argument ends at
/// the first ')' that a valid `:LEN%` or `%` follows, so a START_TIME format may hold ')' too.
fn scan_operator(source: &str, start: usize) -> Result<(Operator<'_>, usize), String> {
    let rest = &source[start + 1..];
    let name_len =
        rest.bytes().take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_').count();
    if name_len == 0 {
        return Err(format!("'%' at byte {start} starts no command operator (a literal '%' is written %%)"));
    }
    let name = &rest[..name_len];
    let after = &rest[name_len..];
    let (arg, tail, tail_at) = match after.strip_prefix('(') {
        Some(inner) => {
            let close = inner
                .match_indices(')')
                .map(|(i, _)| i)
                .take_while(|&i| !inner[..i].contains('\n'))
                .find(|&i| scan_tail(&inner[i + 1..]).is_some());
            match close {
                Some(i) => (Some(&inner[..i]), &inner[i + 1..], start + 1 + name_len + 1 + i + 1),
                None => (None, "", 0),
            }
        }
        None => (None, after, start + 1 + name_len),
    };
    let Some((max_len, used)) = scan_tail(tail) else {
        return Err(format!("unterminated command operator %{name}... at byte {start}"));
    };
    Ok((Operator { name, arg: arg.filter(|a| !a.is_empty()), max_len }, tail_at + used))
}

/// Matches `(:[0-9]+)?%`: the length (if any) and the bytes used. A length too large for
/// usize is as good as none, so it saturates.
fn scan_tail(tail: &str) -> Option<(Option<usize>, usize)> {
    if tail.starts_with('%') {
        return Some((None, 1));
    }
    let digits = tail.strip_prefix(':')?;
    let len = digits.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 || !digits[len..].starts_with('%') {
        return None;
    }
    Some((Some(digits[..len].parse().unwrap_or(usize::MAX)), len + 2))
}

impl Operator<'_> {
    fn build(&self) -> Result<Piece, String> {
        let name = self.name;
        match name {
            "REQ" => return self.header(HeaderFrom::Request),
            "RESP" => return self.header(HeaderFrom::Response),
            "TRAILER" => return self.header(HeaderFrom::Trailers),
            "START_TIME" => {
                if self.max_len.is_some() {
                    return Err(format!("%{name}% does not take a length"));
                }
                return parse_time_format(self.arg.unwrap_or(DEFAULT_TIME_FORMAT))
                    .map(Piece::StartTime)
                    .map_err(|e| format!("%{name}({})%: {e}", self.arg.unwrap_or_default()));
            }
            _ => {}
        }
        use AddrOf::*;
        use AddrPart::*;
        let piece = match name {
            "PROTOCOL" => Piece::Protocol,
            "RESPONSE_CODE" => Piece::ResponseCode,
            "RESPONSE_FLAGS" => Piece::ResponseFlags,
            "BYTES_RECEIVED" => Piece::BytesReceived,
            "BYTES_SENT" => Piece::BytesSent,
            "DURATION" => Piece::Duration,
            "UPSTREAM_HOST" | "UPSTREAM_REMOTE_ADDRESS" => Piece::Address(UpstreamHost, WithPort),
            "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Piece::Address(UpstreamHost, Ip),
            "UPSTREAM_REMOTE_PORT" => Piece::Address(UpstreamHost, Port),
            "UPSTREAM_LOCAL_ADDRESS" => Piece::Address(UpstreamLocal, WithPort),
            "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => Piece::Address(UpstreamLocal, Ip),
            "UPSTREAM_LOCAL_PORT" => Piece::Address(UpstreamLocal, Port),
            // No PROXY protocol or original-destination rewriting here: "direct" is the same.
            "DOWNSTREAM_LOCAL_ADDRESS" | "DOWNSTREAM_DIRECT_LOCAL_ADDRESS" => {
                Piece::Address(DownstreamLocal, WithPort)
            }
            "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" | "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT" => {
                Piece::Address(DownstreamLocal, Ip)
            }
            "DOWNSTREAM_LOCAL_PORT" | "DOWNSTREAM_DIRECT_LOCAL_PORT" => Piece::Address(DownstreamLocal, Port),
            "DOWNSTREAM_REMOTE_ADDRESS" | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => {
                Piece::Address(DownstreamRemote, WithPort)
            }
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
                Piece::Address(DownstreamRemote, Ip)
            }
            "DOWNSTREAM_REMOTE_PORT" | "DOWNSTREAM_DIRECT_REMOTE_PORT" => {
                Piece::Address(DownstreamRemote, Port)
            }
            "UPSTREAM_CLUSTER" => Piece::UpstreamCluster,
            "UPSTREAM_TRANSPORT_FAILURE_REASON" => Piece::UpstreamTransportFailureReason,
            "REQUESTED_SERVER_NAME" => Piece::RequestedServerName,
            "HOSTNAME" => Piece::Hostname,
            "CONNECTION_TERMINATION_DETAILS" => Piece::ConnectionTerminationDetails,
            _ => return Err(format!("unknown command operator %{name}%")),
        };
        if self.arg.is_some() || self.max_len.is_some() {
            return Err(format!("%{name}% takes no parameters or length"));
        }
        Ok(piece)
    }

    /// `X`, or `X?Y` where Y is looked up when X is absent; names are stored lower-cased.
    fn header(&self, from: HeaderFrom) -> Result<Piece, String> {
        let name = self.name;
        let Some(arg) = self.arg else {
            return Err(format!("%{name}% needs a header name"));
        };
        let (main, fallback) = match arg.split_once('?') {
            Some((_, fallback)) if fallback.contains('?') => {
                return Err(format!("%{name}({arg})% takes at most one fallback header"));
            }
            Some((main, fallback)) => (main, Some(fallback).filter(|f| !f.is_empty())),
            None => (arg, None),
        };
        for header in std::iter::once(main).chain(fallback) {
            if !valid_header_name(header) {
                return Err(format!("%{name}({arg})%: invalid header name {header:?}"));
            }
        }
        Ok(Piece::Header {
            from,
            name: main.to_ascii_lowercase(),
            fallback: fallback.map(str::to_ascii_lowercase),
            max_len: self.max_len,
        })
    }
}

/// An RFC 9110 token, optionally after the ':' of a pseudo-header.
fn valid_header_name(name: &str) -> bool {
    let name = name.strip_prefix(':').unwrap_or(name);
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Splits a START_TIME format into chrono strftime runs and Envoy's own specifiers. The time
/// is always UTC, so `%z`, `%:z` and `%Z` become literals: chrono then formats a naive time,
/// which (unlike a zoned one) costs no allocation per render.
fn parse_time_format(spec: &str) -> Result<Vec<TimeItem>, String> {
    fn flush(strftime: &mut String, items: &mut Vec<TimeItem>) -> Result<(), String> {
        if !strftime.is_empty() {
            let parsed = StrftimeItems::new(strftime)
                .parse_to_owned()
                .map_err(|_| format!("unsupported time format {spec:?}", spec = strftime))?;
            items.push(TimeItem::Strftime(parsed));
            strftime.clear();
        }
        Ok(())
    }
    let mut items = Vec::new();
    let mut strftime = String::new();
    let mut rest = spec;
    while let Some(at) = rest.find('%') {
        strftime.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let used = match after.as_bytes() {
            [b'f', ..] => {
                flush(&mut strftime, &mut items)?;
                items.push(TimeItem::Frac(9));
                1
            }
            [digit @ b'1'..=b'9', b'f', ..] => {
                flush(&mut strftime, &mut items)?;
                items.push(TimeItem::Frac(digit - b'0'));
                2
            }
            [b'%', ..] => {
                strftime.push_str("%%");
                1
            }
            [b'z', ..] => {
                strftime.push_str("+0000");
                1
            }
            [b':', b'z', ..] => {
                strftime.push_str("+00:00");
                2
            }
            [b'Z', ..] => {
                strftime.push_str("UTC");
                1
            }
            // Envoy rejects these too: the value may become a header.
            [b'n', ..] => return Err("a time format may not contain a newline (%n)".to_string()),
            _ => {
                strftime.push('%');
                0
            }
        };
        rest = &after[used..];
    }
    strftime.push_str(rest);
    flush(&mut strftime, &mut items)?;
    // chrono accepts some specifiers it can only render with a zone (%+, %::z): find them now.
    if write_time(&items, UNIX_EPOCH, &mut String::new()).is_err() {
        return Err(format!("unsupported time format {spec:?}"));
    }
    Ok(items)
}

/// Renders `time` in UTC; Ok(false) when it is beyond what a calendar date can hold.
fn write_time<W: Write>(items: &[TimeItem], time: SystemTime, w: &mut W) -> Result<bool, fmt::Error> {
    let (secs, nanos) = match time.duration_since(UNIX_EPOCH) {
        Ok(since) => (i64::try_from(since.as_secs()).ok(), since.subsec_nanos()),
        Err(before) => {
            let before = before.duration();
            let secs = i64::try_from(before.as_secs()).ok().map(|s| -s);
            match before.subsec_nanos() {
                0 => (secs, 0),
                n => (secs.map(|s| s - 1), 1_000_000_000 - n),
            }
        }
    };
    let Some(at) = secs.and_then(|s| DateTime::from_timestamp(s, nanos)) else {
        return Ok(false);
    };
    let naive = at.naive_utc();
    for item in items {
        match item {
            TimeItem::Strftime(run) => naive.format_with_items(run.iter()).write_to(w)?,
            TimeItem::Frac(digits) => {
                let value = nanos / 10u32.pow(9 - u32::from(*digits));
                write!(w, "{value:0width$}", width = usize::from(*digits))?;
            }
        }
    }
    Ok(true)
}

impl Piece {
    /// Writes the value as text; Ok(false), having written nothing, when it is absent (the
    /// caller then writes "-" or null).
    fn write<W: Write>(&self, facts: &Facts<'_>, w: &mut W) -> Result<bool, fmt::Error> {
        match self {
            Piece::Literal(text) => w.write_str(text)?,
            Piece::StartTime(items) => match facts.start {
                Some(start) => return write_time(items, start, w),
                None => return Ok(false),
            },
            Piece::Header { from, name, fallback, max_len } => {
                let headers = match from {
                    HeaderFrom::Request => facts.request,
                    HeaderFrom::Response => facts.response,
                    HeaderFrom::Trailers => facts.trailers,
                };
                let Some(headers) = headers else { return Ok(false) };
                let value =
                    headers.header(name).or_else(|| fallback.as_deref().and_then(|f| headers.header(f)));
                let Some(value) = value else { return Ok(false) };
                write_bytes(w, truncate(value, *max_len))?;
            }
            Piece::Protocol => return write_opt(w, facts.protocol),
            Piece::ResponseCode => match facts.response_code {
                Some(code) => write!(w, "{code}")?,
                None => return Ok(false),
            },
            Piece::ResponseFlags => {
                w.write_str(if facts.response_flags.is_empty() { "-" } else { facts.response_flags })?
            }
            Piece::BytesReceived => write!(w, "{}", facts.bytes_received)?,
            Piece::BytesSent => write!(w, "{}", facts.bytes_sent)?,
            Piece::Duration => match facts.duration {
                Some(duration) => write!(w, "{}", duration.as_millis())?,
                None => return Ok(false),
            },
            Piece::Address(of, part) => {
                let addr = match of {
                    AddrOf::DownstreamLocal => facts.downstream_local,
                    AddrOf::DownstreamRemote => facts.downstream_remote,
                    AddrOf::UpstreamHost => facts.upstream_host,
                    AddrOf::UpstreamLocal => facts.upstream_local,
                };
                let Some(addr) = addr else { return Ok(false) };
                // SocketAddr's Display is Envoy's: brackets around IPv6 only before a port.
                match part {
                    AddrPart::WithPort => write!(w, "{addr}")?,
                    AddrPart::Ip => write!(w, "{}", addr.ip())?,
                    AddrPart::Port => write!(w, "{}", addr.port())?,
                }
            }
            Piece::UpstreamCluster => return write_opt(w, facts.upstream_cluster.filter(|c| !c.is_empty())),
            Piece::UpstreamTransportFailureReason => {
                let Some(reason) = facts.upstream_transport_failure_reason.filter(|r| !r.is_empty()) else {
                    return Ok(false);
                };
                for (i, part) in reason.split(' ').enumerate() {
                    if i > 0 {
                        w.write_char('_')?;
                    }
                    w.write_str(part)?;
                }
            }
            Piece::RequestedServerName => {
                let Some(sni) = facts.requested_server_name.filter(|s| !s.is_empty()) else {
                    return Ok(false);
                };
                write_sni(w, sni)?;
            }
            Piece::Hostname => return write_opt(w, facts.hostname),
            Piece::ConnectionTerminationDetails => return write_opt(w, facts.connection_termination_details),
        }
        Ok(true)
    }

    /// Writes the value as a typed JSON value (the value of a json_format key that is exactly
    /// this operator).
    fn write_json(&self, facts: &Facts<'_>, out: &mut String) -> fmt::Result {
        let number = matches!(
            self,
            Piece::ResponseCode
                | Piece::BytesReceived
                | Piece::BytesSent
                | Piece::Duration
                | Piece::Address(_, AddrPart::Port)
        );
        if number {
            if !self.write(facts, out)? {
                out.push_str("null");
            }
            return Ok(());
        }
        let mark = out.len();
        out.push('"');
        if self.write(facts, &mut JsonEscaped(out))? {
            out.push('"');
        } else {
            out.truncate(mark);
            out.push_str("null");
        }
        Ok(())
    }
}

fn write_opt<W: Write>(w: &mut W, value: Option<&str>) -> Result<bool, fmt::Error> {
    match value {
        Some(value) => w.write_str(value).map(|()| true),
        None => Ok(false),
    }
}

/// Envoy's SNI sanitizing: a name with anything but letters, digits, '.' and '-' is logged as
/// "invalid:" and the name with each such byte as '_', so a hostile SNI cannot forge log fields.
fn write_sni<W: Write>(w: &mut W, sni: &str) -> fmt::Result {
    let clean = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
    if sni.bytes().all(clean) {
        return w.write_str(sni);
    }
    w.write_str("invalid:")?;
    for b in sni.bytes() {
        w.write_char(if clean(b) { char::from(b) } else { '_' })?;
    }
    Ok(())
}

/// Cuts a header value to `max_len` bytes (Envoy's `:N`), backing off to a character boundary
/// since a String cannot hold half a UTF-8 character.
fn truncate(value: &[u8], max_len: Option<usize>) -> &[u8] {
    let Some(mut end) = max_len.filter(|&max| max < value.len()) else { return value };
    while end > 0 && value[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    &value[..end]
}

/// Header values are bytes; bytes that are not UTF-8 (obs-text) render as U+FFFD.
fn write_bytes<W: Write>(w: &mut W, bytes: &[u8]) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        w.write_str(chunk.valid())?;
        if !chunk.invalid().is_empty() {
            w.write_char(char::REPLACEMENT_CHARACTER)?;
        }
    }
    Ok(())
}

/// Appends what is written to it as the inside of a JSON string.
struct JsonEscaped<'a>(&'a mut String);

impl Write for JsonEscaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut from = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.push_str(&s[from..i]);
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.push_str(escape);
            }
            from = i + 1;
        }
        self.0.push_str(&s[from..]);
        Ok(())
    }
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    // Infallible: JsonEscaped only appends to a String.
    let _ = JsonEscaped(out).write_str(s);
    out.push('"');
}

/// Serializes a json_format object at config load: constant JSON accumulates in `raw`, and
/// each operator-bearing value closes it into a part.
struct JsonBuilder {
    raw: String,
    parts: Vec<JsonPart>,
}

impl JsonBuilder {
    fn object(
        &mut self,
        fields: &serde_json::Map<String, serde_json::Value>,
        path: &str,
    ) -> Result<(), String> {
        let mut keys: Vec<&String> = fields.keys().collect();
        keys.sort();
        self.raw.push('{');
        for (i, key) in keys.into_iter().enumerate() {
            if i > 0 {
                self.raw.push(',');
            }
            push_json_string(&mut self.raw, key);
            self.raw.push(':');
            let path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            self.value(&fields[key], &path)?;
        }
        self.raw.push('}');
        Ok(())
    }

    fn value(&mut self, value: &serde_json::Value, path: &str) -> Result<(), String> {
        use serde_json::Value;
        match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => {
                // Infallible: writing into a String.
                let _ = write!(self.raw, "{value}");
            }
            Value::String(source) if !source.contains('%') => push_json_string(&mut self.raw, source),
            Value::String(source) => {
                let mut pieces = parse(source).map_err(|e| format!("{path}: {e}"))?;
                let part = match pieces.as_slice() {
                    [Piece::Literal(text)] => {
                        push_json_string(&mut self.raw, text);
                        return Ok(());
                    }
                    [_] => JsonPart::Typed(pieces.remove(0)),
                    _ => JsonPart::String(pieces),
                };
                self.parts.push(JsonPart::Raw(std::mem::take(&mut self.raw)));
                self.parts.push(part);
            }
            Value::Array(values) => {
                self.raw.push('[');
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        self.raw.push(',');
                    }
                    self.value(value, &format!("{path}[{i}]"))?;
                }
                self.raw.push(']');
            }
            Value::Object(fields) => self.object(fields, path)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    struct Headers(Vec<(&'static str, &'static [u8])>);

    impl HeaderSource for Headers {
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        }
    }

    /// 2016-04-15T20:17:00.310123456Z, the instant in Envoy's own example line.
    fn start() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_460_751_420, 310_123_456)
    }

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
    }

    fn request() -> Headers {
        Headers(vec![
            (":method", b"POST"),
            (":path", b"/api/v1/locations"),
            (":authority", b"locations"),
            ("x-forwarded-for", b"10.0.35.28"),
            ("user-agent", b"nsq2http"),
            ("x-request-id", b"cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2"),
            ("x-empty", b""),
            ("x-utf8", "héllo".as_bytes()),
            ("x-latin1", b"caf\xe9!"),
        ])
    }

    fn response() -> Headers {
        Headers(vec![("x-envoy-upstream-service-time", b"100"), ("content-type", b"text/plain")])
    }

    fn full<'a>(req: &'a Headers, resp: &'a Headers) -> Facts<'a> {
        Facts {
            start: Some(start()),
            duration: Some(Duration::from_micros(226_999)),
            downstream_local: Some(v4([10, 0, 0, 1], 10000)),
            downstream_remote: Some(v4([192, 168, 1, 7], 54321)),
            requested_server_name: Some("api.example.com"),
            hostname: Some("proxy-1"),
            request: Some(req),
            response: Some(resp),
            trailers: None,
            protocol: Some("HTTP/2"),
            response_code: Some(204),
            response_flags: "",
            bytes_received: 154,
            bytes_sent: 0,
            upstream_host: Some(v4([10, 0, 2, 1], 80)),
            upstream_local: Some(v4([10, 0, 0, 1], 40000)),
            upstream_cluster: Some("locations"),
            upstream_transport_failure_reason: None,
            connection_termination_details: None,
        }
    }

    fn render(format: &Format, facts: &Facts<'_>) -> String {
        let mut out = String::new();
        format.render(facts, &mut out);
        out
    }

    fn text(source: &str, facts: &Facts<'_>) -> String {
        render(&Format::text(source).unwrap(), facts)
    }

    fn error(source: &str) -> String {
        Format::text(source).unwrap_err()
    }

    #[test]
    fn default_format_renders_envoys_example_line() {
        let (req, resp) = (request(), response());
        assert_eq!(
            render(&Format::envoy_default(), &full(&req, &resp)),
            "[2016-04-15T20:17:00.310Z] \"POST /api/v1/locations HTTP/2\" 204 - 154 0 226 100 \
             \"10.0.35.28\" \"nsq2http\" \"cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2\" \"locations\" \
             \"10.0.2.1:80\"\n"
        );
    }

    #[test]
    fn default_format_with_no_facts_is_dashes() {
        assert_eq!(
            render(&Format::envoy_default(), &Facts::default()),
            "[-] \"- - -\" - - 0 0 - - \"-\" \"-\" \"-\" \"-\" \"-\"\n"
        );
    }

    #[test]
    fn literal_text_and_escaped_percent_pass_through() {
        let facts = Facts::default();
        assert_eq!(text("plain text, no operators", &facts), "plain text, no operators");
        assert_eq!(text("100%% sure %%PROTOCOL%%", &facts), "100% sure %PROTOCOL%");
        assert_eq!(text("", &facts), "");
        assert_eq!(Format::text("a%%b").unwrap(), Format::text("a%%b").unwrap());
        assert_ne!(Format::text("a%%b").unwrap(), Format::text("a%%c").unwrap());
    }

    #[test]
    fn stream_operators() {
        let (req, resp) = (request(), response());
        let facts = full(&req, &resp);
        assert_eq!(text("%PROTOCOL%", &facts), "HTTP/2");
        assert_eq!(text("%RESPONSE_CODE%", &facts), "204");
        assert_eq!(text("%BYTES_RECEIVED%/%BYTES_SENT%", &facts), "154/0");
        assert_eq!(text("%DURATION%", &facts), "226");
        assert_eq!(text("%UPSTREAM_CLUSTER%", &facts), "locations");
        assert_eq!(text("%REQUESTED_SERVER_NAME%", &facts), "api.example.com");
        assert_eq!(text("%HOSTNAME%", &facts), "proxy-1");
        assert_eq!(text("%RESPONSE_FLAGS%", &facts), "-");
        let flagged = Facts { response_flags: "UF,URX", ..Facts::default() };
        assert_eq!(text("%RESPONSE_FLAGS%", &flagged), "UF,URX");
        let no_response = Facts { response_code: Some(0), ..Facts::default() };
        assert_eq!(text("%RESPONSE_CODE%", &no_response), "0");
    }

    #[test]
    fn absent_facts_render_a_dash() {
        let facts = Facts { upstream_cluster: Some(""), requested_server_name: Some(""), ..Facts::default() };
        for op in [
            "PROTOCOL",
            "RESPONSE_CODE",
            "DURATION",
            "START_TIME",
            "UPSTREAM_HOST",
            "UPSTREAM_LOCAL_ADDRESS",
            "DOWNSTREAM_LOCAL_PORT",
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
            "UPSTREAM_CLUSTER",
            "UPSTREAM_TRANSPORT_FAILURE_REASON",
            "REQUESTED_SERVER_NAME",
            "HOSTNAME",
            "CONNECTION_TERMINATION_DETAILS",
        ] {
            assert_eq!(text(&format!("<%{op}%>"), &facts), "<->", "{op}");
        }
        assert_eq!(text("%REQ(:path)% %RESP(server)% %TRAILER(grpc-status)%", &facts), "- - -");
    }

    #[test]
    fn connection_operators() {
        let facts = Facts {
            upstream_transport_failure_reason: Some("TLS error: 268435581:SSL routines"),
            connection_termination_details: Some("max connection duration reached"),
            requested_server_name: Some("evil host\n"),
            ..Facts::default()
        };
        assert_eq!(text("%UPSTREAM_TRANSPORT_FAILURE_REASON%", &facts), "TLS_error:_268435581:SSL_routines");
        assert_eq!(text("%CONNECTION_TERMINATION_DETAILS%", &facts), "max connection duration reached");
        assert_eq!(text("%REQUESTED_SERVER_NAME%", &facts), "invalid:evil_host_");
    }

    #[test]
    fn addresses_render_as_envoy_does() {
        let facts = Facts {
            downstream_local: Some(v4([10, 0, 0, 1], 10000)),
            downstream_remote: Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 80)),
            upstream_host: Some("[2001:db8::5]:8443".parse().unwrap()),
            upstream_local: Some(v4([10, 0, 0, 1], 40000)),
            ..Facts::default()
        };
        let cases = [
            ("DOWNSTREAM_LOCAL_ADDRESS", "10.0.0.1:10000"),
            ("DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", "10.0.0.1"),
            ("DOWNSTREAM_LOCAL_PORT", "10000"),
            ("DOWNSTREAM_DIRECT_LOCAL_ADDRESS", "10.0.0.1:10000"),
            ("DOWNSTREAM_REMOTE_ADDRESS", "[::1]:80"),
            ("DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", "::1"),
            ("DOWNSTREAM_REMOTE_PORT", "80"),
            ("DOWNSTREAM_DIRECT_REMOTE_ADDRESS", "[::1]:80"),
            ("DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT", "::1"),
            ("DOWNSTREAM_DIRECT_REMOTE_PORT", "80"),
            ("UPSTREAM_HOST", "[2001:db8::5]:8443"),
            ("UPSTREAM_REMOTE_ADDRESS", "[2001:db8::5]:8443"),
            ("UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", "2001:db8::5"),
            ("UPSTREAM_REMOTE_PORT", "8443"),
            ("UPSTREAM_LOCAL_ADDRESS", "10.0.0.1:40000"),
            ("UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", "10.0.0.1"),
            ("UPSTREAM_LOCAL_PORT", "40000"),
        ];
        for (op, want) in cases {
            assert_eq!(text(&format!("%{op}%"), &facts), want, "{op}");
        }
    }

    #[test]
    fn headers_fallback_and_case() {
        let (req, resp) = (request(), response());
        let facts = full(&req, &resp);
        assert_eq!(text("%REQ(:METHOD)% %REQ(User-Agent)%", &facts), "POST nsq2http");
        assert_eq!(text("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", &facts), "/api/v1/locations");
        assert_eq!(text("%REQ(:AUTHORITY?:PATH)%", &facts), "locations");
        assert_eq!(text("%REQ(X-MISSING?X-ALSO-MISSING)%", &facts), "-");
        assert_eq!(text("[%REQ(X-EMPTY)%]", &facts), "[]");
        assert_eq!(text("%RESP(CONTENT-TYPE)%", &facts), "text/plain");
        assert_eq!(text("%RESP(:path)%", &facts), "-");
        assert_eq!(text("%REQ(X-LATIN1)%", &facts), "caf\u{FFFD}!");
        let trailers = Headers(vec![("grpc-status", b"0")]);
        let facts = Facts { trailers: Some(&trailers), ..Facts::default() };
        assert_eq!(text("%TRAILER(GRPC-STATUS)%", &facts), "0");
    }

    #[test]
    fn max_length_truncates_header_values() {
        let (req, resp) = (request(), response());
        let facts = full(&req, &resp);
        assert_eq!(text("%REQ(USER-AGENT):3%", &facts), "nsq");
        assert_eq!(text("%REQ(USER-AGENT):100%", &facts), "nsq2http");
        assert_eq!(text("%REQ(USER-AGENT):0%", &facts), "");
        assert_eq!(text("%REQ(X-MISSING?:PATH):4%", &facts), "/api");
        // "héllo": 'é' is bytes 1..3; a cut inside it keeps only what precedes it.
        assert_eq!(text("%REQ(X-UTF8):2%", &facts), "h");
        assert_eq!(text("%REQ(X-UTF8):3%", &facts), "hé");
        assert_eq!(text("%REQ(USER-AGENT):99999999999999999999999%", &facts), "nsq2http");
    }

    #[test]
    fn start_time_formats() {
        let facts = Facts { start: Some(start()), ..Facts::default() };
        assert_eq!(text("%START_TIME%", &facts), "2016-04-15T20:17:00.310Z");
        assert_eq!(text("%START_TIME()%", &facts), "2016-04-15T20:17:00.310Z");
        assert_eq!(text("%START_TIME(%s.%3f)%", &facts), "1460751420.310");
        assert_eq!(text("%START_TIME(%s.%6f)%", &facts), "1460751420.310123");
        assert_eq!(text("%START_TIME(%s.%9f)%", &facts), "1460751420.310123456");
        assert_eq!(text("%START_TIME(%f %1f %2f %4f %8f)%", &facts), "310123456 3 31 3101 31012345");
        assert_eq!(
            text("%START_TIME(%Y/%m/%dT%H:%M:%S%z %s)%", &facts),
            "2016/04/15T20:17:00+0000 1460751420"
        );
        assert_eq!(text("%START_TIME(%a %b %e %Z %:z (%j) %%f)%", &facts), "Fri Apr 15 UTC +00:00 (106) %f");
        let before = Facts { start: Some(UNIX_EPOCH - Duration::from_millis(1)), ..Facts::default() };
        assert_eq!(text("%START_TIME%", &before), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn parse_errors_name_the_problem() {
        assert_eq!(error("%FOO%"), "unknown command operator %FOO%");
        assert_eq!(error("x %REQ% y"), "%REQ% needs a header name");
        assert_eq!(error("%RESP()%"), "%RESP% needs a header name");
        assert_eq!(error("%PROTOCOL(x)%"), "%PROTOCOL% takes no parameters or length");
        assert_eq!(error("%DURATION:3%"), "%DURATION% takes no parameters or length");
        assert_eq!(error("%START_TIME:3%"), "%START_TIME% does not take a length");
        assert_eq!(error("%REQ(a?b?c)%"), "%REQ(a?b?c)% takes at most one fallback header");
        assert_eq!(error("%REQ(bad name)%"), "%REQ(bad name)%: invalid header name \"bad name\"");
        assert_eq!(error("%REQ(USER-AGENT"), "unterminated command operator %REQ... at byte 0");
        assert_eq!(error("ab %PROTOCOL"), "unterminated command operator %PROTOCOL... at byte 3");
        assert_eq!(error("%REQ(x):y%"), "unterminated command operator %REQ... at byte 0");
        assert!(error("%START_TIME(%Q)%").contains("unsupported time format"));
        assert!(error("%START_TIME(%+)%").contains("unsupported time format"));
        assert!(error("%START_TIME(%Y%n)%").contains("newline"));
    }

    #[test]
    fn lone_percent_is_an_error_as_in_envoy() {
        let lone = "'%' at byte 2 starts no command operator (a literal '%' is written %%)";
        assert_eq!(error("50% off"), lone);
        assert_eq!(error("ab%"), lone);
        assert_eq!(error("ab%req(x)%"), lone);
    }

    #[test]
    fn operator_argument_ends_at_the_first_workable_paren() {
        let facts = Facts { start: Some(start()), ..Facts::default() };
        assert_eq!(text("%START_TIME((%H) %M)%:%PROTOCOL%", &facts), "(20) 17:-");
    }

    fn json(value: serde_json::Value) -> Format {
        let serde_json::Value::Object(fields) = value else { panic!("not an object") };
        Format::json(&fields).unwrap()
    }

    #[test]
    fn json_typed_values() {
        let (req, resp) = (request(), response());
        let format = json(serde_json::json!({
            "status": "%RESPONSE_CODE%",
            "bytes": {"in": "%BYTES_RECEIVED%", "out": "%BYTES_SENT%"},
            "ms": "%DURATION%",
            "port": "%DOWNSTREAM_REMOTE_PORT%",
            "method": "%REQ(:METHOD)%",
            "ua": "%REQ(USER-AGENT):3%",
            "missing": "%REQ(X-MISSING)%",
            "flags": "%RESPONSE_FLAGS%",
            "line": "%REQ(:METHOD)% %REQ(X-MISSING)% %RESPONSE_CODE%",
            "const": "v1",
            "percent": "100%%",
            "n": 7,
            "on": true,
            "list": ["%PROTOCOL%", 1.5, null],
            "time": "%START_TIME%",
        }));
        assert_eq!(
            render(&format, &full(&req, &resp)),
            "{\"bytes\":{\"in\":154,\"out\":0},\"const\":\"v1\",\"flags\":\"-\",\
             \"line\":\"POST - 204\",\"list\":[\"HTTP/2\",1.5,null],\"method\":\"POST\",\
             \"missing\":null,\"ms\":226,\"n\":7,\"on\":true,\"percent\":\"100%\",\"port\":54321,\
             \"status\":204,\"time\":\"2016-04-15T20:17:00.310Z\",\"ua\":\"nsq\"}\n"
        );
        assert_eq!(
            render(&format, &Facts::default()),
            "{\"bytes\":{\"in\":0,\"out\":0},\"const\":\"v1\",\"flags\":\"-\",\
             \"line\":\"- - -\",\"list\":[null,1.5,null],\"method\":null,\
             \"missing\":null,\"ms\":null,\"n\":7,\"on\":true,\"percent\":\"100%\",\"port\":null,\
             \"status\":null,\"time\":null,\"ua\":null}\n"
        );
    }

    #[test]
    fn json_escapes_strings() {
        let req = Headers(vec![("x-q", b"say \"hi\"\\\n\x01")]);
        let facts = Facts { request: Some(&req), ..Facts::default() };
        let format = json(serde_json::json!({"a\"b": "%REQ(X-Q)%", "m": "<%REQ(X-Q)%>", "c": "tab\there"}));
        assert_eq!(
            render(&format, &facts),
            "{\"a\\\"b\":\"say \\\"hi\\\"\\\\\\n\\u0001\",\"c\":\"tab\\there\",\
             \"m\":\"<say \\\"hi\\\"\\\\\\n\\u0001>\"}\n"
        );
    }

    #[test]
    fn json_errors_name_the_key() {
        let serde_json::Value::Object(fields) = serde_json::json!({"outer": {"inner": "%NOPE%"}}) else {
            unreachable!()
        };
        assert_eq!(Format::json(&fields).unwrap_err(), "outer.inner: unknown command operator %NOPE%");
    }
}
