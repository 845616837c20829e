//! Differential tests of our AgentX codec against the crates.io `agentx` 0.1.1 crate.
//!
//! For PDUs and values that crate handles correctly, both encoders must
//! produce the same bytes (we disable our OID prefix compression for that,
//! since it never compresses), and each side must decode the other's bytes to
//! the same meaning (there we keep compression on: it decodes prefixes).
//!
//! Not cross-checked, because of known bugs or gaps in agentx 0.1.1:
//! Response sysUpTime is a Duration that overflows `u32 * 10` on decode;
//! res.error has only the AgentX errors (no notWritable/genErr/...);
//! OctetString/IpAddress/Opaque are `String` (no binary data); TimeTicks is i32;
//! Register priority defaults to 0 (we set it explicitly); it never sets
//! NON_DEFAULT_CONTEXT itself; it has no framing.

use agentx::encodings::{
    OctetString, SearchRange as TheirRange, SearchRangeList, Value as TheirValue,
    VarBind as TheirVarBind, VarBindList, ID,
};
use agentx::pdu::{self as their, CloseReason as TheirClose, ResError};
use postfix_agentx::agentx::codec::{
    CloseReason, EncodeOptions, ErrorStatus, Open, Payload, Pdu, Register, Response, SearchRange,
};
use postfix_agentx::snmp::{Oid, Value, VarBind};
use std::time::Duration;

const NBO: u8 = 1 << their::NETWORK_BYTE_ORDER;
const SESSION: u32 = 0x0102_0304;
const TRANSACTION: u32 = 77;
const PACKET: u32 = 0xfffe_fdfc;

fn oid(s: &str) -> Oid {
    Oid::parse(s).unwrap()
}

fn their_id(o: &Oid) -> ID {
    ID::try_from(o.0.clone()).unwrap()
}

fn our_oid(id: &ID) -> Oid {
    if id.is_null() {
        Oid::default()
    } else {
        Oid::parse(&id.to_string()).unwrap()
    }
}

fn their_header(ty: their::Type) -> their::Header {
    let mut h = their::Header::new(ty);
    h.flags = NBO;
    h.session_id = SESSION;
    h.transaction_id = TRANSACTION;
    h.packet_id = PACKET;
    h
}

fn ours(payload: Payload) -> Pdu {
    Pdu::new(payload, SESSION, TRANSACTION, PACKET)
}

fn uncompressed(p: &Pdu) -> Vec<u8> {
    p.encode_with(EncodeOptions {
        compress_oid_prefix: false,
    })
    .unwrap()
}

fn check_header(h: &their::Header) {
    assert_eq!(h.version, 1);
    assert_eq!(
        (h.session_id, h.transaction_id, h.packet_id),
        (SESSION, TRANSACTION, PACKET)
    );
}

/// Ours decodes their bytes to the same PDU, and both encoders agree.
fn same_bytes_and_meaning(ours: &Pdu, theirs: &[u8]) {
    assert_eq!(uncompressed(ours), theirs, "encodings differ for {ours:?}");
    let decoded = Pdu::decode(theirs).expect("we decode their bytes");
    assert_eq!(decoded.payload, ours.payload);
    assert_eq!(decoded.header.session_id, SESSION);
    assert_eq!(decoded.header.transaction_id, TRANSACTION);
    assert_eq!(decoded.header.packet_id, PACKET);
}

fn their_value(v: &Value) -> TheirValue {
    let s = |b: &[u8]| OctetString(String::from_utf8(b.to_vec()).unwrap());
    match v {
        Value::Integer(i) => TheirValue::Integer(*i),
        Value::OctetString(b) => TheirValue::OctetString(s(b)),
        Value::Null => TheirValue::Null,
        Value::ObjectIdentifier(o) => TheirValue::ObjectIdentifier(their_id(o)),
        Value::IpAddress(a) => TheirValue::IpAddress(s(a)),
        Value::Counter32(c) => TheirValue::Counter32(*c),
        Value::Gauge32(g) => TheirValue::Gauge32(*g),
        Value::TimeTicks(t) => TheirValue::TimeTicks(i32::try_from(*t).unwrap()),
        Value::Opaque(b) => TheirValue::Opaque(s(b)),
        Value::Counter64(c) => TheirValue::Counter64(*c),
        Value::NoSuchObject => TheirValue::NoSuchObject,
        Value::NoSuchInstance => TheirValue::NoSuchInstance,
        Value::EndOfMibView => TheirValue::EndOfMibView,
    }
}

fn our_value(v: &TheirValue) -> Value {
    match v {
        TheirValue::Integer(i) => Value::Integer(*i),
        TheirValue::OctetString(s) => Value::OctetString(s.0.as_bytes().to_vec()),
        TheirValue::Null => Value::Null,
        TheirValue::ObjectIdentifier(id) => Value::ObjectIdentifier(our_oid(id)),
        TheirValue::IpAddress(s) => Value::IpAddress(s.0.as_bytes().try_into().unwrap()),
        TheirValue::Counter32(c) => Value::Counter32(*c),
        TheirValue::Gauge32(g) => Value::Gauge32(*g),
        TheirValue::TimeTicks(t) => Value::TimeTicks(u32::try_from(*t).unwrap()),
        TheirValue::Opaque(s) => Value::Opaque(s.0.as_bytes().to_vec()),
        TheirValue::Counter64(c) => Value::Counter64(*c),
        TheirValue::NoSuchObject => Value::NoSuchObject,
        TheirValue::NoSuchInstance => Value::NoSuchInstance,
        TheirValue::EndOfMibView => Value::EndOfMibView,
    }
}

fn their_varbinds(vbs: &[VarBind]) -> VarBindList {
    VarBindList(
        vbs.iter()
            .map(|vb| TheirVarBind::new(their_id(&vb.name), their_value(&vb.value)))
            .collect(),
    )
}

fn our_varbinds(vbs: &VarBindList) -> Vec<VarBind> {
    vbs.0
        .iter()
        .map(|vb| VarBind {
            name: our_oid(&vb.name),
            value: our_value(&vb.data),
        })
        .collect()
}

/// Ordinary values that agentx 0.1.1 represents faithfully (UTF-8 strings,
/// ASCII-range IP octets, TimeTicks below 2^31).
fn ordinary_varbinds() -> Vec<VarBind> {
    let vb = |n: &str, value| VarBind {
        name: oid(n),
        value,
    };
    vec![
        vb(
            "1.3.6.1.6.3.1.1.4.1.0",
            Value::ObjectIdentifier(oid("1.3.6.1.4.1.8072.9999.0.1")),
        ),
        vb("1.3.6.1.4.1.8072.9999.25.1.0", Value::Counter64(u64::MAX)),
        vb(
            "1.3.6.1.4.1.8072.9999.25.2.0",
            Value::Gauge32(4_000_000_000),
        ),
        vb("1.3.6.1.4.1.8072.9999.25.3.0", Value::Counter32(17)),
        vb("1.3.6.1.4.1.8072.9999.25.4.0", Value::Integer(-123_456)),
        vb(
            "1.3.6.1.4.1.8072.9999.25.5.0",
            Value::string("mail.example.org"),
        ),
        vb("1.3.6.1.4.1.8072.9999.25.6.0", Value::string("abc")),
        vb("1.3.6.1.4.1.8072.9999.25.7.0", Value::string("")),
        vb(
            "1.3.6.1.4.1.8072.9999.25.8.0",
            Value::IpAddress([127, 0, 0, 1]),
        ),
        vb(
            "1.3.6.1.4.1.8072.9999.25.9.0",
            Value::TimeTicks(123_456_789),
        ),
        vb("1.3.6.1.4.1.8072.9999.25.10.0", Value::Null),
        vb(
            "1.3.6.1.4.1.8072.9999.25.11.0",
            Value::Opaque(b"op".to_vec()),
        ),
        vb("1.3.6.1.4.1.8072.9999.25.12.0", Value::NoSuchObject),
        vb("1.3.6.1.4.1.8072.9999.25.13.0", Value::NoSuchInstance),
        vb("1.3.6.1.4.1.8072.9999.25.14.0", Value::EndOfMibView),
        vb(
            "1.2.840.10006.300.43",
            Value::ObjectIdentifier(Oid::default()),
        ),
    ]
}

fn search_ranges() -> Vec<SearchRange> {
    vec![
        SearchRange {
            start: oid("1.3.6.1.4.1.8072.9999.25"),
            include: true,
            end: oid("1.3.6.1.4.1.8072.9999.26"),
        },
        SearchRange {
            start: oid("1.3.6.1.2.1.1.3.0"),
            include: false,
            end: Oid::default(),
        },
        SearchRange {
            start: oid("1.2.3"),
            include: false,
            end: Oid::default(),
        },
    ]
}

fn their_ranges(rs: &[SearchRange]) -> SearchRangeList {
    SearchRangeList(
        rs.iter()
            .map(|r| {
                let mut start = their_id(&r.start);
                start.include = u8::from(r.include);
                TheirRange::new(start, their_id(&r.end))
            })
            .collect(),
    )
}

fn our_ranges(rs: &SearchRangeList) -> Vec<SearchRange> {
    rs.0.iter()
        .map(|r| SearchRange {
            start: our_oid(&r.start),
            include: r.start.include != 0,
            end: our_oid(&r.end),
        })
        .collect()
}

#[test]
fn open() {
    let subtree = oid("1.3.6.1.4.1.8072.9999.25");
    let mut t = their::Open::new(their_id(&subtree), "postfix-agentx subagent");
    t.header = their_header(their::Type::Open);
    t.timeout = Duration::from_secs(5);
    let o = ours(Payload::Open(Open {
        timeout: 5,
        id: subtree.clone(),
        descr: b"postfix-agentx subagent".to_vec(),
    }));
    same_bytes_and_meaning(&o, &t.to_bytes().unwrap());
    let back = their::Open::from_bytes(&o.encode().unwrap()).unwrap();
    check_header(&back.header);
    assert_eq!(back.timeout, Duration::from_secs(5));
    assert_eq!(our_oid(&back.id), subtree);
    assert_eq!(back.descr.0, "postfix-agentx subagent");
}

#[test]
fn close_every_reason() {
    for (theirs, ours_reason) in [
        (TheirClose::Other, CloseReason::Other),
        (TheirClose::ParseError, CloseReason::ParseError),
        (TheirClose::ProtocolError, CloseReason::ProtocolError),
        (TheirClose::Timeouts, CloseReason::Timeouts),
        (TheirClose::Shutdown, CloseReason::Shutdown),
        (TheirClose::ByManager, CloseReason::ByManager),
    ] {
        let mut t = their::Close::new(theirs.clone());
        t.header = their_header(their::Type::Close);
        let o = ours(Payload::Close(ours_reason));
        same_bytes_and_meaning(&o, &t.to_bytes().unwrap());
        let back = their::Close::from_bytes(&o.encode().unwrap()).unwrap();
        check_header(&back.header);
        assert_eq!(back.reason, theirs);
    }
}

#[test]
fn register_with_explicit_priority_and_ranges() {
    for (priority, range_subid, upper_bound, timeout) in [
        (127u8, 0u8, None, 0u8),
        (1, 11, Some(42u32), 9),
        (255, 1, Some(u32::MAX), 255),
    ] {
        let subtree = oid("1.3.6.1.4.1.8072.9999.25.5.1.1");
        let mut t = their::Register::new(their_id(&subtree));
        t.header = their_header(their::Type::Register);
        t.priority = priority;
        t.range_subid = range_subid;
        t.upper_bound = upper_bound;
        t.timeout = Duration::from_secs(u64::from(timeout));
        let o = ours(Payload::Register(Register {
            timeout,
            priority,
            range_subid,
            subtree: subtree.clone(),
            upper_bound,
        }));
        same_bytes_and_meaning(&o, &t.to_bytes().unwrap());
        let back = their::Register::from_bytes(&o.encode().unwrap()).unwrap();
        check_header(&back.header);
        assert_eq!(
            (back.priority, back.range_subid, back.upper_bound),
            (priority, range_subid, upper_bound)
        );
        assert_eq!(back.timeout, Duration::from_secs(u64::from(timeout)));
        assert_eq!(our_oid(&back.subtree), subtree);
    }
}

#[test]
fn get_and_getnext_with_search_ranges() {
    let ranges = search_ranges();
    let mut g = their::Get::new(their_ranges(&ranges));
    g.header = their_header(their::Type::Get);
    let o = ours(Payload::Get(ranges.clone()));
    same_bytes_and_meaning(&o, &g.to_bytes().unwrap());
    let back = their::Get::from_bytes(&o.encode().unwrap()).unwrap();
    check_header(&back.header);
    assert_eq!(our_ranges(&back.sr), ranges);

    let mut n = their::GetNext::new(their_ranges(&ranges));
    n.header = their_header(their::Type::GetNext);
    let o = ours(Payload::GetNext(ranges.clone()));
    same_bytes_and_meaning(&o, &n.to_bytes().unwrap());
    let back = their::GetNext::from_bytes(&o.encode().unwrap()).unwrap();
    check_header(&back.header);
    assert_eq!(our_ranges(&back.sr), ranges);
}

#[test]
fn response_with_ordinary_varbinds() {
    for (their_err, our_err) in [
        (ResError::NoAgentXError, ErrorStatus::NoError),
        (
            ResError::DuplicateRegistration,
            ErrorStatus::DuplicateRegistration,
        ),
        (ResError::ParseError, ErrorStatus::ParseError),
        (ResError::ProcessingError, ErrorStatus::ProcessingError),
        (ResError::OpenFailed, ErrorStatus::OpenFailed),
    ] {
        let vbs = ordinary_varbinds();
        let mut t = their::Response::from_header(&their_header(their::Type::Response));
        t.header.flags = NBO;
        // Small uptime: agentx 0.1.1 overflows on decode above u32::MAX / 10.
        t.sys_uptime = Duration::from_millis(123_450);
        t.res_error = their_err.clone();
        t.res_index = 3;
        t.vb = Some(their_varbinds(&vbs));
        let o = ours(Payload::Response(Response {
            sys_uptime: 12_345,
            error: our_err,
            index: 3,
            varbinds: vbs.clone(),
        }));
        same_bytes_and_meaning(&o, &t.to_bytes().unwrap());
        let back = their::Response::from_bytes(&o.encode().unwrap()).unwrap();
        check_header(&back.header);
        assert_eq!(back.sys_uptime, Duration::from_millis(123_450));
        assert_eq!(back.res_error, their_err);
        assert_eq!(back.res_index, 3);
        assert_eq!(our_varbinds(back.vb.as_ref().unwrap()), vbs);
    }
}

#[test]
fn ping() {
    let mut t = their::Ping::new();
    t.header = their_header(their::Type::Ping);
    let o = ours(Payload::Ping);
    same_bytes_and_meaning(&o, &t.to_bytes().unwrap());
    let back = their::Ping::from_bytes(&o.encode().unwrap()).unwrap();
    check_header(&back.header);
    assert_eq!(back.context, None);
}

#[test]
fn notify() {
    let vbs = ordinary_varbinds();
    let mut t = their::Notify::new(their_varbinds(&vbs));
    t.header = their_header(their::Type::Notify);
    let o = ours(Payload::Notify(vbs.clone()));
    same_bytes_and_meaning(&o, &t.to_bytes().unwrap());
    let back = their::Notify::from_bytes(&o.encode().unwrap()).unwrap();
    check_header(&back.header);
    assert_eq!(our_varbinds(&back.vb), vbs);
}

#[test]
fn little_endian_from_their_encoder() {
    // agentx 0.1.1 encodes little endian when the flag is clear; we decode that.
    let vbs = ordinary_varbinds();
    let mut t = their::Notify::new(their_varbinds(&vbs));
    t.header = their_header(their::Type::Notify);
    t.header.flags = 0;
    let decoded = Pdu::decode(&t.to_bytes().unwrap()).unwrap();
    assert_eq!(decoded.payload, Payload::Notify(vbs));
    assert_eq!(decoded.header.packet_id, PACKET);

    let ranges = search_ranges();
    let mut g = their::GetNext::new(their_ranges(&ranges));
    g.header = their_header(their::Type::GetNext);
    g.header.flags = 0;
    assert_eq!(
        Pdu::decode(&g.to_bytes().unwrap()).unwrap().payload,
        Payload::GetNext(ranges)
    );
}
