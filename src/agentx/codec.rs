//! AgentX (RFC 2741) PDU encoding and decoding, plus async framing.
//!
//! Decoding accepts both byte orders (the NETWORK_BYTE_ORDER header flag);
//! encoding always writes network byte order with the flag set. Every length
//! is checked before use, so malformed input gives a [`CodecError`], never a
//! panic.

use crate::snmp::{Oid, Value, VarBind};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Size of the fixed PDU header.
pub const HEADER_LEN: usize = 20;
/// RFC 2578 limit on sub-identifiers in an OID.
pub const MAX_OID_LEN: usize = 128;
/// Default cap on a frame's payload; anything larger is treated as lost framing.
pub const DEFAULT_MAX_PAYLOAD: u32 = 1 << 20;
/// The only AgentX version.
pub const VERSION: u8 = 1;

/// Header flag bits (RFC 2741 section 6.1).
pub mod flags {
    pub const INSTANCE_REGISTRATION: u8 = 0x01;
    pub const NEW_INDEX: u8 = 0x02;
    pub const ANY_INDEX: u8 = 0x04;
    pub const NON_DEFAULT_CONTEXT: u8 = 0x08;
    pub const NETWORK_BYTE_ORDER: u8 = 0x10;
}

/// The internet prefix that prefix-compressed OIDs expand to (1.3.6.1.X).
const INTERNET: [u32; 4] = [1, 3, 6, 1];

/// What went wrong while decoding or encoding.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    #[error("truncated {what}: need {needed} bytes, have {available}")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("unsupported AgentX version {0} (expected 1)")]
    BadVersion(u8),
    #[error("unknown PDU type {0}")]
    UnknownPduType(u8),
    #[error("OID with {0} sub-identifiers (maximum is 128)")]
    OidTooLong(usize),
    #[error("unknown varbind value type {0}")]
    UnknownValueType(u16),
    #[error("IpAddress value with {0} bytes (expected 4)")]
    BadIpAddressLength(usize),
    #[error("{extra} bytes left over after the {what} payload")]
    TrailingBytes { what: &'static str, extra: usize },
    #[error("frame has {actual} payload bytes but the header says {declared}")]
    LengthMismatch { declared: u32, actual: usize },
    #[error("payload length {length} exceeds the limit of {limit} bytes")]
    PayloadTooLarge { length: u32, limit: u32 },
    #[error("{0} is too long to encode")]
    TooLong(&'static str),
}

/// Byte order of multi-byte fields in one PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Big,
    Little,
}

/// PDU types (RFC 2741 section 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PduType {
    Open = 1,
    Close = 2,
    Register = 3,
    Unregister = 4,
    Get = 5,
    GetNext = 6,
    GetBulk = 7,
    TestSet = 8,
    CommitSet = 9,
    UndoSet = 10,
    CleanupSet = 11,
    Notify = 12,
    Ping = 13,
    IndexAllocate = 14,
    IndexDeallocate = 15,
    AddAgentCaps = 16,
    RemoveAgentCaps = 17,
    Response = 18,
}

impl PduType {
    pub fn from_u8(b: u8) -> Option<PduType> {
        use PduType::*;
        Some(match b {
            1 => Open,
            2 => Close,
            3 => Register,
            4 => Unregister,
            5 => Get,
            6 => GetNext,
            7 => GetBulk,
            8 => TestSet,
            9 => CommitSet,
            10 => UndoSet,
            11 => CleanupSet,
            12 => Notify,
            13 => Ping,
            14 => IndexAllocate,
            15 => IndexDeallocate,
            16 => AddAgentCaps,
            17 => RemoveAgentCaps,
            18 => Response,
            _ => return None,
        })
    }

    /// PDU types that carry a context octet string when NON_DEFAULT_CONTEXT is set.
    pub fn may_have_context(self) -> bool {
        use PduType::*;
        !matches!(
            self,
            Open | Close | CommitSet | UndoSet | CleanupSet | Response
        )
    }
}

/// The fixed 20-byte PDU header.
///
/// `pdu_type` is kept raw so a header with an unknown type can still be
/// answered (the session needs its ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub pdu_type: u8,
    pub flags: u8,
    pub session_id: u32,
    pub transaction_id: u32,
    pub packet_id: u32,
    pub payload_length: u32,
}

impl Header {
    /// A version-1 header with ids; flags and length are filled in by encoding.
    pub fn new(pdu_type: PduType, session_id: u32, transaction_id: u32, packet_id: u32) -> Header {
        Header {
            version: VERSION,
            pdu_type: pdu_type as u8,
            flags: 0,
            session_id,
            transaction_id,
            packet_id,
            payload_length: 0,
        }
    }

    /// Decodes the first 20 bytes of `buf`. Version and type are not checked
    /// here (see [`Pdu::decode_payload`]) so framing can continue past them.
    pub fn decode(buf: &[u8]) -> Result<Header, CodecError> {
        let b = buf.get(..HEADER_LEN).ok_or(CodecError::Truncated {
            what: "header",
            needed: HEADER_LEN,
            available: buf.len(),
        })?;
        let flags = b[2];
        let order = if flags & flags::NETWORK_BYTE_ORDER != 0 {
            ByteOrder::Big
        } else {
            ByteOrder::Little
        };
        let u32_at = |i: usize| {
            let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
            match order {
                ByteOrder::Big => u32::from_be_bytes(a),
                ByteOrder::Little => u32::from_le_bytes(a),
            }
        };
        Ok(Header {
            version: b[0],
            pdu_type: b[1],
            flags,
            session_id: u32_at(4),
            transaction_id: u32_at(8),
            packet_id: u32_at(12),
            payload_length: u32_at(16),
        })
    }

    pub fn byte_order(&self) -> ByteOrder {
        if self.flags & flags::NETWORK_BYTE_ORDER != 0 {
            ByteOrder::Big
        } else {
            ByteOrder::Little
        }
    }

    pub fn kind(&self) -> Option<PduType> {
        PduType::from_u8(self.pdu_type)
    }

    pub fn has_flag(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Close reasons (RFC 2741 section 6.2.2). Unknown codes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Other,
    ParseError,
    ProtocolError,
    Timeouts,
    Shutdown,
    ByManager,
    Unknown(u8),
}

impl CloseReason {
    pub fn from_u8(b: u8) -> CloseReason {
        match b {
            1 => CloseReason::Other,
            2 => CloseReason::ParseError,
            3 => CloseReason::ProtocolError,
            4 => CloseReason::Timeouts,
            5 => CloseReason::Shutdown,
            6 => CloseReason::ByManager,
            other => CloseReason::Unknown(other),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            CloseReason::Other => 1,
            CloseReason::ParseError => 2,
            CloseReason::ProtocolError => 3,
            CloseReason::Timeouts => 4,
            CloseReason::Shutdown => 5,
            CloseReason::ByManager => 6,
            CloseReason::Unknown(b) => b,
        }
    }
}

macro_rules! error_status {
    ($($name:ident = $code:expr),* $(,)?) => {
        /// `res.error` of a Response: SNMPv2 errors (0-18) and AgentX errors
        /// (256-268). Unknown codes are kept in `Other`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorStatus {
            $($name,)*
            Other(u16),
        }

        impl ErrorStatus {
            pub fn from_u16(code: u16) -> ErrorStatus {
                match code {
                    $($code => ErrorStatus::$name,)*
                    other => ErrorStatus::Other(other),
                }
            }

            pub fn to_u16(self) -> u16 {
                match self {
                    $(ErrorStatus::$name => $code,)*
                    ErrorStatus::Other(code) => code,
                }
            }
        }
    };
}

error_status! {
    NoError = 0,
    TooBig = 1,
    NoSuchName = 2,
    BadValue = 3,
    ReadOnly = 4,
    GenErr = 5,
    NoAccess = 6,
    WrongType = 7,
    WrongLength = 8,
    WrongEncoding = 9,
    WrongValue = 10,
    NoCreation = 11,
    InconsistentValue = 12,
    ResourceUnavailable = 13,
    CommitFailed = 14,
    UndoFailed = 15,
    AuthorizationError = 16,
    NotWritable = 17,
    InconsistentName = 18,
    OpenFailed = 256,
    NotOpen = 257,
    IndexWrongType = 258,
    IndexAlreadyAllocated = 259,
    IndexNoneAvailable = 260,
    IndexNotAllocated = 261,
    UnsupportedContext = 262,
    DuplicateRegistration = 263,
    UnknownRegistration = 264,
    UnknownAgentCaps = 265,
    ParseError = 266,
    RequestDenied = 267,
    ProcessingError = 268,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// Default response timeout in seconds for this session (0 = master default).
    pub timeout: u8,
    pub id: Oid,
    pub descr: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub timeout: u8,
    pub priority: u8,
    pub range_subid: u8,
    pub subtree: Oid,
    /// Present exactly when `range_subid` is non-zero.
    pub upper_bound: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unregister {
    pub priority: u8,
    pub range_subid: u8,
    pub subtree: Oid,
    pub upper_bound: Option<u32>,
}

/// A search range: start (inclusive when `include`) up to `end` (exclusive;
/// an empty `end` means unbounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRange {
    pub start: Oid,
    pub include: bool,
    pub end: Oid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetBulk {
    pub non_repeaters: u16,
    pub max_repetitions: u16,
    pub ranges: Vec<SearchRange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Hundredths of a second; subagents send 0 (masters ignore it, RFC 2741 6.2.16).
    pub sys_uptime: u32,
    pub error: ErrorStatus,
    pub index: u16,
    pub varbinds: Vec<VarBind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Open(Open),
    Close(CloseReason),
    Register(Register),
    Unregister(Unregister),
    Get(Vec<SearchRange>),
    GetNext(Vec<SearchRange>),
    GetBulk(GetBulk),
    TestSet(Vec<VarBind>),
    CommitSet,
    UndoSet,
    CleanupSet,
    Notify(Vec<VarBind>),
    Ping,
    IndexAllocate(Vec<VarBind>),
    IndexDeallocate(Vec<VarBind>),
    AddAgentCaps { id: Oid, descr: Vec<u8> },
    RemoveAgentCaps { id: Oid },
    Response(Response),
}

impl Payload {
    pub fn pdu_type(&self) -> PduType {
        match self {
            Payload::Open(_) => PduType::Open,
            Payload::Close(_) => PduType::Close,
            Payload::Register(_) => PduType::Register,
            Payload::Unregister(_) => PduType::Unregister,
            Payload::Get(_) => PduType::Get,
            Payload::GetNext(_) => PduType::GetNext,
            Payload::GetBulk(_) => PduType::GetBulk,
            Payload::TestSet(_) => PduType::TestSet,
            Payload::CommitSet => PduType::CommitSet,
            Payload::UndoSet => PduType::UndoSet,
            Payload::CleanupSet => PduType::CleanupSet,
            Payload::Notify(_) => PduType::Notify,
            Payload::Ping => PduType::Ping,
            Payload::IndexAllocate(_) => PduType::IndexAllocate,
            Payload::IndexDeallocate(_) => PduType::IndexDeallocate,
            Payload::AddAgentCaps { .. } => PduType::AddAgentCaps,
            Payload::RemoveAgentCaps { .. } => PduType::RemoveAgentCaps,
            Payload::Response(_) => PduType::Response,
        }
    }
}

/// Encoder switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Use the 1.3.6.1.X prefix compression for OIDs (net-snmp does).
    pub compress_oid_prefix: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            compress_oid_prefix: true,
        }
    }
}

/// One AgentX PDU. On encoding, `header.pdu_type`, `payload_length`, the
/// NETWORK_BYTE_ORDER and NON_DEFAULT_CONTEXT flags are derived from the
/// payload and context; other flags (INSTANCE_REGISTRATION, ...) are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub header: Header,
    pub context: Option<Vec<u8>>,
    pub payload: Payload,
}

impl Pdu {
    pub fn new(payload: Payload, session_id: u32, transaction_id: u32, packet_id: u32) -> Pdu {
        Pdu {
            header: Header::new(payload.pdu_type(), session_id, transaction_id, packet_id),
            context: None,
            payload,
        }
    }

    /// A Response to `request` (same session, transaction and packet ids).
    pub fn response_to(request: &Header, response: Response) -> Pdu {
        Pdu::new(
            Payload::Response(response),
            request.session_id,
            request.transaction_id,
            request.packet_id,
        )
    }

    /// Decodes one complete frame (header + exactly `payload_length` bytes).
    pub fn decode(frame: &[u8]) -> Result<Pdu, CodecError> {
        let header = Header::decode(frame)?;
        let payload = &frame[HEADER_LEN..];
        if usize::try_from(header.payload_length).ok() != Some(payload.len()) {
            return Err(CodecError::LengthMismatch {
                declared: header.payload_length,
                actual: payload.len(),
            });
        }
        Pdu::decode_payload(header, payload)
    }

    /// Decodes the payload that follows an already decoded header.
    pub fn decode_payload(header: Header, payload: &[u8]) -> Result<Pdu, CodecError> {
        if header.version != VERSION {
            return Err(CodecError::BadVersion(header.version));
        }
        let kind = header
            .kind()
            .ok_or(CodecError::UnknownPduType(header.pdu_type))?;
        let mut r = Reader {
            buf: payload,
            pos: 0,
            order: header.byte_order(),
        };
        let context = if kind.may_have_context() && header.has_flag(flags::NON_DEFAULT_CONTEXT) {
            Some(r.octets("context")?)
        } else {
            None
        };
        let body = match kind {
            PduType::Open => {
                let timeout = r.u8("Open timeout")?;
                r.skip(3, "Open reserved")?;
                let (id, _) = r.oid()?;
                let descr = r.octets("Open descr")?;
                Payload::Open(Open { timeout, id, descr })
            }
            PduType::Close => {
                let reason = CloseReason::from_u8(r.u8("Close reason")?);
                r.skip(3, "Close reserved")?;
                Payload::Close(reason)
            }
            PduType::Register => {
                let timeout = r.u8("Register timeout")?;
                let priority = r.u8("Register priority")?;
                let range_subid = r.u8("Register range_subid")?;
                r.skip(1, "Register reserved")?;
                let (subtree, _) = r.oid()?;
                let upper_bound = if range_subid != 0 {
                    Some(r.u32("Register upper_bound")?)
                } else {
                    None
                };
                Payload::Register(Register {
                    timeout,
                    priority,
                    range_subid,
                    subtree,
                    upper_bound,
                })
            }
            PduType::Unregister => {
                r.skip(1, "Unregister reserved")?;
                let priority = r.u8("Unregister priority")?;
                let range_subid = r.u8("Unregister range_subid")?;
                r.skip(1, "Unregister reserved")?;
                let (subtree, _) = r.oid()?;
                let upper_bound = if range_subid != 0 {
                    Some(r.u32("Unregister upper_bound")?)
                } else {
                    None
                };
                Payload::Unregister(Unregister {
                    priority,
                    range_subid,
                    subtree,
                    upper_bound,
                })
            }
            PduType::Get => Payload::Get(r.search_ranges()?),
            PduType::GetNext => Payload::GetNext(r.search_ranges()?),
            PduType::GetBulk => {
                let non_repeaters = r.u16("GetBulk non_repeaters")?;
                let max_repetitions = r.u16("GetBulk max_repetitions")?;
                Payload::GetBulk(GetBulk {
                    non_repeaters,
                    max_repetitions,
                    ranges: r.search_ranges()?,
                })
            }
            PduType::TestSet => Payload::TestSet(r.varbinds()?),
            PduType::CommitSet => Payload::CommitSet,
            PduType::UndoSet => Payload::UndoSet,
            PduType::CleanupSet => Payload::CleanupSet,
            PduType::Notify => Payload::Notify(r.varbinds()?),
            PduType::Ping => Payload::Ping,
            PduType::IndexAllocate => Payload::IndexAllocate(r.varbinds()?),
            PduType::IndexDeallocate => Payload::IndexDeallocate(r.varbinds()?),
            PduType::AddAgentCaps => {
                let (id, _) = r.oid()?;
                let descr = r.octets("AddAgentCaps descr")?;
                Payload::AddAgentCaps { id, descr }
            }
            PduType::RemoveAgentCaps => {
                let (id, _) = r.oid()?;
                Payload::RemoveAgentCaps { id }
            }
            PduType::Response => {
                let sys_uptime = r.u32("Response sysUpTime")?;
                let error = ErrorStatus::from_u16(r.u16("Response res.error")?);
                let index = r.u16("Response res.index")?;
                Payload::Response(Response {
                    sys_uptime,
                    error,
                    index,
                    varbinds: r.varbinds()?,
                })
            }
        };
        let extra = r.remaining();
        if extra != 0 {
            return Err(CodecError::TrailingBytes {
                what: pdu_name(kind),
                extra,
            });
        }
        Ok(Pdu {
            header,
            context,
            payload: body,
        })
    }

    /// Encodes in network byte order with prefix compression.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        self.encode_with(EncodeOptions::default())
    }

    pub fn encode_with(&self, opts: EncodeOptions) -> Result<Vec<u8>, CodecError> {
        let kind = self.payload.pdu_type();
        let mut w = Writer {
            buf: Vec::with_capacity(64),
            compress: opts.compress_oid_prefix,
        };
        // Header placeholder; length is patched in below.
        w.buf.extend_from_slice(&[0; HEADER_LEN]);
        let mut hflags =
            (self.header.flags | flags::NETWORK_BYTE_ORDER) & !flags::NON_DEFAULT_CONTEXT;
        if let (true, Some(ctx)) = (kind.may_have_context(), &self.context) {
            hflags |= flags::NON_DEFAULT_CONTEXT;
            w.octets(ctx)?;
        }
        match &self.payload {
            Payload::Open(o) => {
                w.buf.extend_from_slice(&[o.timeout, 0, 0, 0]);
                w.oid(&o.id, false)?;
                w.octets(&o.descr)?;
            }
            Payload::Close(reason) => w.buf.extend_from_slice(&[reason.to_u8(), 0, 0, 0]),
            Payload::Register(reg) => {
                w.buf
                    .extend_from_slice(&[reg.timeout, reg.priority, reg.range_subid, 0]);
                w.oid(&reg.subtree, false)?;
                if reg.range_subid != 0 {
                    w.u32(reg.upper_bound.unwrap_or(0));
                }
            }
            Payload::Unregister(u) => {
                w.buf.extend_from_slice(&[0, u.priority, u.range_subid, 0]);
                w.oid(&u.subtree, false)?;
                if u.range_subid != 0 {
                    w.u32(u.upper_bound.unwrap_or(0));
                }
            }
            Payload::Get(ranges) | Payload::GetNext(ranges) => w.search_ranges(ranges)?,
            Payload::GetBulk(b) => {
                w.u16(b.non_repeaters);
                w.u16(b.max_repetitions);
                w.search_ranges(&b.ranges)?;
            }
            Payload::TestSet(vbs)
            | Payload::Notify(vbs)
            | Payload::IndexAllocate(vbs)
            | Payload::IndexDeallocate(vbs) => w.varbinds(vbs)?,
            Payload::CommitSet | Payload::UndoSet | Payload::CleanupSet | Payload::Ping => {}
            Payload::AddAgentCaps { id, descr } => {
                w.oid(id, false)?;
                w.octets(descr)?;
            }
            Payload::RemoveAgentCaps { id } => w.oid(id, false)?,
            Payload::Response(resp) => {
                w.u32(resp.sys_uptime);
                w.u16(resp.error.to_u16());
                w.u16(resp.index);
                w.varbinds(&resp.varbinds)?;
            }
        }
        let payload_len = u32::try_from(w.buf.len() - HEADER_LEN)
            .map_err(|_| CodecError::TooLong("PDU payload"))?;
        let h = &self.header;
        let mut head = Vec::with_capacity(HEADER_LEN);
        head.extend_from_slice(&[h.version, kind as u8, hflags, 0]);
        for v in [h.session_id, h.transaction_id, h.packet_id, payload_len] {
            head.extend_from_slice(&v.to_be_bytes());
        }
        w.buf[..HEADER_LEN].copy_from_slice(&head);
        Ok(w.buf)
    }
}

fn pdu_name(kind: PduType) -> &'static str {
    use PduType::*;
    match kind {
        Open => "Open",
        Close => "Close",
        Register => "Register",
        Unregister => "Unregister",
        Get => "Get",
        GetNext => "GetNext",
        GetBulk => "GetBulk",
        TestSet => "TestSet",
        CommitSet => "CommitSet",
        UndoSet => "UndoSet",
        CleanupSet => "CleanupSet",
        Notify => "Notify",
        Ping => "Ping",
        IndexAllocate => "IndexAllocate",
        IndexDeallocate => "IndexDeallocate",
        AddAgentCaps => "AddAgentCaps",
        RemoveAgentCaps => "RemoveAgentCaps",
        Response => "Response",
    }
}

/// Bounds-checked cursor over a payload.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    order: ByteOrder,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        let truncated = CodecError::Truncated {
            what,
            needed: n,
            available: self.remaining(),
        };
        let end = self.pos.checked_add(n).ok_or(truncated.clone())?;
        let s = self.buf.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn skip(&mut self, n: usize, what: &'static str) -> Result<(), CodecError> {
        self.take(n, what).map(|_| ())
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        let b = self.take(2, what)?;
        let a = [b[0], b[1]];
        Ok(match self.order {
            ByteOrder::Big => u16::from_be_bytes(a),
            ByteOrder::Little => u16::from_le_bytes(a),
        })
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let b = self.take(4, what)?;
        let a = [b[0], b[1], b[2], b[3]];
        Ok(match self.order {
            ByteOrder::Big => u32::from_be_bytes(a),
            ByteOrder::Little => u32::from_le_bytes(a),
        })
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(match self.order {
            ByteOrder::Big => u64::from_be_bytes(a),
            ByteOrder::Little => u64::from_le_bytes(a),
        })
    }

    /// An OID and its include flag (RFC 2741 5.1).
    fn oid(&mut self) -> Result<(Oid, bool), CodecError> {
        let head = self.take(4, "OID header")?;
        let (n_subid, prefix, include) = (usize::from(head[0]), head[1], head[2] != 0);
        let total = if prefix != 0 { n_subid + 5 } else { n_subid };
        if total > MAX_OID_LEN {
            return Err(CodecError::OidTooLong(total));
        }
        let mut ids = Vec::with_capacity(total);
        if prefix != 0 {
            ids.extend_from_slice(&INTERNET);
            ids.push(u32::from(prefix));
        }
        for _ in 0..n_subid {
            ids.push(self.u32("OID sub-identifier")?);
        }
        Ok((Oid(ids), include))
    }

    /// An octet string: length, data, padding to a multiple of 4.
    fn octets(&mut self, what: &'static str) -> Result<Vec<u8>, CodecError> {
        let len = usize::try_from(self.u32(what)?).map_err(|_| CodecError::Truncated {
            what,
            needed: usize::MAX,
            available: self.remaining(),
        })?;
        let padded = len
            .checked_add(3)
            .map(|n| n & !3)
            .ok_or(CodecError::Truncated {
                what,
                needed: usize::MAX,
                available: self.remaining(),
            })?;
        let data = self.take(padded, what)?;
        Ok(data[..len].to_vec())
    }

    fn search_ranges(&mut self) -> Result<Vec<SearchRange>, CodecError> {
        let mut out = Vec::new();
        while self.remaining() > 0 {
            let (start, include) = self.oid()?;
            let (end, _) = self.oid()?;
            out.push(SearchRange {
                start,
                include,
                end,
            });
        }
        Ok(out)
    }

    fn varbinds(&mut self) -> Result<Vec<VarBind>, CodecError> {
        let mut out = Vec::new();
        while self.remaining() > 0 {
            out.push(self.varbind()?);
        }
        Ok(out)
    }

    fn varbind(&mut self) -> Result<VarBind, CodecError> {
        let ty = self.u16("varbind type")?;
        self.skip(2, "varbind reserved")?;
        let (name, _) = self.oid()?;
        let value = match ty {
            2 => Value::Integer(self.u32("Integer")? as i32),
            4 => Value::OctetString(self.octets("OctetString")?),
            5 => Value::Null,
            6 => Value::ObjectIdentifier(self.oid()?.0),
            64 => {
                let b = self.octets("IpAddress")?;
                let a: [u8; 4] = b
                    .as_slice()
                    .try_into()
                    .map_err(|_| CodecError::BadIpAddressLength(b.len()))?;
                Value::IpAddress(a)
            }
            65 => Value::Counter32(self.u32("Counter32")?),
            66 => Value::Gauge32(self.u32("Gauge32")?),
            67 => Value::TimeTicks(self.u32("TimeTicks")?),
            68 => Value::Opaque(self.octets("Opaque")?),
            70 => Value::Counter64(self.u64("Counter64")?),
            128 => Value::NoSuchObject,
            129 => Value::NoSuchInstance,
            130 => Value::EndOfMibView,
            other => return Err(CodecError::UnknownValueType(other)),
        };
        Ok(VarBind { name, value })
    }
}

/// Network-byte-order writer.
struct Writer {
    buf: Vec<u8>,
    compress: bool,
}

impl Writer {
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn oid(&mut self, oid: &Oid, include: bool) -> Result<(), CodecError> {
        let ids = oid.as_slice();
        if ids.len() > MAX_OID_LEN {
            return Err(CodecError::OidTooLong(ids.len()));
        }
        let (prefix, rest) = match ids {
            [1, 3, 6, 1, p @ 1..=255, rest @ ..] if self.compress => (*p as u8, rest),
            _ => (0u8, ids),
        };
        // rest.len() <= 128, so it fits in u8.
        let n = u8::try_from(rest.len()).map_err(|_| CodecError::OidTooLong(ids.len()))?;
        self.buf
            .extend_from_slice(&[n, prefix, u8::from(include), 0]);
        for id in rest {
            self.u32(*id);
        }
        Ok(())
    }

    fn octets(&mut self, data: &[u8]) -> Result<(), CodecError> {
        let len = u32::try_from(data.len()).map_err(|_| CodecError::TooLong("octet string"))?;
        self.u32(len);
        self.buf.extend_from_slice(data);
        let pad = (4 - data.len() % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        Ok(())
    }

    fn search_ranges(&mut self, ranges: &[SearchRange]) -> Result<(), CodecError> {
        for r in ranges {
            self.oid(&r.start, r.include)?;
            self.oid(&r.end, false)?;
        }
        Ok(())
    }

    fn varbinds(&mut self, vbs: &[VarBind]) -> Result<(), CodecError> {
        for vb in vbs {
            self.varbind(vb)?;
        }
        Ok(())
    }

    fn varbind(&mut self, vb: &VarBind) -> Result<(), CodecError> {
        let ty: u16 = match &vb.value {
            Value::Integer(_) => 2,
            Value::OctetString(_) => 4,
            Value::Null => 5,
            Value::ObjectIdentifier(_) => 6,
            Value::IpAddress(_) => 64,
            Value::Counter32(_) => 65,
            Value::Gauge32(_) => 66,
            Value::TimeTicks(_) => 67,
            Value::Opaque(_) => 68,
            Value::Counter64(_) => 70,
            Value::NoSuchObject => 128,
            Value::NoSuchInstance => 129,
            Value::EndOfMibView => 130,
        };
        self.u16(ty);
        self.u16(0);
        self.oid(&vb.name, false)?;
        match &vb.value {
            Value::Integer(i) => self.buf.extend_from_slice(&i.to_be_bytes()),
            Value::OctetString(b) | Value::Opaque(b) => self.octets(b)?,
            Value::ObjectIdentifier(o) => self.oid(o, false)?,
            Value::IpAddress(a) => self.octets(a)?,
            Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => self.u32(*v),
            Value::Counter64(v) => self.buf.extend_from_slice(&v.to_be_bytes()),
            Value::Null | Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView => {}
        }
        Ok(())
    }
}

/// Errors from [`read_frame`].
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("connection closed in the middle of a PDU ({0})")]
    UnexpectedEof(&'static str),
    #[error("PDU payload length {length} exceeds the limit of {limit} bytes; framing lost")]
    TooLarge { length: u32, limit: u32 },
    #[error("I/O error reading a PDU: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame: the 20-byte header, then exactly `payload_length` bytes,
/// across any number of partial reads. `Ok(None)` on a clean EOF between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_payload: u32,
) -> Result<Option<(Header, Vec<u8>)>, FrameError> {
    let mut head = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        let n = reader.read(&mut head[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(FrameError::UnexpectedEof("header"))
            };
        }
        filled += n;
    }
    let header = Header::decode(&head).map_err(|_| FrameError::UnexpectedEof("header"))?;
    if header.payload_length > max_payload {
        return Err(FrameError::TooLarge {
            length: header.payload_length,
            limit: max_payload,
        });
    }
    let len = usize::try_from(header.payload_length).map_err(|_| FrameError::TooLarge {
        length: header.payload_length,
        limit: max_payload,
    })?;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::UnexpectedEof("payload")
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(Some((header, payload)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn oid(s: &str) -> Oid {
        Oid::parse(s).unwrap()
    }

    fn vb(name: &str, value: Value) -> VarBind {
        VarBind {
            name: oid(name),
            value,
        }
    }

    fn all_values() -> Vec<VarBind> {
        vec![
            vb("1.3.6.1.4.1.8072.1", Value::Integer(-42)),
            vb("1.3.6.1.4.1.8072.2", Value::Integer(i32::MIN)),
            vb(
                "1.3.6.1.4.1.8072.3",
                Value::OctetString(vec![0, 0xff, 0x80, 1, 2]),
            ),
            vb("1.3.6.1.4.1.8072.4", Value::OctetString(vec![])),
            vb("1.3.6.1.4.1.8072.5", Value::string("abcd")),
            vb("1.3.6.1.4.1.8072.6", Value::Null),
            vb(
                "1.3.6.1.4.1.8072.7",
                Value::ObjectIdentifier(oid("1.3.6.1.2.1.1.3.0")),
            ),
            vb(
                "1.3.6.1.4.1.8072.8",
                Value::ObjectIdentifier(Oid::default()),
            ),
            vb("1.3.6.1.4.1.8072.9", Value::IpAddress([200, 1, 2, 3])),
            vb("1.3.6.1.4.1.8072.10", Value::Counter32(u32::MAX)),
            vb("1.3.6.1.4.1.8072.11", Value::Gauge32(7)),
            vb("1.3.6.1.4.1.8072.12", Value::TimeTicks(u32::MAX)),
            vb("1.3.6.1.4.1.8072.13", Value::Opaque(vec![1, 2, 3])),
            vb("1.3.6.1.4.1.8072.14", Value::Counter64(u64::MAX - 1)),
            vb("1.3.6.1.4.1.8072.15", Value::NoSuchObject),
            vb("1.3.6.1.4.1.8072.16", Value::NoSuchInstance),
            vb("1.3.6.1.4.1.8072.17", Value::EndOfMibView),
            vb("1.2.3", Value::Integer(1)),
        ]
    }

    fn ranges() -> Vec<SearchRange> {
        vec![
            SearchRange {
                start: oid("1.3.6.1.4.1.8072.9999"),
                include: true,
                end: oid("1.3.6.1.4.1.8072.10000"),
            },
            SearchRange {
                start: oid("1.3.6.1.2.1.1.3.0"),
                include: false,
                end: Oid::default(),
            },
            SearchRange {
                start: Oid::default(),
                include: false,
                end: Oid::default(),
            },
        ]
    }

    /// Every PDU type with representative contents.
    fn all_pdus() -> Vec<Pdu> {
        let payloads = vec![
            Payload::Open(Open {
                timeout: 5,
                id: oid("1.3.6.1.4.1.8072.9999"),
                descr: b"postfix-agentx".to_vec(),
            }),
            Payload::Close(CloseReason::Shutdown),
            Payload::Close(CloseReason::Unknown(99)),
            Payload::Register(Register {
                timeout: 0,
                priority: 127,
                range_subid: 0,
                subtree: oid("1.3.6.1.4.1.8072.9999.25"),
                upper_bound: None,
            }),
            Payload::Register(Register {
                timeout: 3,
                priority: 1,
                range_subid: 6,
                subtree: oid("1.3.6.1.2.1.2.2.1.1"),
                upper_bound: Some(22),
            }),
            Payload::Unregister(Unregister {
                priority: 127,
                range_subid: 0,
                subtree: oid("1.3.6.1.4.1.8072.9999.25"),
                upper_bound: None,
            }),
            Payload::Unregister(Unregister {
                priority: 127,
                range_subid: 2,
                subtree: oid("1.3.6.1.4.1.8072.9999.25"),
                upper_bound: Some(u32::MAX),
            }),
            Payload::Get(ranges()),
            Payload::GetNext(ranges()),
            Payload::GetNext(vec![]),
            Payload::GetBulk(GetBulk {
                non_repeaters: 1,
                max_repetitions: 10,
                ranges: ranges(),
            }),
            Payload::TestSet(all_values()),
            Payload::CommitSet,
            Payload::UndoSet,
            Payload::CleanupSet,
            Payload::Notify(all_values()),
            Payload::Ping,
            Payload::IndexAllocate(vec![vb("1.3.6.1.2.1.4.1", Value::Integer(3))]),
            Payload::IndexDeallocate(vec![vb("1.3.6.1.2.1.4.1", Value::Integer(3))]),
            Payload::AddAgentCaps {
                id: oid("1.3.6.1.4.1.8072.9999.1"),
                descr: b"caps".to_vec(),
            },
            Payload::RemoveAgentCaps {
                id: oid("1.3.6.1.4.1.8072.9999.1"),
            },
            Payload::Response(Response {
                sys_uptime: u32::MAX,
                error: ErrorStatus::NotWritable,
                index: 1,
                varbinds: all_values(),
            }),
            Payload::Response(Response {
                sys_uptime: 0,
                error: ErrorStatus::Other(999),
                index: 0,
                varbinds: vec![],
            }),
        ];
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| Pdu::new(p, 7, 1000 + i as u32, u32::MAX - i as u32))
            .collect()
    }

    /// Encodes `pdu` in little-endian byte order (flag clear, no prefix
    /// compression) with a mirror of the big-endian writer; for tests only.
    pub(crate) fn to_little_endian(pdu: &Pdu) -> Vec<u8> {
        let be = pdu
            .encode_with(EncodeOptions {
                compress_oid_prefix: false,
            })
            .unwrap();
        let mut le = LeWriter { buf: Vec::new() };
        le.pdu(pdu, be.len() - HEADER_LEN);
        assert_eq!(le.buf.len(), be.len());
        le.buf
    }

    struct LeWriter {
        buf: Vec<u8>,
    }

    impl LeWriter {
        fn u16(&mut self, v: u16) {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        fn u32(&mut self, v: u32) {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        fn oid(&mut self, o: &Oid, include: bool) {
            self.buf
                .extend_from_slice(&[o.len() as u8, 0, include as u8, 0]);
            for id in o.as_slice() {
                self.u32(*id);
            }
        }
        fn octets(&mut self, d: &[u8]) {
            self.u32(d.len() as u32);
            self.buf.extend_from_slice(d);
            while self.buf.len() % 4 != 0 {
                self.buf.push(0);
            }
        }
        fn varbinds(&mut self, vbs: &[VarBind]) {
            for vb in vbs {
                let mut w = Writer {
                    buf: vec![],
                    compress: false,
                };
                w.varbind(vb).unwrap();
                self.u16(u16::from_be_bytes([w.buf[0], w.buf[1]]));
                self.u16(0);
                self.oid(&vb.name, false);
                match &vb.value {
                    Value::Integer(i) => self.buf.extend_from_slice(&i.to_le_bytes()),
                    Value::OctetString(b) | Value::Opaque(b) => self.octets(b),
                    Value::ObjectIdentifier(o) => self.oid(o, false),
                    Value::IpAddress(a) => self.octets(a),
                    Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => self.u32(*v),
                    Value::Counter64(v) => self.buf.extend_from_slice(&v.to_le_bytes()),
                    _ => {}
                }
            }
        }
        fn ranges(&mut self, rs: &[SearchRange]) {
            for r in rs {
                self.oid(&r.start, r.include);
                self.oid(&r.end, false);
            }
        }
        fn pdu(&mut self, p: &Pdu, len: usize) {
            let h = &p.header;
            let f = if p.context.is_some() {
                flags::NON_DEFAULT_CONTEXT
            } else {
                0
            };
            self.buf
                .extend_from_slice(&[1, p.payload.pdu_type() as u8, h.flags | f, 0]);
            self.u32(h.session_id);
            self.u32(h.transaction_id);
            self.u32(h.packet_id);
            self.u32(len as u32);
            if let Some(c) = &p.context {
                self.octets(c);
            }
            match &p.payload {
                Payload::Open(o) => {
                    self.buf.extend_from_slice(&[o.timeout, 0, 0, 0]);
                    self.oid(&o.id, false);
                    self.octets(&o.descr);
                }
                Payload::Close(r) => self.buf.extend_from_slice(&[r.to_u8(), 0, 0, 0]),
                Payload::Register(r) => {
                    self.buf
                        .extend_from_slice(&[r.timeout, r.priority, r.range_subid, 0]);
                    self.oid(&r.subtree, false);
                    if let Some(u) = r.upper_bound {
                        self.u32(u);
                    }
                }
                Payload::Unregister(r) => {
                    self.buf
                        .extend_from_slice(&[0, r.priority, r.range_subid, 0]);
                    self.oid(&r.subtree, false);
                    if let Some(u) = r.upper_bound {
                        self.u32(u);
                    }
                }
                Payload::Get(rs) | Payload::GetNext(rs) => self.ranges(rs),
                Payload::GetBulk(b) => {
                    self.u16(b.non_repeaters);
                    self.u16(b.max_repetitions);
                    self.ranges(&b.ranges);
                }
                Payload::TestSet(v)
                | Payload::Notify(v)
                | Payload::IndexAllocate(v)
                | Payload::IndexDeallocate(v) => self.varbinds(v),
                Payload::AddAgentCaps { id, descr } => {
                    self.oid(id, false);
                    self.octets(descr);
                }
                Payload::RemoveAgentCaps { id } => self.oid(id, false),
                Payload::Response(r) => {
                    self.u32(r.sys_uptime);
                    self.u16(r.error.to_u16());
                    self.u16(r.index);
                    self.varbinds(&r.varbinds);
                }
                Payload::CommitSet | Payload::UndoSet | Payload::CleanupSet | Payload::Ping => {}
            }
        }
    }

    fn same_meaning(a: &Pdu, b: &Pdu) {
        assert_eq!(a.payload, b.payload);
        assert_eq!(a.context, b.context);
        assert_eq!(a.header.session_id, b.header.session_id);
        assert_eq!(a.header.transaction_id, b.header.transaction_id);
        assert_eq!(a.header.packet_id, b.header.packet_id);
        assert_eq!(a.header.pdu_type, b.payload.pdu_type() as u8);
    }

    #[test]
    fn every_pdu_type_round_trips_in_both_compression_modes() {
        for pdu in all_pdus() {
            for compress in [true, false] {
                let bytes = pdu
                    .encode_with(EncodeOptions {
                        compress_oid_prefix: compress,
                    })
                    .unwrap();
                assert_eq!(bytes.len() % 4, 0);
                assert_eq!(bytes[0], 1);
                assert_ne!(bytes[2] & flags::NETWORK_BYTE_ORDER, 0);
                let back = Pdu::decode(&bytes).unwrap();
                same_meaning(&pdu, &back);
                assert_eq!(
                    back.header.payload_length as usize,
                    bytes.len() - HEADER_LEN
                );
            }
        }
    }

    #[test]
    fn every_pdu_type_decodes_from_little_endian() {
        for pdu in all_pdus() {
            let le = to_little_endian(&pdu);
            assert_eq!(le[2] & flags::NETWORK_BYTE_ORDER, 0);
            let back = Pdu::decode(&le).unwrap_or_else(|e| panic!("{pdu:?}: {e}"));
            same_meaning(&pdu, &back);
            assert_eq!(back.header.byte_order(), ByteOrder::Little);
        }
    }

    #[test]
    fn context_round_trips_only_where_allowed() {
        for mut pdu in all_pdus() {
            pdu.context = Some(b"ctx\x00x".to_vec());
            let bytes = pdu.encode().unwrap();
            let back = Pdu::decode(&bytes).unwrap();
            let kind = pdu.payload.pdu_type();
            if kind.may_have_context() {
                assert_ne!(bytes[2] & flags::NON_DEFAULT_CONTEXT, 0);
                assert_eq!(back.context.as_deref(), Some(&b"ctx\x00x"[..]));
                // A 5-byte context is padded to 8 after its 4-byte length.
                assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 5);
            } else {
                assert_eq!(bytes[2] & flags::NON_DEFAULT_CONTEXT, 0);
                assert_eq!(back.context, None);
            }
            let le = to_little_endian(&Pdu {
                context: back.context.clone(),
                ..pdu.clone()
            });
            let le_back = Pdu::decode(&le).unwrap();
            assert_eq!(le_back.context, back.context);
            assert_eq!(le_back.payload, pdu.payload);
        }
    }

    #[test]
    fn other_header_flags_are_kept() {
        let mut pdu = all_pdus().remove(3); // Register
        pdu.header.flags = flags::INSTANCE_REGISTRATION;
        let bytes = pdu.encode().unwrap();
        assert_eq!(
            bytes[2],
            flags::INSTANCE_REGISTRATION | flags::NETWORK_BYTE_ORDER
        );
        let mut ia = Pdu::new(Payload::IndexAllocate(vec![]), 1, 2, 3);
        ia.header.flags = flags::NEW_INDEX | flags::ANY_INDEX;
        let back = Pdu::decode(&ia.encode().unwrap()).unwrap();
        assert!(back.header.has_flag(flags::NEW_INDEX));
        assert!(back.header.has_flag(flags::ANY_INDEX));
    }

    #[test]
    fn prefix_compression_layout() {
        let mut w = Writer {
            buf: vec![],
            compress: true,
        };
        w.oid(&oid("1.3.6.1.4.1.8072"), true).unwrap();
        assert_eq!(w.buf, [2, 4, 1, 0, 0, 0, 0, 1, 0, 0, 0x1f, 0x88]);
        // Exactly 1.3.6.1.X compresses to zero sub-ids.
        let mut w = Writer {
            buf: vec![],
            compress: true,
        };
        w.oid(&oid("1.3.6.1.2"), false).unwrap();
        assert_eq!(w.buf, [0, 2, 0, 0]);
        // X = 0 or > 255 cannot be a prefix.
        for o in ["1.3.6.1.0.5", "1.3.6.1.256.5", "1.3.6.2.1", "1.3.6.1"] {
            let mut w = Writer {
                buf: vec![],
                compress: true,
            };
            w.oid(&oid(o), false).unwrap();
            assert_eq!(w.buf[1], 0, "{o}");
            assert_eq!(usize::from(w.buf[0]), oid(o).len(), "{o}");
        }
        // Empty (null) OID.
        let mut w = Writer {
            buf: vec![],
            compress: true,
        };
        w.oid(&Oid::default(), false).unwrap();
        assert_eq!(w.buf, [0, 0, 0, 0]);
        // Decoding expands the prefix.
        let mut r = Reader {
            buf: &[1, 4, 1, 0, 0, 0, 0, 9],
            pos: 0,
            order: ByteOrder::Big,
        };
        assert_eq!(r.oid().unwrap(), (oid("1.3.6.1.4.9"), true));
    }

    #[test]
    fn octet_strings_are_padded_and_binary_safe() {
        for len in 0..9usize {
            let data: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(0x9d) | 0x80)
                .collect();
            let mut w = Writer {
                buf: vec![],
                compress: true,
            };
            w.octets(&data).unwrap();
            assert_eq!(w.buf.len(), 4 + len.div_ceil(4) * 4);
            let mut r = Reader {
                buf: &w.buf,
                pos: 0,
                order: ByteOrder::Big,
            };
            assert_eq!(r.octets("x").unwrap(), data);
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn ip_address_is_four_octets() {
        let pdu = Pdu::new(
            Payload::Notify(vec![vb(
                "1.3.6.1.4.1.1.1",
                Value::IpAddress([200, 1, 2, 3]),
            )]),
            1,
            2,
            3,
        );
        let bytes = pdu.encode().unwrap();
        assert_eq!(&bytes[bytes.len() - 8..], &[0, 0, 0, 4, 200, 1, 2, 3]);
        // A 5-byte IpAddress is rejected.
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 5] = 5;
        bad.extend_from_slice(&[9, 0, 0, 0]);
        let plen = (bad.len() - HEADER_LEN) as u32;
        bad[16..20].copy_from_slice(&plen.to_be_bytes());
        assert_eq!(Pdu::decode(&bad), Err(CodecError::BadIpAddressLength(5)));
    }

    #[test]
    fn response_uptime_and_error_codes_use_full_ranges() {
        for (status, code) in [
            (ErrorStatus::NoError, 0u16),
            (ErrorStatus::GenErr, 5),
            (ErrorStatus::NotWritable, 17),
            (ErrorStatus::InconsistentName, 18),
            (ErrorStatus::OpenFailed, 256),
            (ErrorStatus::DuplicateRegistration, 263),
            (ErrorStatus::ParseError, 266),
            (ErrorStatus::ProcessingError, 268),
            (ErrorStatus::Other(19), 19),
            (ErrorStatus::Other(u16::MAX), u16::MAX),
        ] {
            assert_eq!(status.to_u16(), code);
            assert_eq!(ErrorStatus::from_u16(code), status);
            let pdu = Pdu::new(
                Payload::Response(Response {
                    sys_uptime: u32::MAX,
                    error: status,
                    index: 3,
                    varbinds: vec![],
                }),
                1,
                2,
                3,
            );
            let bytes = pdu.encode().unwrap();
            assert_eq!(
                &bytes[20..28],
                &[0xff, 0xff, 0xff, 0xff, (code >> 8) as u8, code as u8, 0, 3]
            );
            assert_eq!(Pdu::decode(&bytes).unwrap().payload, pdu.payload);
        }
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let good = Pdu::new(Payload::GetNext(ranges()), 1, 2, 3)
            .encode()
            .unwrap();
        // Wrong version.
        let mut b = good.clone();
        b[0] = 2;
        assert_eq!(Pdu::decode(&b), Err(CodecError::BadVersion(2)));
        // Unknown type: header still decodable.
        let mut b = good.clone();
        b[1] = 77;
        assert_eq!(Pdu::decode(&b), Err(CodecError::UnknownPduType(77)));
        assert_eq!(Header::decode(&b).unwrap().packet_id, 3);
        // Short header.
        assert!(matches!(
            Header::decode(&good[..19]),
            Err(CodecError::Truncated { .. })
        ));
        // Length that lies (bigger and smaller than the data).
        let mut b = good.clone();
        b[19] = b[19].wrapping_add(4);
        assert!(matches!(
            Pdu::decode(&b),
            Err(CodecError::LengthMismatch { .. })
        ));
        // Truncated payload inside an OID.
        let cut = &good[..good.len() - 4];
        let h = Header::decode(cut).unwrap();
        assert!(matches!(
            Pdu::decode_payload(h, &cut[HEADER_LEN..]),
            Err(CodecError::Truncated { .. })
        ));
        // OID longer than 128 sub-ids.
        let mut long = vec![1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0];
        long[0] = 1;
        let mut payload = vec![129u8, 0, 0, 0];
        payload.extend(vec![0u8; 129 * 4]);
        payload.extend_from_slice(&[0, 0, 0, 0]);
        long[1] = PduType::Get as u8;
        long[2] = flags::NETWORK_BYTE_ORDER;
        long[16..20].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        long.extend(&payload);
        assert_eq!(Pdu::decode(&long), Err(CodecError::OidTooLong(129)));
        // With the prefix, 124 sub-ids become 129.
        let mut b = long[..HEADER_LEN].to_vec();
        let mut payload = vec![124u8, 4, 0, 0];
        payload.extend(vec![0u8; 124 * 4]);
        payload.extend_from_slice(&[0, 0, 0, 0]);
        b[16..20].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        b.extend(&payload);
        assert_eq!(Pdu::decode(&b), Err(CodecError::OidTooLong(129)));
        // Encoding refuses too long OIDs too.
        let p = Pdu::new(
            Payload::Get(vec![SearchRange {
                start: Oid(vec![1; 129]),
                include: false,
                end: Oid::default(),
            }]),
            0,
            0,
            0,
        );
        assert_eq!(p.encode(), Err(CodecError::OidTooLong(129)));
        // Octet string length near u32::MAX.
        let mut b = Pdu::new(
            Payload::Open(Open {
                timeout: 0,
                id: Oid::default(),
                descr: vec![],
            }),
            0,
            0,
            0,
        )
        .encode()
        .unwrap();
        let n = b.len();
        b[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(Pdu::decode(&b), Err(CodecError::Truncated { .. })));
        // Unknown value type.
        let mut b = Pdu::new(Payload::Notify(vec![vb("1.2", Value::Null)]), 0, 0, 0)
            .encode()
            .unwrap();
        b[21] = 99;
        assert_eq!(Pdu::decode(&b), Err(CodecError::UnknownValueType(99)));
        // Trailing bytes after a fixed-size payload.
        let mut b = Pdu::new(Payload::Close(CloseReason::Other), 0, 0, 0)
            .encode()
            .unwrap();
        b.extend_from_slice(&[0; 4]);
        b[19] = 8;
        assert!(matches!(
            Pdu::decode(&b),
            Err(CodecError::TrailingBytes { .. })
        ));
    }

    /// xorshift64*: deterministic pseudo-random bytes without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn random_truncated_and_mutated_input_never_panics() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let goods: Vec<Vec<u8>> = all_pdus()
            .iter()
            .flat_map(|p| {
                let mut c = p.clone();
                c.context = Some(b"c".to_vec());
                [
                    p.encode().unwrap(),
                    to_little_endian(p),
                    c.encode().unwrap(),
                ]
            })
            .collect();
        for good in &goods {
            // Every truncation, with the header length left as is and fixed up.
            for cut in 0..good.len() {
                let _ = Pdu::decode(&good[..cut]);
                if cut >= HEADER_LEN {
                    if let Ok(h) = Header::decode(&good[..cut]) {
                        let _ = Pdu::decode_payload(h, &good[HEADER_LEN..cut]);
                    }
                }
            }
            // Random byte mutations.
            for _ in 0..300 {
                let mut b = good.clone();
                for _ in 0..(rng.next() % 4 + 1) {
                    let i = (rng.next() as usize) % b.len();
                    b[i] = rng.next() as u8;
                }
                if let Ok(h) = Header::decode(&b) {
                    let _ = Pdu::decode_payload(h, &b[HEADER_LEN..]);
                }
                let _ = Pdu::decode(&b);
            }
        }
        // Pure noise with a plausible header.
        for _ in 0..20_000 {
            let len = (rng.next() % 96) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if b.len() >= HEADER_LEN {
                b[0] = 1;
                b[1] = (rng.next() % 20) as u8;
                let h = Header::decode(&b).unwrap();
                let _ = Pdu::decode_payload(h, &b[HEADER_LEN..]);
            }
            let _ = Pdu::decode(&b);
        }
    }

    #[tokio::test]
    async fn framing_reads_across_partial_reads_and_caps_length() {
        let a = Pdu::new(Payload::Ping, 1, 2, 3).encode().unwrap();
        let b = Pdu::new(Payload::GetNext(ranges()), 1, 2, 4)
            .encode()
            .unwrap();
        let mut all = a.clone();
        all.extend(&b);
        // One byte per read.
        let mut builder = tokio_test_reader(&all);
        let (h1, p1) = read_frame(&mut builder, DEFAULT_MAX_PAYLOAD)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(Pdu::decode_payload(h1, &p1).unwrap().payload, Payload::Ping);
        let (h2, p2) = read_frame(&mut builder, DEFAULT_MAX_PAYLOAD)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(h2.packet_id, 4);
        assert_eq!(
            Pdu::decode_payload(h2, &p2).unwrap().payload,
            Payload::GetNext(ranges())
        );
        assert!(read_frame(&mut builder, DEFAULT_MAX_PAYLOAD)
            .await
            .unwrap()
            .is_none());
        // EOF mid-header and mid-payload.
        let mut r = tokio_test_reader(&b[..10]);
        assert!(matches!(
            read_frame(&mut r, DEFAULT_MAX_PAYLOAD).await,
            Err(FrameError::UnexpectedEof(_))
        ));
        let mut r = tokio_test_reader(&b[..30]);
        assert!(matches!(
            read_frame(&mut r, DEFAULT_MAX_PAYLOAD).await,
            Err(FrameError::UnexpectedEof(_))
        ));
        // Over the cap.
        let mut r = tokio_test_reader(&b);
        assert!(matches!(
            read_frame(&mut r, 8).await,
            Err(FrameError::TooLarge { .. })
        ));
    }

    /// A reader that hands out one byte per read call.
    fn tokio_test_reader(data: &[u8]) -> OneByteReader {
        OneByteReader {
            data: data.to_vec(),
            pos: 0,
        }
    }

    struct OneByteReader {
        data: Vec<u8>,
        pos: usize,
    }

    impl AsyncRead for OneByteReader {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.pos < self.data.len() && buf.remaining() > 0 {
                let b = self.data[self.pos];
                buf.put_slice(&[b]);
                self.pos += 1;
            }
            std::task::Poll::Ready(Ok(()))
        }
    }
}
