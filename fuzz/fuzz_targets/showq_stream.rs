//! showq attribute stream: arbitrary bytes in arbitrary pieces, with small
//! limits so every limit is reachable. The message count returned equals the
//! messages handed to the callback, and no message breaks the limits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postfix_agentx::sources::queue::showq::{parse_showq_stream, ShowqLimits};

#[path = "chunked.rs"]
#[allow(dead_code)] // each target uses part of it
mod chunked;

fuzz_target!(|input: &[u8]| {
    let (seed, data) = chunked::seed_and_data(input);
    let limits = ShowqLimits {
        max_string: 256,
        max_record: 2048,
        max_stream: 16 * 1024,
    };
    let mut seen = 0u64;
    let result = parse_showq_stream(
        chunked::ChunkedReader::new(data, seed, false),
        limits,
        |m| {
            seen += 1;
            assert!(m.queue_id.len() <= limits.max_string);
        },
    );
    if let Ok(count) = result {
        assert_eq!(count, seen);
    }
});
