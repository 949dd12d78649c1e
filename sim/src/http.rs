//! The peers' own HTTP/1.1 reader: heads through `httparse`, bodies (content-length,
//! chunked, until close) by a small decoder written here, independent of the core's codec.

/// One parsed head: the request line or status line, and the fields (names lower-cased).
#[derive(Clone, Debug, Default)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn get_u64(&self, name: &str) -> Option<u64> {
        self.get_str(name).and_then(|v| v.trim().parse().ok())
    }

    /// Whether a comma-separated field holds `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers.iter().filter(|(n, _)| n == name).any(|(_, v)| {
            std::str::from_utf8(v)
                .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    }
}

/// What a reader produced.
#[derive(Debug)]
pub enum Event {
    Head(Head),
    Body(Vec<u8>),
    /// The message is complete.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

#[derive(Debug)]
enum State {
    Head,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    /// After a 101 or a CONNECT 2xx: no longer HTTP.
    Raw,
    Failed,
}

/// An incremental reader of requests (`is_response == false`) or responses.
#[derive(Debug)]
pub struct Reader {
    is_response: bool,
    buf: Vec<u8>,
    state: State,
    /// Methods of requests whose responses are still to come (responses only).
    pub methods: std::collections::VecDeque<String>,
    /// Bytes consumed into events so far: the offset just past the last head or body piece.
    pub consumed: u64,
}

impl Reader {
    pub fn requests() -> Reader {
        Reader {
            is_response: false,
            buf: Vec::new(),
            state: State::Head,
            methods: Default::default(),
            consumed: 0,
        }
    }

    pub fn responses() -> Reader {
        Reader {
            is_response: true,
            buf: Vec::new(),
            state: State::Head,
            methods: Default::default(),
            consumed: 0,
        }
    }

    /// Switches to raw bytes (after a 101 or a CONNECT's 200): the rest is returned by
    /// [`Reader::take_raw`].
    pub fn go_raw(&mut self) {
        self.state = State::Raw;
    }

    pub fn is_raw(&self) -> bool {
        matches!(self.state, State::Raw)
    }

    /// Bytes read past the last message while raw.
    pub fn take_raw(&mut self) -> Vec<u8> {
        self.consumed += self.buf.len() as u64;
        std::mem::take(&mut self.buf)
    }

    /// Between messages with nothing buffered.
    pub fn idle(&self) -> bool {
        matches!(self.state, State::Head) && self.buf.is_empty()
    }

    pub fn in_body(&self) -> bool {
        matches!(self.state, State::Length(_) | State::Chunked(_) | State::UntilClose)
    }

    pub fn failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    /// Feeds bytes; returns the events they complete, or an error description.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Event>) -> Result<(), String> {
        self.buf.extend_from_slice(data);
        self.run(out)
    }

    /// The peer closed: ends a read-until-close body; an error if a message was cut short.
    pub fn eof(&mut self, out: &mut Vec<Event>) -> Result<(), String> {
        match self.state {
            State::UntilClose => {
                self.state = State::Head;
                out.push(Event::End);
                Ok(())
            }
            State::Head if self.buf.is_empty() => Ok(()),
            State::Raw | State::Failed => Ok(()),
            _ => Err(format!("message cut short by EOF in state {:?}", self.state)),
        }
    }

    fn run(&mut self, out: &mut Vec<Event>) -> Result<(), String> {
        loop {
            match &mut self.state {
                State::Raw | State::Failed => return Ok(()),
                State::Head => {
                    if self.buf.is_empty() {
                        return Ok(());
                    }
                    let Some((head, len, body)) = self.parse_head()? else { return Ok(()) };
                    self.buf.drain(..len);
                    self.consumed += len as u64;
                    let interim = self.is_response && (100..200).contains(&head.status) && head.status != 101;
                    // After a 101, a CONNECT's 2xx, or an upgrade or CONNECT request, the
                    // connection stops being HTTP (a refused upgrade's connection just ends).
                    let switch = if self.is_response {
                        head.status == 101
                            || (self.methods.front().is_some_and(|m| m == "CONNECT")
                                && (200..300).contains(&head.status))
                    } else {
                        head.method == "CONNECT"
                            || (head.has_token("connection", "upgrade") && head.get("upgrade").is_some())
                    };
                    out.push(Event::Head(head));
                    if interim {
                        continue;
                    }
                    if self.is_response {
                        self.methods.pop_front();
                    }
                    self.state = match body {
                        Body::None if switch => {
                            out.push(Event::End);
                            State::Raw
                        }
                        Body::None => {
                            out.push(Event::End);
                            State::Head
                        }
                        Body::Length(n) => State::Length(n),
                        Body::Chunked => State::Chunked(Chunk::Size),
                        Body::UntilClose => State::UntilClose,
                    };
                }
                State::Length(left) => {
                    let take = (*left).min(self.buf.len() as u64) as usize;
                    if take > 0 {
                        out.push(Event::Body(self.buf.drain(..take).collect()));
                        *left -= take as u64;
                        self.consumed += take as u64;
                    }
                    if *left > 0 {
                        return Ok(());
                    }
                    self.state = State::Head;
                    out.push(Event::End);
                }
                State::UntilClose => {
                    if !self.buf.is_empty() {
                        self.consumed += self.buf.len() as u64;
                        out.push(Event::Body(std::mem::take(&mut self.buf)));
                    }
                    return Ok(());
                }
                State::Chunked(chunk) => match chunk {
                    Chunk::Size => {
                        let Some(line) = take_line(&mut self.buf) else {
                            return self.limit_line();
                        };
                        self.consumed += line.len() as u64 + 2;
                        let hex = line.split(|b| *b == b';').next().unwrap_or_default();
                        let hex = std::str::from_utf8(hex).map_err(|_| "chunk size not UTF-8")?.trim();
                        let size =
                            u64::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {hex:?}"))?;
                        *chunk = if size == 0 { Chunk::Trailers } else { Chunk::Data(size) };
                    }
                    Chunk::Data(left) => {
                        let take = (*left).min(self.buf.len() as u64) as usize;
                        if take > 0 {
                            out.push(Event::Body(self.buf.drain(..take).collect()));
                            *left -= take as u64;
                            self.consumed += take as u64;
                        }
                        if *left > 0 {
                            return Ok(());
                        }
                        *chunk = Chunk::DataEnd;
                    }
                    Chunk::DataEnd => {
                        if self.buf.len() < 2 {
                            return Ok(());
                        }
                        if &self.buf[..2] != b"\r\n" {
                            self.state = State::Failed;
                            return Err("chunk data not followed by CRLF".into());
                        }
                        self.buf.drain(..2);
                        self.consumed += 2;
                        *chunk = Chunk::Size;
                    }
                    Chunk::Trailers => {
                        let Some(line) = take_line(&mut self.buf) else {
                            return self.limit_line();
                        };
                        self.consumed += line.len() as u64 + 2;
                        if line.is_empty() {
                            self.state = State::Head;
                            out.push(Event::End);
                        }
                    }
                },
            }
        }
    }

    fn limit_line(&mut self) -> Result<(), String> {
        if self.buf.len() > 4096 {
            self.state = State::Failed;
            return Err("chunk line too long".into());
        }
        Ok(())
    }

    fn parse_head(&mut self) -> Result<Option<(Head, usize, Body)>, String> {
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut head = Head::default();
        let len = if self.is_response {
            let mut r = httparse::Response::new(&mut fields);
            match r.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    head.status = r.code.unwrap_or(0);
                    head.headers = collect(r.headers);
                    len
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => {
                    self.state = State::Failed;
                    return Err(format!("bad response head: {e}: {:?}", preview(&self.buf)));
                }
            }
        } else {
            let mut r = httparse::Request::new(&mut fields);
            match r.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    head.method = r.method.unwrap_or_default().to_string();
                    head.target = r.path.unwrap_or_default().to_string();
                    head.headers = collect(r.headers);
                    len
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => {
                    self.state = State::Failed;
                    return Err(format!("bad request head: {e}: {:?}", preview(&self.buf)));
                }
            }
        };
        let body = self.framing(&head)?;
        Ok(Some((head, len, body)))
    }

    fn framing(&self, head: &Head) -> Result<Body, String> {
        if self.is_response {
            let method = self.methods.front().map(String::as_str).unwrap_or("GET");
            if (100..200).contains(&head.status)
                || head.status == 204
                || head.status == 304
                || method == "HEAD"
            {
                return Ok(Body::None);
            }
            if method == "CONNECT" && (200..300).contains(&head.status) {
                return Ok(Body::None);
            }
        }
        if head.get("transfer-encoding").is_some() {
            if !head.has_token("transfer-encoding", "chunked") {
                return Err("transfer-encoding without chunked".into());
            }
            return Ok(Body::Chunked);
        }
        let lengths: Vec<&[u8]> =
            head.headers.iter().filter(|(n, _)| n == "content-length").map(|(_, v)| v.as_slice()).collect();
        if let Some(first) = lengths.first() {
            if lengths.iter().any(|l| l != first) {
                return Err("differing content-length fields".into());
            }
            let n = head.get_u64("content-length").ok_or("bad content-length")?;
            return Ok(if n == 0 { Body::None } else { Body::Length(n) });
        }
        Ok(if self.is_response { Body::UntilClose } else { Body::None })
    }
}

fn collect(fields: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    fields.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect()
}

fn take_line(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let at = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = buf[..at].to_vec();
    buf.drain(..at + 2);
    Some(line)
}

/// The first bytes of `data`, printable.
pub fn preview(data: &[u8]) -> String {
    let cut = &data[..data.len().min(80)];
    let mut s = String::new();
    for &b in cut {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push('.'),
        }
    }
    if data.len() > cut.len() {
        s.push_str(&format!("...(+{})", data.len() - cut.len()));
    }
    s
}

/// Frames `data` as one chunk.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(reader: &mut Reader, input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for b in input {
            reader.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        out.iter()
            .map(|e| match e {
                Event::Head(h) => format!("head {}{}", h.status, h.method),
                Event::Body(b) => String::from_utf8_lossy(b).into_owned(),
                Event::End => "end".into(),
            })
            .collect()
    }

    #[test]
    fn chunked_and_interim_responses() {
        let mut r = Reader::responses();
        r.methods.push_back("GET".into());
        let got = all(&mut r, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nt: 1\r\n\r\n");
        assert_eq!(got, ["head 100", "head 200", "a", "b", "c", "end"]);
        assert!(r.idle());
    }

    #[test]
    fn requests_with_length_and_until_close_responses() {
        let mut r = Reader::requests();
        let got = all(&mut r, b"POST /x HTTP/1.1\r\ncontent-length: 2\r\n\r\nhiGET / HTTP/1.1\r\n\r\n");
        assert_eq!(got, ["head 0POST", "h", "i", "end", "head 0GET", "end"]);
        let mut r = Reader::responses();
        let mut out = Vec::new();
        r.feed(b"HTTP/1.1 200 OK\r\n\r\nbody", &mut out).unwrap();
        assert!(r.eof(&mut out).is_ok());
        assert!(matches!(out.last(), Some(Event::End)));
    }
}
