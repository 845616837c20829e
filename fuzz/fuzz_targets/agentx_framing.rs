//! AgentX framing: `read_frame` over a stream handed out in arbitrary pieces
//! must return exactly the header and payload bytes that are in the stream,
//! in order, stop cleanly at a frame boundary, and reject (not allocate for)
//! a payload length above the cap.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postfix_agentx::agentx::codec::{read_frame, FrameError, Header, HEADER_LEN};
use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};

#[path = "chunked.rs"]
#[allow(dead_code)] // each target uses part of it
mod chunked;

/// Never pending: every read completes at once (possibly short).
struct AsyncChunks<'a>(chunked::ChunkedReader<'a>);

impl AsyncRead for AsyncChunks<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut tmp = vec![0u8; buf.remaining()];
        let n = self.0.read(&mut tmp)?;
        buf.put_slice(&tmp[..n]);
        Poll::Ready(Ok(()))
    }
}

/// A small cap so the too-large path is reached often.
const CAP: u32 = 4096;

fuzz_target!(|input: &[u8]| {
    let (seed, data) = chunked::seed_and_data(input);
    // No pauses: on a socket a zero-length read is end of stream.
    let mut reader = AsyncChunks(chunked::ChunkedReader::new(data, seed, false));
    let mut offset = 0usize;
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let mut fut = std::pin::pin!(read_frame(&mut reader, CAP));
        let Poll::Ready(result) = fut.as_mut().poll(&mut cx) else {
            panic!("read_frame pending on a reader that is always ready");
        };
        match result {
            Ok(Some((header, payload))) => {
                let expected = Header::decode(&data[offset..]).expect("a whole header was read");
                assert_eq!(header, expected);
                assert!(header.payload_length <= CAP);
                assert_eq!(payload.len(), header.payload_length as usize);
                let start = offset + HEADER_LEN;
                assert_eq!(&payload[..], &data[start..start + payload.len()]);
                offset = start + payload.len();
            }
            Ok(None) => {
                assert_eq!(offset, data.len(), "clean end only at a frame boundary");
                break;
            }
            Err(FrameError::TooLarge { length, limit }) => {
                assert!(length > limit);
                let header = Header::decode(&data[offset..]).expect("a whole header was read");
                assert_eq!(header.payload_length, length);
                break;
            }
            Err(FrameError::UnexpectedEof(_)) => {
                let remaining = data.len() - offset;
                let short_header = remaining < HEADER_LEN;
                let short_payload = !short_header
                    && Header::decode(&data[offset..])
                        .is_ok_and(|h| remaining - HEADER_LEN < h.payload_length as usize);
                assert!(remaining > 0 && (short_header || short_payload));
                break;
            }
            Err(FrameError::Io(e)) => panic!("in-memory read failed: {e}"),
        }
    }
});
