//! The body of the `request_parser` fuzz target, shared with the stable
//! test that drives it in CI (`guest/proto/tests/fuzz_request_path.rs`):
//! arbitrary bytes through the agent's request path, the capped line
//! framer (in chunks whose size the input chooses), the request parser,
//! and the typed parameter decoding of every method. Checks the framer's
//! bound and that every accepted request re-encodes to an equal request.

use lobster_agent_proto::methods::*;
use lobster_agent_proto::{encode_line, parse_request, LineFramer, Method, Request};

const LIMIT: usize = 4096;

fn decode_params<M: Method>(req: &Request) {
    let params = if req.params.is_null() {
        serde_json::json!({})
    } else {
        req.params.clone()
    };
    let _ = serde_json::from_value::<M::Params>(params);
}

fn check(line: &[u8]) {
    let Ok(req) = parse_request(line) else { return };
    let encoded = encode_line(&req).expect("an accepted request re-encodes");
    let again = parse_request(&encoded[..encoded.len() - 1]).expect("re-encoded request parses");
    assert_eq!(again, req);
    decode_params::<Hello>(&req);
    decode_params::<InjectSecrets>(&req);
    decode_params::<Configure>(&req);
    decode_params::<Stop>(&req);
    decode_params::<LogsTail>(&req);
    decode_params::<HoldAcquire>(&req);
    decode_params::<HoldRelease>(&req);
    decode_params::<SetTime>(&req);
    decode_params::<Shutdown>(&req);
}

/// Feeds `data` through the request path; panics on a broken invariant.
pub fn run(data: &[u8]) {
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut framer = LineFramer::new(LIMIT);
    'feed: for piece in data.chunks(chunk) {
        framer.push(piece);
        loop {
            match framer.next_line() {
                Ok(Some(line)) => {
                    assert!(line.len() <= LIMIT);
                    check(&line);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
        assert!(framer.buffered() <= LIMIT + chunk);
    }
    check(data);
}
