//! A minimal SNMPv2c client over UDP for the latency benchmarks: BER encoded
//! here, one socket, no process per request (net-snmp's tools would add a
//! process start to every sample).
#![allow(dead_code)] // each benchmark uses part of it

use anyhow::{bail, Context, Result};
use postfix_agentx::snmp::Oid;
use std::net::UdpSocket;
use std::time::Duration;

fn push_len(out: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    push_len(&mut v, content.len());
    v.extend_from_slice(content);
    v
}

fn ber_int(i: i64) -> Vec<u8> {
    let bytes = i.to_be_bytes();
    let mut start = 0;
    // Drop redundant leading sign bytes.
    while start < 7
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    tlv(0x02, &bytes[start..])
}

fn ber_oid(o: &Oid) -> Vec<u8> {
    let ids = o.as_slice();
    let mut c = vec![(ids[0] * 40 + ids[1]) as u8];
    for &id in &ids[2..] {
        let mut tmp = vec![(id & 0x7f) as u8];
        let mut v = id >> 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        c.extend(tmp);
    }
    tlv(0x06, &c)
}

/// GetRequest (0xa0) or GetBulkRequest (0xa5, non-repeaters 0).
fn request(pdu_tag: u8, request_id: i32, oid: &Oid, max_repetitions: i64) -> Vec<u8> {
    let varbind = tlv(0x30, &[ber_oid(oid), vec![0x05, 0x00]].concat());
    let (a, b) = if pdu_tag == 0xa5 {
        (0, max_repetitions)
    } else {
        (0, 0)
    };
    let pdu = tlv(
        pdu_tag,
        &[
            ber_int(i64::from(request_id)),
            ber_int(a),
            ber_int(b),
            tlv(0x30, &varbind),
        ]
        .concat(),
    );
    tlv(0x30, &[ber_int(1), tlv(0x04, b"public"), pdu].concat())
}

/// (tag, content, rest)
fn read_tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *buf.first()?;
    let first = *buf.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let mut len = 0usize;
        for b in buf.get(2..2 + n)? {
            len = len.checked_mul(256)?.checked_add(usize::from(*b))?;
        }
        (len, 2 + n)
    };
    let content = buf.get(hdr..hdr.checked_add(len)?)?;
    Some((tag, content, &buf[hdr + len..]))
}

fn parse_oid(c: &[u8]) -> Option<Oid> {
    let first = *c.first()?;
    let mut ids = vec![u32::from(first / 40), u32::from(first % 40)];
    let mut v: u32 = 0;
    for b in &c[1..] {
        v = (v << 7) | u32::from(b & 0x7f);
        if b & 0x80 == 0 {
            ids.push(v);
            v = 0;
        }
    }
    Some(Oid(ids))
}

fn parse_int(c: &[u8]) -> i64 {
    c.iter().fold(
        if c.first().is_some_and(|b| b & 0x80 != 0) {
            -1
        } else {
            0
        },
        |acc, b| (acc << 8) | i64::from(*b),
    )
}

/// One varbind of a response: the OID, the value's BER tag and, for the
/// integer types (INTEGER, Counter32/64, Gauge32, TimeTicks), its value.
pub type Varbind = (Oid, u8, Option<u64>);

fn unsigned(c: &[u8]) -> u64 {
    c.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

/// Response varbinds, after checking id and error-status.
fn parse_response(buf: &[u8], want_id: i32) -> Result<Vec<Varbind>> {
    let bad = || anyhow::anyhow!("malformed SNMP response");
    let (_, msg, _) = read_tlv(buf).ok_or_else(bad)?;
    let (_, _version, rest) = read_tlv(msg).ok_or_else(bad)?;
    let (_, _community, rest) = read_tlv(rest).ok_or_else(bad)?;
    let (tag, pdu, _) = read_tlv(rest).ok_or_else(bad)?;
    if tag != 0xa2 {
        bail!("unexpected PDU tag {tag:#x}");
    }
    let (_, id, rest) = read_tlv(pdu).ok_or_else(bad)?;
    let (_, err, rest) = read_tlv(rest).ok_or_else(bad)?;
    let (_, _idx, rest) = read_tlv(rest).ok_or_else(bad)?;
    if parse_int(id) != i64::from(want_id) {
        bail!("request id mismatch");
    }
    if parse_int(err) != 0 {
        bail!("error-status {}", parse_int(err));
    }
    let (_, mut list, _) = read_tlv(rest).ok_or_else(bad)?;
    let mut out = Vec::new();
    while !list.is_empty() {
        let (_, vb, r) = read_tlv(list).ok_or_else(bad)?;
        list = r;
        let (_, name, r) = read_tlv(vb).ok_or_else(bad)?;
        let (vtag, content, _) = read_tlv(r).ok_or_else(bad)?;
        let value = match vtag {
            0x02 => u64::try_from(parse_int(content)).ok(),
            0x41 | 0x42 | 0x43 | 0x46 if content.len() <= 9 => Some(unsigned(content)),
            _ => None,
        };
        out.push((parse_oid(name).ok_or_else(bad)?, vtag, value));
    }
    Ok(out)
}

pub struct Client {
    sock: UdpSocket,
    next_id: i32,
    buf: Vec<u8>,
}

impl Client {
    pub fn new(port: u16) -> Result<Client> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_secs(3)))?;
        Ok(Client {
            sock,
            next_id: 1,
            buf: vec![0; 65_536],
        })
    }

    fn call(&mut self, tag: u8, oid: &Oid, max_rep: i64) -> Result<Vec<Varbind>> {
        let id = self.next_id;
        self.next_id += 1;
        self.sock.send(&request(tag, id, oid, max_rep))?;
        let n = self.sock.recv(&mut self.buf).context("no SNMP response")?;
        parse_response(&self.buf[..n], id)
    }

    /// GET one object; fails unless the answer is a value (no exception).
    pub fn get(&mut self, oid: &Oid) -> Result<Option<u64>> {
        let vbs = self.call(0xa0, oid, 0)?;
        match vbs.first() {
            Some((o, tag, value)) if o == oid && *tag < 0x80 => Ok(*value),
            other => bail!("GET {oid}: unexpected {other:?}"),
        }
    }

    /// Walks `base` with GetBulk; returns the number of objects.
    pub fn bulkwalk(&mut self, base: &Oid, max_rep: i64) -> Result<usize> {
        let mut count = 0;
        let mut cursor = base.clone();
        loop {
            let vbs = self.call(0xa5, &cursor, max_rep)?;
            if vbs.is_empty() {
                bail!("empty GetBulk response");
            }
            for (o, tag, _) in vbs {
                if !o.starts_with(base) || tag >= 0x80 {
                    return Ok(count);
                }
                count += 1;
                cursor = o;
            }
        }
    }
}
