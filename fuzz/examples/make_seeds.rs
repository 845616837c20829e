//! Writes the seed corpora in fuzz/corpus/: AgentX PDUs produced by our own
//! encoder (the requests snmpd sends us and the responses we send back),
//! Postfix log lines from the test fixture, a showq stream in the Postfix 3.x
//! attribute format, and the packaged example configuration.
//!
//! Run from fuzz/: `cargo run --example make_seeds`

use postfix_agentx::agentx::codec::{
    CloseReason, ErrorStatus, GetBulk, Open, Payload, Pdu, Register, Response, SearchRange,
};
use postfix_agentx::snmp::{Oid, Value, VarBind};
use std::fs;
use std::path::Path;

fn oid(s: &str) -> Oid {
    Oid::parse(s).expect("valid OID literal")
}

fn range(start: &str, end: &str) -> SearchRange {
    SearchRange {
        start: oid(start),
        include: false,
        end: if end.is_empty() {
            Oid(vec![])
        } else {
            oid(end)
        },
    }
}

fn pdus() -> Vec<(&'static str, Pdu)> {
    let root = "1.3.6.1.4.1.99999.25";
    let vbs = vec![
        VarBind {
            name: oid(&format!("{root}.1.1.0")),
            value: Value::Counter64(123_456),
        },
        VarBind {
            name: oid(&format!("{root}.1.2.0")),
            value: Value::Gauge32(17),
        },
        VarBind {
            name: oid(&format!("{root}.2.1.2.1")),
            value: Value::string("active"),
        },
        VarBind {
            name: oid(&format!("{root}.9.1.3.1")),
            value: Value::Integer(-1),
        },
        VarBind {
            name: oid(&format!("{root}.9.1.4.1")),
            value: Value::TimeTicks(4200),
        },
        VarBind {
            name: oid("1.3.6.1.2.1.1.2.0"),
            value: Value::ObjectIdentifier(oid(root)),
        },
        VarBind {
            name: oid(&format!("{root}.3")),
            value: Value::IpAddress([127, 0, 0, 1]),
        },
        VarBind {
            name: oid(&format!("{root}.4")),
            value: Value::NoSuchObject,
        },
        VarBind {
            name: oid(&format!("{root}.5")),
            value: Value::EndOfMibView,
        },
    ];
    vec![
        (
            "open",
            Pdu::new(
                Payload::Open(Open {
                    timeout: 5,
                    id: oid(root),
                    descr: b"postfix-agentx".to_vec(),
                }),
                0,
                0,
                1,
            ),
        ),
        (
            "register",
            Pdu::new(
                Payload::Register(Register {
                    timeout: 0,
                    priority: 127,
                    range_subid: 0,
                    subtree: oid(root),
                    upper_bound: None,
                }),
                42,
                0,
                2,
            ),
        ),
        (
            "register_range",
            Pdu::new(
                Payload::Register(Register {
                    timeout: 0,
                    priority: 127,
                    range_subid: 9,
                    subtree: oid(&format!("{root}.1")),
                    upper_bound: Some(7),
                }),
                42,
                0,
                3,
            ),
        ),
        (
            "get",
            Pdu::new(
                Payload::Get(vec![range(&format!("{root}.1.1.0"), "")]),
                42,
                10,
                4,
            ),
        ),
        (
            "getnext",
            Pdu::new(
                Payload::GetNext(vec![
                    range(root, &format!("{root}.99")),
                    range(&format!("{root}.2"), ""),
                ]),
                42,
                11,
                5,
            ),
        ),
        (
            "getbulk",
            Pdu::new(
                Payload::GetBulk(GetBulk {
                    non_repeaters: 0,
                    max_repetitions: 10,
                    ranges: vec![range(root, "")],
                }),
                42,
                12,
                6,
            ),
        ),
        (
            "testset",
            Pdu::new(Payload::TestSet(vbs[..2].to_vec()), 42, 13, 7),
        ),
        ("commitset", Pdu::new(Payload::CommitSet, 42, 13, 8)),
        ("ping", Pdu::new(Payload::Ping, 42, 0, 9)),
        ("notify", Pdu::new(Payload::Notify(vbs.clone()), 42, 0, 10)),
        (
            "response",
            Pdu::new(
                Payload::Response(Response {
                    sys_uptime: 0,
                    error: ErrorStatus::NoError,
                    index: 0,
                    varbinds: vbs.clone(),
                }),
                42,
                12,
                6,
            ),
        ),
        (
            "response_error",
            Pdu::new(
                Payload::Response(Response {
                    sys_uptime: 0,
                    error: ErrorStatus::NotWritable,
                    index: 1,
                    varbinds: vbs[..1].to_vec(),
                }),
                42,
                13,
                7,
            ),
        ),
        (
            "close",
            Pdu::new(Payload::Close(CloseReason::Shutdown), 42, 0, 11),
        ),
        (
            "addagentcaps",
            Pdu::new(
                Payload::AddAgentCaps {
                    id: oid(root),
                    descr: b"caps".to_vec(),
                },
                42,
                0,
                12,
            ),
        ),
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create corpus directory");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let corpus = Path::new("corpus");
    let seed = 0x1234_5678_9abc_def0u64.to_le_bytes(); // low bits not 0111: no amplification

    // agentx_pdu: mode 0 + whole frame; mode 1 + type, flags, payload.
    // agentx_framing: chunking seed + several frames back to back.
    let mut stream = seed.to_vec();
    for (name, mut pdu) in pdus() {
        let frame = pdu.encode().expect("encode seed PDU");
        let mut whole = vec![0u8];
        whole.extend_from_slice(&frame);
        write(&corpus.join("agentx_pdu"), &format!("{name}"), &whole);
        let mut built = vec![1u8, frame[1] - 1, frame[2]];
        built.extend_from_slice(&frame[20..]);
        write(
            &corpus.join("agentx_pdu"),
            &format!("{name}_payload"),
            &built,
        );
        stream.extend_from_slice(&frame);
        if name == "getnext" {
            // Also with a non-default context, as a master may send.
            pdu.context = Some(b"ctx".to_vec());
            let mut ctx = vec![0u8];
            ctx.extend_from_slice(&pdu.encode().expect("encode seed PDU"));
            write(&corpus.join("agentx_pdu"), "getnext_context", &ctx);
        }
    }
    write(&corpus.join("agentx_framing"), "session", &stream);

    // log_line: the fixture in pieces of 32 lines, and one amplified line.
    let fixture = fs::read("../tests/fixtures/postfix-3.7-sample.log").expect("read fixture");
    let lines: Vec<&[u8]> = fixture.split_inclusive(|&b| b == b'\n').collect();
    for (i, piece) in lines.chunks(32).enumerate() {
        let mut data = seed.to_vec();
        data.extend(piece.iter().flat_map(|l| l.iter().copied()));
        write(&corpus.join("log_line"), &format!("fixture_{i:02}"), &data);
    }
    let mut long = 7u64.to_le_bytes().to_vec();
    long.extend_from_slice(b"Nov 29 13:13:38 mx postfix/smtpd[1]: connect from c[192.0.2.1] ");
    write(&corpus.join("log_line"), "amplified", &long);

    // showq_stream: announcement, messages in several queues, end marker.
    let mut showq = seed.to_vec();
    let attr = |out: &mut Vec<u8>, n: &str, v: &str| {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    };
    attr(&mut showq, "protocol", "mail_queue_list_protocol");
    showq.push(0);
    for (queue, id, rcpts) in [
        ("active", "4dLmFw0b3Bz1y", 1),
        ("deferred", "4dLmFx2Gq4z1z", 2),
        ("hold", "4dLmFy5Yt5z20", 1),
        ("incoming", "4dLmG01hXkz21", 0),
        ("maildrop", "4dLmG13kLpz22", 1),
    ] {
        attr(&mut showq, "queue_name", queue);
        attr(&mut showq, "queue_id", id);
        attr(&mut showq, "time", "1764422018");
        attr(&mut showq, "size", "1834");
        attr(&mut showq, "forced_expire", "0");
        attr(&mut showq, "sender", "alice@example.org");
        for r in 0..rcpts {
            attr(&mut showq, "recipient", &format!("user{r}@example.net"));
            attr(
                &mut showq,
                "reason",
                if queue == "deferred" {
                    "connect to mx.example.net[192.0.2.9]:25: Connection refused"
                } else {
                    ""
                },
            );
        }
        showq.push(0);
    }
    showq.push(0);
    write(&corpus.join("showq_stream"), "five_queues", &showq);

    // config: the packaged example and a minimal one.
    let example = fs::read("../packaging/postfix-agentx.toml").expect("read example config");
    write(&corpus.join("config"), "packaged", &example);
    write(
        &corpus.join("config"),
        "minimal",
        b"[agentx]\nsocket = \"/var/agentx/master\"\n",
    );
}
