//! Split-independence of the HTTP/1.1 codec: however the peer's bytes are cut into reads, the
//! head parser and the body decoders produce exactly what they produce on the whole input.

use burrow_core::http1::{
    encode_chunk, last_chunk, parse_request_head, BodyDecoder, BodyKind, Decoded, HeadError, Limits, Method,
    RequestHead, Version,
};
use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

type Parsed = Result<Option<(RequestHead, usize)>, HeadError>;

/// Feeds `input` in pieces cut at `cuts` into a growing buffer, parsing after each piece until
/// the parser answers something other than "incomplete" (as a connection does).
fn parse_incrementally(input: &[u8], cuts: &[usize], limits: &Limits) -> Parsed {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    let mut buf = Vec::new();
    let mut fed = 0;
    for cut in cuts {
        buf.extend_from_slice(&input[fed..cut]);
        fed = cut;
        match parse_request_head(&buf, limits) {
            Ok(None) => continue,
            done => return done,
        }
    }
    Ok(None)
}

fn limits() -> Limits {
    Limits { accept_http_10: true, ..Limits::default() }
}

/// A valid request head.
/// Wire bytes, then the method, target, version and fields they should parse to.
type ValidHead = (Vec<u8>, Method, Vec<u8>, Version, Vec<(String, String)>);

fn valid_head() -> impl Strategy<Value = ValidHead> {
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("CONNECT".to_string()),
        "[A-Z]{1,10}",
    ];
    let target = "/[a-zA-Z0-9/?=&%._~-]{0,40}";
    let version = prop_oneof![Just(Version::Http10), Just(Version::Http11)];
    let field = ("[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,20}", "[!-~]([ -~]{0,30}[!-~])?");
    let fields = vec(field, 0..20);
    let leading = vec(prop_oneof![Just("\r\n"), Just("\n")], 0..3);
    (leading, method, target, version, fields).prop_map(|(leading, method, target, version, fields)| {
        let mut wire = leading.concat().into_bytes();
        let v = if version == Version::Http10 { "1.0" } else { "1.1" };
        wire.extend_from_slice(format!("{method} {target} HTTP/{v}\r\n").as_bytes());
        for (name, value) in &fields {
            wire.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        (wire, Method::from_token(&method), target.into_bytes(), version, fields)
    })
}

/// Named `http1::*` so that `cargo test http1` selects them.
mod http1 {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn valid_heads_parse_the_same_under_any_split(
            (wire, method, target, version, fields) in valid_head(),
            body in vec(any::<u8>(), 0..64),
            cuts in vec(any::<usize>(), 0..8),
        ) {
            let mut input = wire.clone();
            input.extend_from_slice(&body);
            let whole = parse_request_head(&input, &limits());
            let (head, consumed) = whole.clone().unwrap().unwrap();
            prop_assert_eq!(consumed, wire.len());
            prop_assert_eq!(&head.method, &method);
            prop_assert_eq!(&head.target[..], &target[..]);
            prop_assert_eq!(head.version, version);
            let expected: Vec<(Vec<u8>, Vec<u8>)> = fields
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase().into_bytes(), v.clone().into_bytes()))
                .collect();
            let got: Vec<(Vec<u8>, Vec<u8>)> = head.headers.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
            prop_assert_eq!(got, expected);
            prop_assert_eq!(parse_incrementally(&input, &cuts, &limits()), whole);
        }

        #[test]
        fn arbitrary_bytes_parse_the_same_under_any_split(
            input in vec(any::<u8>(), 0..512),
            cuts in vec(any::<usize>(), 0..8),
            max_head_bytes in 1usize..600,
            max_headers in 0usize..8,
        ) {
            let limits = Limits { max_head_bytes, max_headers, accept_http_10: true };
            let whole = parse_request_head(&input, &limits);
            prop_assert_eq!(parse_incrementally(&input, &cuts, &limits), whole);
        }

        #[test]
        fn mangled_heads_parse_the_same_under_any_split(
            (wire, ..) in valid_head(),
            edits in vec((any::<usize>(), any::<u8>()), 1..4),
            cuts in vec(any::<usize>(), 0..8),
            max_head_bytes in 1usize..1200,
        ) {
            let mut input = wire;
            for (at, byte) in edits {
                let at = at % input.len();
                input[at] = byte;
            }
            let limits = Limits { max_head_bytes, max_headers: 10, accept_http_10: false };
            let whole = parse_request_head(&input, &limits);
            prop_assert_eq!(parse_incrementally(&input, &cuts, &limits), whole);
        }

        #[test]
        fn chunked_round_trip_under_any_split(
            chunks in vec(vec(any::<u8>(), 0..300), 0..12),
            next in vec(any::<u8>(), 0..16),
            cuts in vec(any::<usize>(), 0..16),
        ) {
            let mut frames = Vec::new();
            for chunk in &chunks {
                encode_chunk(Bytes::copy_from_slice(chunk), &mut frames);
            }
            frames.push(last_chunk());
            let mut wire = frames.concat();
            wire.extend_from_slice(&next);
            let (payload, end, rest) = decode_split(BodyKind::Chunked, &wire, &cuts);
            prop_assert_eq!(payload, chunks.concat());
            prop_assert_eq!(end, Ok(Decoded::End));
            prop_assert_eq!(rest, next);
        }

        #[test]
        fn chunked_with_extensions_and_trailers_under_any_split(
            chunks in vec((vec(any::<u8>(), 1..200), any::<bool>(), 0usize..3, "(;[a-z]{1,5}(=[a-z0-9\"]{0,6})?){0,2}"), 0..8),
            trailers in vec("[a-z-]{1,10}: [ -~]{0,20}", 0..3),
            next in vec(any::<u8>(), 0..16),
            cuts in vec(any::<usize>(), 0..16),
        ) {
            let mut wire = Vec::new();
            for (data, upper, zeros, ext) in &chunks {
                let size = if *upper { format!("{:X}", data.len()) } else { format!("{:x}", data.len()) };
                wire.extend_from_slice(format!("{}{size}{ext}\r\n", "0".repeat(*zeros)).as_bytes());
                wire.extend_from_slice(data);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0;last\r\n");
            for trailer in &trailers {
                wire.extend_from_slice(format!("{trailer}\r\n").as_bytes());
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(&next);
            let (payload, end, rest) = decode_split(BodyKind::Chunked, &wire, &cuts);
            let expected: Vec<u8> = chunks.iter().flat_map(|(data, ..)| data.clone()).collect();
            prop_assert_eq!(payload, expected);
            prop_assert_eq!(end, Ok(Decoded::End));
            prop_assert_eq!(rest, next);
        }

        #[test]
        fn chunked_garbage_decodes_the_same_under_any_split(
            wire in vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'5'), Just(b';'), any::<u8>()], 0..200),
            cuts in vec(any::<usize>(), 0..16),
        ) {
            prop_assert_eq!(decode_split(BodyKind::Chunked, &wire, &cuts), decode_split(BodyKind::Chunked, &wire, &[]));
        }

        #[test]
        fn content_length_under_any_split(
            body in vec(any::<u8>(), 0..600),
            length in 0u64..700,
            cuts in vec(any::<usize>(), 0..16),
        ) {
            let kind = if length == 0 { BodyKind::Empty } else { BodyKind::Length(length) };
            let (payload, end, rest) = decode_split(kind, &body, &cuts);
            let taken = (length as usize).min(body.len());
            prop_assert_eq!(&payload[..], &body[..taken]);
            prop_assert_eq!(&rest[..], &body[taken..]);
            let expected = if taken as u64 == length { Ok(Decoded::End) } else { Ok(Decoded::NeedMore) };
            prop_assert_eq!(end, expected);
        }
    }
}

/// Decodes `wire` delivered in reads cut at `cuts`: payload, how decoding stopped, and the
/// bytes left unread after the body ended.
fn decode_split(
    kind: BodyKind,
    wire: &[u8],
    cuts: &[usize],
) -> (Vec<u8>, Result<Decoded, HeadError>, Vec<u8>) {
    let wire = Bytes::copy_from_slice(wire);
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    cuts.push(wire.len());
    cuts.sort_unstable();
    let mut decoder = BodyDecoder::new(kind);
    let mut payload = Vec::new();
    let mut from = 0;
    for cut in cuts {
        let mut input = wire.slice(from..cut);
        from = cut;
        loop {
            match decoder.decode(&mut input) {
                Ok(Decoded::Data(data)) => {
                    assert!(wire.as_ptr_range().contains(&data.as_ptr()), "payload copied");
                    payload.extend_from_slice(&data);
                }
                Ok(Decoded::NeedMore) => {
                    assert!(input.is_empty());
                    break;
                }
                Ok(Decoded::End) => {
                    let mut rest = input.to_vec();
                    rest.extend_from_slice(&wire[from..]);
                    return (payload, Ok(Decoded::End), rest);
                }
                Err(e) => return (payload, Err(e), Vec::new()),
            }
        }
    }
    (payload, Ok(Decoded::NeedMore), Vec::new())
}
