//! Incremental body decoding and chunked encoding, without copying payload bytes.
//!
//! The decoder takes the connection's read buffer as `Bytes` and hands payload back as slices of
//! it (`split_to`), skipping framing bytes in place (`advance`); it never buffers, so any split of
//! the input into reads yields the same payload. The encoder frames a payload `Bytes` with two
//! small pieces around it rather than copying it into an output buffer.

use std::mem;

use bytes::{Buf, Bytes};

use super::error::HeadError;
use super::framing::BodyKind;

/// Longest chunk-size line accepted, extensions included: real clients send a few bytes, and
/// an unbounded line would be unbounded work with nothing to show for it.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Most trailer-section bytes accepted. Trailers are discarded, so this only bounds the work.
pub const MAX_TRAILER_BYTES: usize = 64 * 1024;

/// One step of decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Payload bytes, a slice of the input; call again for more.
    Data(Bytes),
    /// The input is used up and the body is not over.
    NeedMore,
    /// The body is complete (trailers skipped). Whatever is left in the input belongs to the
    /// next message.
    End,
}

/// Decodes one body of a known [`BodyKind`]. Feed it the read buffer until it answers
/// [`Decoded::NeedMore`] or [`Decoded::End`]; a `Tunnel` or `UntilClose` body never ends here (the
/// connection's close ends it). Errors are sticky.
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    state: State,
}

#[derive(Clone, Debug)]
enum State {
    /// Bytes still expected of a content-length body (never 0).
    Remaining(u64),
    Chunked(Chunked),
    /// Everything is payload.
    Raw,
    Done,
    Failed,
}

impl BodyDecoder {
    pub fn new(kind: BodyKind) -> BodyDecoder {
        let state = match kind {
            BodyKind::Empty | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Remaining(n),
            BodyKind::Chunked => State::Chunked(Chunked::default()),
            BodyKind::Tunnel | BodyKind::UntilClose => State::Raw,
        };
        BodyDecoder { state }
    }

    /// Whether only the connection's close can end this body (`Tunnel`, `UntilClose`).
    pub fn ends_at_close(&self) -> bool {
        matches!(self.state, State::Raw)
    }

    /// Takes the next piece of the body off the front of `input`.
    pub fn decode(&mut self, input: &mut Bytes) -> Result<Decoded, HeadError> {
        match &mut self.state {
            State::Done => Ok(Decoded::End),
            State::Failed => Err(HeadError::InvalidChunk),
            State::Raw if input.is_empty() => Ok(Decoded::NeedMore),
            State::Raw => Ok(Decoded::Data(mem::take(input))),
            State::Remaining(_) if input.is_empty() => Ok(Decoded::NeedMore),
            State::Remaining(left) => {
                let n = (*left).min(input.len() as u64);
                *left -= n;
                if *left == 0 {
                    self.state = State::Done;
                }
                Ok(Decoded::Data(input.split_to(n as usize)))
            }
            State::Chunked(chunked) => {
                let step = chunked.decode(input);
                match step {
                    Ok(Decoded::End) => self.state = State::Done,
                    Err(_) => self.state = State::Failed,
                    Ok(_) => {}
                }
                step
            }
        }
    }
}

/// Where the chunked decoder is between payload runs (RFC 9112 §7.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Frame {
    /// The first digit of a chunk size.
    #[default]
    SizeStart,
    Size,
    /// Whitespace after the size (tolerated before `;` or CRLF, as BWS).
    SizeWs,
    /// A chunk extension, skipped.
    Ext,
    SizeLf,
    /// After a chunk's payload.
    DataCr,
    DataLf,
    /// The start of a trailer line, or of the final CRLF.
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
}

#[derive(Clone, Debug, Default)]
struct Chunked {
    frame: Frame,
    /// Payload bytes left in the current chunk; while non-zero, input is payload.
    data_left: u64,
    /// The chunk size being read.
    size: u64,
    /// Bytes of the current size line, or of the trailer section.
    seen: usize,
}

enum Flow {
    More,
    Data,
    End,
}

impl Chunked {
    fn decode(&mut self, input: &mut Bytes) -> Result<Decoded, HeadError> {
        loop {
            if self.data_left > 0 {
                if input.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = self.data_left.min(input.len() as u64);
                self.data_left -= n;
                return Ok(Decoded::Data(input.split_to(n as usize)));
            }
            let mut used = 0;
            let mut flow = Flow::More;
            for &b in input.iter() {
                used += 1;
                flow = self.step(b)?;
                if !matches!(flow, Flow::More) {
                    break;
                }
            }
            input.advance(used);
            match flow {
                Flow::More => return Ok(Decoded::NeedMore),
                Flow::End => return Ok(Decoded::End),
                Flow::Data => {}
            }
        }
    }

    /// Consumes one framing byte.
    fn step(&mut self, b: u8) -> Result<Flow, HeadError> {
        const BAD: Result<Flow, HeadError> = Err(HeadError::InvalidChunk);
        self.seen += 1;
        let limit = match self.frame {
            Frame::TrailerStart | Frame::Trailer | Frame::TrailerLf | Frame::EndLf => MAX_TRAILER_BYTES,
            _ => MAX_CHUNK_LINE,
        };
        if self.seen > limit {
            return BAD;
        }
        self.frame = match (self.frame, b) {
            (Frame::SizeStart, _) => match hex(b) {
                Some(digit) => {
                    self.size = digit;
                    Frame::Size
                }
                None => return BAD,
            },
            (Frame::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                let digit = hex(b).unwrap_or_default();
                match self.size.checked_mul(16).and_then(|s| s.checked_add(digit)) {
                    Some(size) => self.size = size,
                    None => return BAD,
                }
                Frame::Size
            }
            (Frame::Size | Frame::SizeWs, b' ' | b'\t') => Frame::SizeWs,
            (Frame::Size | Frame::SizeWs, b';') => Frame::Ext,
            (Frame::Size | Frame::SizeWs | Frame::Ext, b'\r') => Frame::SizeLf,
            (Frame::Ext, b'\t' | b' '..=b'~' | 0x80..) => Frame::Ext,
            (Frame::SizeLf, b'\n') if self.size == 0 => {
                self.seen = 0;
                Frame::TrailerStart
            }
            (Frame::SizeLf, b'\n') => {
                self.data_left = self.size;
                self.seen = 0;
                self.frame = Frame::DataCr;
                return Ok(Flow::Data);
            }
            (Frame::DataCr, b'\r') => Frame::DataLf,
            (Frame::DataLf, b'\n') => {
                self.seen = 0;
                Frame::SizeStart
            }
            (Frame::TrailerStart, b'\r') => Frame::EndLf,
            (Frame::TrailerStart | Frame::Trailer, b'\n') => return BAD,
            (Frame::Trailer, b'\r') => Frame::TrailerLf,
            (Frame::TrailerStart | Frame::Trailer, _) => Frame::Trailer,
            (Frame::TrailerLf, b'\n') => Frame::TrailerStart,
            (Frame::EndLf, b'\n') => return Ok(Flow::End),
            _ => return BAD,
        };
        Ok(Flow::More)
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// Frames `data` as one chunk: a size line, `data` itself (not copied), CRLF. Empty data
/// produces nothing, since a zero-size chunk would end the body.
pub fn encode_chunk(data: Bytes, out: &mut impl Extend<Bytes>) {
    if data.is_empty() {
        return;
    }
    let len = data.len() as u64;
    let digits = (64 - len.leading_zeros() as usize).div_ceil(4);
    let mut line = [0u8; 18];
    for (i, slot) in line[..digits].iter_mut().enumerate() {
        *slot = b"0123456789abcdef"[(len >> (4 * (digits - 1 - i)) & 0xf) as usize];
    }
    line[digits..digits + 2].copy_from_slice(b"\r\n");
    out.extend([Bytes::copy_from_slice(&line[..digits + 2]), data, Bytes::from_static(b"\r\n")]);
}

/// The last chunk with an empty trailer section: ends a chunked body.
pub fn last_chunk() -> Bytes {
    Bytes::from_static(b"0\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes all of `input` in one piece: the payload, how it ended, and what is left.
    fn run(kind: BodyKind, input: &[u8]) -> (Vec<u8>, Result<Decoded, HeadError>, Bytes) {
        let mut decoder = BodyDecoder::new(kind);
        let mut input = Bytes::copy_from_slice(input);
        let mut payload = Vec::new();
        loop {
            match decoder.decode(&mut input) {
                Ok(Decoded::Data(data)) => payload.extend_from_slice(&data),
                other => return (payload, other, input),
            }
        }
    }

    fn chunked(input: &[u8]) -> (Vec<u8>, Result<Decoded, HeadError>) {
        let (payload, end, _) = run(BodyKind::Chunked, input);
        (payload, end)
    }

    #[test]
    fn empty_ends_at_once() {
        assert_eq!(run(BodyKind::Empty, b"GET"), (vec![], Ok(Decoded::End), Bytes::from_static(b"GET")));
    }

    #[test]
    fn length_takes_exactly_its_bytes() {
        assert_eq!(
            run(BodyKind::Length(3), b"abcdef"),
            (b"abc".to_vec(), Ok(Decoded::End), Bytes::from_static(b"def"))
        );
    }

    #[test]
    fn length_waits_for_more() {
        assert_eq!(run(BodyKind::Length(10), b"abc"), (b"abc".to_vec(), Ok(Decoded::NeedMore), Bytes::new()));
    }

    #[test]
    fn raw_passes_everything() {
        assert_eq!(
            run(BodyKind::Tunnel, b"\x00\x01 anything"),
            (b"\x00\x01 anything".to_vec(), Ok(Decoded::NeedMore), Bytes::new())
        );
    }

    #[test]
    fn data_is_a_slice_of_the_input() {
        let input = Bytes::from_static(b"5\r\nhello\r\n0\r\n\r\n");
        let mut rest = input.clone();
        let Ok(Decoded::Data(data)) = BodyDecoder::new(BodyKind::Chunked).decode(&mut rest) else {
            panic!("expected data");
        };
        assert_eq!(data.as_ptr(), input[3..].as_ptr());
    }

    #[test]
    fn chunked_simple() {
        assert_eq!(
            chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            (b"hello world".to_vec(), Ok(Decoded::End))
        );
    }

    #[test]
    fn chunked_leaves_the_next_message() {
        assert_eq!(run(BodyKind::Chunked, b"1\r\na\r\n0\r\n\r\nGET").2, Bytes::from_static(b"GET"));
    }

    #[test]
    fn chunked_hex_any_case_and_leading_zeros() {
        assert_eq!(chunked(b"000A\r\n0123456789\r\n0\r\n\r\n").0, b"0123456789");
    }

    #[test]
    fn chunked_extensions_are_skipped() {
        assert_eq!(chunked(b"3 ;a=b;c=\"d e\"\r\nabc\r\n0;x\r\n\r\n"), (b"abc".to_vec(), Ok(Decoded::End)));
    }

    #[test]
    fn chunked_trailers_are_skipped() {
        assert_eq!(
            chunked(b"3\r\nabc\r\n0\r\nx-a: 1\r\nx-b: 2\r\n\r\nrest"),
            (b"abc".to_vec(), Ok(Decoded::End))
        );
    }

    #[test]
    fn chunked_waits_mid_size_line() {
        assert_eq!(chunked(b"3\r\nabc\r\n1"), (b"abc".to_vec(), Ok(Decoded::NeedMore)));
    }

    #[test]
    fn chunked_needs_a_size() {
        assert_eq!(chunked(b"\r\nabc\r\n").1, Err(HeadError::InvalidChunk));
    }

    #[test]
    fn chunked_refuses_a_sign() {
        assert_eq!(chunked(b"-1\r\n").1, Err(HeadError::InvalidChunk));
    }

    #[test]
    fn chunked_refuses_garbage_after_size() {
        assert_eq!(chunked(b"3x\r\nabc\r\n").1, Err(HeadError::InvalidChunk));
    }

    #[test]
    fn chunked_refuses_bare_lf_after_size() {
        assert_eq!(chunked(b"3\nabc\r\n0\r\n\r\n").1, Err(HeadError::InvalidChunk));
    }

    #[test]
    fn chunked_refuses_missing_crlf_after_data() {
        assert_eq!(chunked(b"3\r\nabcd\r\n0\r\n\r\n"), (b"abc".to_vec(), Err(HeadError::InvalidChunk)));
    }

    #[test]
    fn chunked_refuses_bare_lf_in_trailers() {
        assert_eq!(chunked(b"0\r\nx: 1\n\r\n").1, Err(HeadError::InvalidChunk));
    }

    #[test]
    fn chunked_refuses_control_bytes_in_extensions() {
        assert_eq!(chunked(b"3;\x00\r\nabc\r\n").1, Err(HeadError::InvalidChunk));
    }

    #[test]
    fn chunked_size_overflow_is_refused() {
        assert_eq!(chunked(b"10000000000000000\r\n").1, Err(HeadError::InvalidChunk));
    }

    #[test]
    fn chunked_max_size_is_accepted() {
        assert_eq!(chunked(b"ffffffffffffffff\r\nab").1, Ok(Decoded::NeedMore));
    }

    #[test]
    fn chunked_size_line_is_bounded() {
        let mut input = b"1;".to_vec();
        input.resize(MAX_CHUNK_LINE + 1, b'a');
        assert_eq!(chunked(&input).1, Err(HeadError::InvalidChunk));
    }

    #[test]
    fn chunked_size_line_at_the_bound_is_accepted() {
        let mut input = b"1;".to_vec();
        input.resize(MAX_CHUNK_LINE - 2, b'a');
        input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(chunked(&input), (b"x".to_vec(), Ok(Decoded::End)));
    }

    #[test]
    fn chunked_trailers_are_bounded() {
        let mut input = b"0\r\nx: ".to_vec();
        input.resize(MAX_TRAILER_BYTES + 10, b'a');
        assert_eq!(chunked(&input).1, Err(HeadError::InvalidChunk));
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = BodyDecoder::new(BodyKind::Chunked);
        assert!(decoder.decode(&mut Bytes::from_static(b"x")).is_err());
        assert_eq!(decoder.decode(&mut Bytes::from_static(b"0\r\n\r\n")), Err(HeadError::InvalidChunk));
    }

    fn encoded(data: &'static [u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        encode_chunk(Bytes::from_static(data), &mut out);
        out
    }

    #[test]
    fn encode_frames_without_copying() {
        let data = Bytes::from_static(b"hello");
        let mut out = Vec::new();
        encode_chunk(data.clone(), &mut out);
        assert_eq!(out, [&b"5\r\n"[..], b"hello", b"\r\n"]);
        assert_eq!(out[1].as_ptr(), data.as_ptr());
    }

    #[test]
    fn encode_sizes_in_lowercase_hex() {
        assert_eq!(encoded(&[0; 0x1ab])[0], &b"1ab\r\n"[..]);
    }

    #[test]
    fn encode_skips_empty_data() {
        assert!(encoded(b"").is_empty());
    }

    #[test]
    fn last_chunk_bytes() {
        assert_eq!(last_chunk(), &b"0\r\n\r\n"[..]);
    }
}
