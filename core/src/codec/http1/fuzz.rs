//! The codec's fuzz entry point, shared by the cargo-fuzz target and the corpus replay test.

use bytes::{Bytes, BytesMut};

use super::body::{BodyDecoder, Decoded};
use super::error::HeadError;
use super::framing::request_body;
use super::parse::{parse_request_head, Limits};
use super::write::write_request_head;
use super::{RequestHead, Version};

/// Limits small enough that a fuzzer reaches them.
const LIMITS: Limits = Limits { max_head_bytes: 4096, max_headers: 32, accept_http_10: true };

/// Fuzz entry point (`fuzz/fuzz_targets/http1_request_head.rs`): treats `data` as the bytes a
/// client sent and runs the whole request path of the codec over them, head parsing, framing and
/// body decoding of the rest, asserting its invariants. It panics only on a codec bug:
///
/// - parsing is split-independent: a prefix of `data` parses to "incomplete" or to the same
///   result as all of it; refusing HTTP/1.0 changes nothing but HTTP/1.0 heads;
/// - a parsed head, written back out, parses to the same head (as HTTP/1.1);
/// - body decoding yields the same payload, end and consumed length whether the rest arrives in
///   one read or two, and the payload is always a slice of the input, never a copy.
pub fn fuzz_request_head(data: &[u8]) {
    let whole = parse_request_head(data, &LIMITS);
    let split = data.first().map_or(0, |&b| b as usize * 17) % (data.len() + 1);
    let prefix = parse_request_head(&data[..split], &LIMITS);
    assert!(prefix == Ok(None) || prefix == whole, "prefix {split}: {prefix:?} vs {whole:?}");

    let strict = parse_request_head(data, &Limits { accept_http_10: false, ..LIMITS });
    match &whole {
        Ok(Some((head, _))) if head.version == Version::Http10 => {
            assert_eq!(strict, Err(HeadError::Http10NotAllowed))
        }
        _ => assert_eq!(strict, whole),
    }

    let Ok(Some((head, consumed))) = whole else {
        return;
    };
    assert!(consumed <= data.len().min(LIMITS.max_head_bytes));
    check_rewrite(&head);
    if let Ok(kind) = request_body(&head) {
        let rest = Bytes::copy_from_slice(&data[consumed..]);
        let at = rest.len() / 2;
        let one = decode(BodyDecoder::new(kind), std::slice::from_ref(&rest));
        let two = decode(BodyDecoder::new(kind), &[rest.slice(..at), rest.slice(at..)]);
        assert_eq!(one, two, "{kind:?} split at {at}");
    }
}

fn check_rewrite(head: &RequestHead) {
    let mut out = BytesMut::new();
    write_request_head(&head.method, &head.target, &head.headers, &mut out);
    let limits = Limits { max_head_bytes: usize::MAX, max_headers: head.headers.len(), accept_http_10: true };
    let (again, len) = match parse_request_head(&out, &limits) {
        Ok(Some(parsed)) => parsed,
        other => panic!("rewritten head {out:?} parsed to {other:?}"),
    };
    assert_eq!(len, out.len());
    assert_eq!(again, RequestHead { version: Version::Http11, ..head.clone() });
}

/// Payload, how decoding stopped, and input bytes consumed (when it stopped cleanly).
type Outcome = (Vec<u8>, Result<Decoded, HeadError>, Option<usize>);

fn decode(mut decoder: BodyDecoder, pieces: &[Bytes]) -> Outcome {
    let total: usize = pieces.iter().map(Bytes::len).sum();
    let mut payload = Vec::new();
    let mut unread = total;
    for piece in pieces {
        let range = piece.as_ptr_range();
        let mut input = piece.clone();
        let end = loop {
            match decoder.decode(&mut input) {
                Ok(Decoded::Data(data)) => {
                    assert!(data.is_empty() || range.contains(&data.as_ptr()), "payload was copied");
                    payload.extend_from_slice(&data);
                }
                end => break end,
            }
        };
        unread -= piece.len() - input.len();
        match end {
            Ok(Decoded::NeedMore) => assert!(input.is_empty(), "input left while asking for more"),
            Ok(Decoded::End) => return (payload, end, Some(total - unread)),
            _ => return (payload, end, None),
        }
    }
    (payload, Ok(Decoded::NeedMore), Some(total - unread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_chunked_request() {
        fuzz_request_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    }

    #[test]
    fn runs_on_garbage() {
        fuzz_request_head(b"\xff\x00\r\n\r\n");
    }
}
