//! Log lines: every line of arbitrary bytes goes through the parser and the
//! counters (the parser's bit-mask path agreeing with its search path, the
//! reject-reason search with its byte loop), and
//! the LineReader splits the same bytes, handed out in arbitrary pieces with
//! "nothing more yet" pauses, into exactly the lines a plain split on '\n'
//! gives (cut at MAX_KEPT_LINE), with consistent offsets, one at a time and
//! with `for_each_line`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postfix_agentx::sources::log::prefix::{parse_line, parse_line_searching};
use postfix_agentx::sources::log::reject::{reject_reason, reject_reason_bytewise};
use postfix_agentx::sources::log::reader::MAX_KEPT_LINE;
use postfix_agentx::sources::log::{LineReader, LogAccumulator};

#[path = "chunked.rs"]
#[allow(dead_code)] // each target uses part of it
mod chunked;

fuzz_target!(|input: &[u8]| {
    let (seed, data) = chunked::seed_and_data(input);
    // Seeds ending in binary 0111 repeat the data so lines longer than
    // MAX_KEPT_LINE (64 KiB) are reachable with small fuzz inputs; rarely,
    // because a 200 KB input costs as much as a hundred small ones.
    let amplified;
    let data: &[u8] = if seed & 0xf == 0x7 && !data.is_empty() {
        amplified = data.repeat(200_000 / data.len() + 1);
        &amplified
    } else {
        data
    };

    // Reference: a plain split. A small queue-id capacity exercises eviction.
    let names = vec!["postfix-out".to_string()];
    let mut reference = LogAccumulator::with_capacity(&names, 8);
    let mut expected_lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let tail = expected_lines.pop().unwrap_or(&[]);
    let extra: Vec<Vec<u8>> = names.iter().map(|n| n.as_bytes().to_vec()).collect();
    for line in &expected_lines {
        let line = &line[..line.len().min(MAX_KEPT_LINE)];
        assert_eq!(parse_line(line, &extra), parse_line_searching(line, &extra));
        assert_eq!(reject_reason(line), reject_reason_bytewise(line));
        reference.ingest_line(line);
    }

    let mut via_reader = LogAccumulator::with_capacity(&names, 8);
    let source = chunked::ChunkedReader::new(data, seed, true);
    let done = source.done_flag();
    let mut reader = LineReader::new(source);
    let mut n = 0usize;
    let mut end_of_line = 0u64;
    loop {
        match reader.next_line() {
            Ok(Some(line)) => {
                let expected = expected_lines[n];
                assert_eq!(line, &expected[..expected.len().min(MAX_KEPT_LINE)]);
                via_reader.ingest_line(line);
                end_of_line += expected.len() as u64 + 1;
                assert_eq!(reader.consumed_bytes(), end_of_line);
                n += 1;
            }
            Ok(None) => {
                // A pause or the real end: a follower calls again later.
                if done.get() {
                    break;
                }
            }
            Err(e) => panic!("in-memory read failed: {e}"),
        }
    }
    assert_eq!(n, expected_lines.len());
    assert_eq!(
        reader.consumed_bytes() + reader.pending_bytes(),
        data.len() as u64
    );
    assert_eq!(reader.pending_bytes(), tail.len() as u64);
    let kept = &tail[..tail.len().min(MAX_KEPT_LINE)];
    assert_eq!(reader.partial_line(), kept);
    assert_eq!(via_reader.counters, reference.counters);
    // The partial last line counts like any other (what `parse` does).
    via_reader.ingest_line(reader.partial_line());

    // The batch loop `parse` uses: the same lines in the same order.
    let mut batched = LogAccumulator::with_capacity(&names, 8);
    let source = chunked::ChunkedReader::new(data, seed, true);
    let done = source.done_flag();
    let mut reader = LineReader::new(source);
    let mut n = 0usize;
    loop {
        let result = reader.for_each_line(|line| {
            let expected = expected_lines[n];
            assert_eq!(line, &expected[..expected.len().min(MAX_KEPT_LINE)]);
            batched.ingest_line(line);
            n += 1;
        });
        if let Err(e) = result {
            panic!("in-memory read failed: {e}");
        }
        if done.get() {
            break;
        }
    }
    assert_eq!(n, expected_lines.len());
    assert_eq!(reader.consumed_bytes(), data.len() as u64 - tail.len() as u64);
    assert_eq!(batched.counters, reference.counters);
});
