//! AgentX PDU decoding. Even first byte: the rest is decoded as a frame,
//! fully arbitrary. Odd first byte: a valid header (version 1, a real PDU
//! type, the fuzzer's flags and ids, the correct payload length) is built in
//! front of an arbitrary payload, which is how a master's PDU looks once the
//! framing has accepted it. Whatever decodes must survive an encode/decode
//! round trip unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postfix_agentx::agentx::codec::{Pdu, HEADER_LEN};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let frame: Vec<u8>;
    let frame: &[u8] = if mode & 1 == 0 {
        rest
    } else {
        if rest.len() < 2 {
            return;
        }
        let (pdu_type, flags, payload) = (rest[0] % 18 + 1, rest[1], &rest[2..]);
        let big_endian = flags & 0x10 != 0;
        let mut f = Vec::with_capacity(HEADER_LEN + payload.len());
        f.extend_from_slice(&[1, pdu_type, flags, 0]);
        let len = payload.len() as u32;
        for v in [mode as u32, 7, 0x0102_0304, len] {
            f.extend_from_slice(&if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            });
        }
        f.extend_from_slice(payload);
        frame = f;
        &frame
    };
    let Ok(pdu) = Pdu::decode(frame) else {
        return;
    };
    let encoded = pdu.encode().expect("a decoded PDU re-encodes");
    let again = Pdu::decode(&encoded).expect("an encoded PDU decodes");
    assert_eq!(again.payload, pdu.payload);
    assert_eq!(again.context, pdu.context);
    assert_eq!(
        (
            again.header.session_id,
            again.header.transaction_id,
            again.header.packet_id
        ),
        (
            pdu.header.session_id,
            pdu.header.transaction_id,
            pdu.header.packet_id
        )
    );
});
