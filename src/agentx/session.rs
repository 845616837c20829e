//! The AgentX subagent session over tokio: connect, Open, Register, serve
//! requests from the current MIB view, keep alive with Ping, send
//! notifications, and reconnect with capped exponential back-off.

use crate::agentx::codec::{
    self, CloseReason, ErrorStatus, FrameError, GetBulk, Header, Open, Payload, Pdu, PduType,
    Register, Response, SearchRange,
};
use crate::snmp::{MibView, ViewHandle};
use crate::snmp::{Oid, Value, VarBind};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, error, info, warn};

/// How long to wait for the master to answer Open, Register or Ping.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on varbinds in one GetBulk response.
const MAX_BULK_VARBINDS: usize = 2048;
/// How long to wait for a TCP/unix connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one PDU may take to write when the configured AgentX timeout is
/// 0 (the master's default).
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The bound on writing one PDU: a master that stops reading would otherwise
/// keep the session loop (and its Ping timer) blocked in `write_all` for
/// ever. The master gives up on an answer after its AgentX timeout anyway.
fn write_timeout(cfg: &SessionConfig) -> Duration {
    match cfg.timeout_secs {
        0 => DEFAULT_WRITE_TIMEOUT,
        secs => Duration::from_secs(u64::from(secs)),
    }
}

/// Where the master agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterAddress {
    Unix(PathBuf),
    /// `host:port`
    Tcp(String),
}

impl FromStr for MasterAddress {
    type Err = String;

    /// `unix:/path`, `tcp:host:port`, or a bare `/path` (unix).
    fn from_str(s: &str) -> Result<MasterAddress, String> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("empty unix socket path in master address".to_string());
            }
            Ok(MasterAddress::Unix(PathBuf::from(path)))
        } else if let Some(hp) = s.strip_prefix("tcp:") {
            match hp.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(MasterAddress::Tcp(hp.to_string()))
                }
                _ => Err(format!(
                    "invalid TCP master address {s:?}: expected tcp:HOST:PORT"
                )),
            }
        } else if s.starts_with('/') {
            Ok(MasterAddress::Unix(PathBuf::from(s)))
        } else {
            Err(format!(
                "invalid master address {s:?}: expected unix:/path, tcp:host:port or /path"
            ))
        }
    }
}

impl fmt::Display for MasterAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterAddress::Unix(p) => write!(f, "unix:{}", p.display()),
            MasterAddress::Tcp(hp) => write!(f, "tcp:{hp}"),
        }
    }
}

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub master: MasterAddress,
    /// The one subtree this subagent registers and serves.
    pub subtree: Oid,
    /// Registration priority; lower wins. 127 is the RFC default.
    pub priority: u8,
    /// Sent in the Open PDU; shows up in the master's session table.
    pub description: String,
    /// (sysORID, sysORDescr) rows added to the master's sysORTable with
    /// AddAgentCaps after each registration; the master drops them with
    /// the session.
    pub capabilities: Vec<(Oid, String)>,
    /// Response timeout the master should allow us (Open o.timeout), seconds.
    pub timeout_secs: u8,
    pub ping_interval: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl SessionConfig {
    /// Defaults: priority 127, 5 s timeout, Ping every 15 s, back-off 500 ms .. 15 s.
    pub fn new(master: MasterAddress, subtree: Oid) -> SessionConfig {
        SessionConfig {
            master,
            subtree,
            priority: 127,
            description: "postfix-agentx".to_string(),
            capabilities: Vec::new(),
            timeout_secs: 5,
            ping_interval: Duration::from_secs(15),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(15),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    Connecting,
    Connected { session_id: u32 },
    Disconnected { reason: String },
}

/// Runs the subagent until `shutdown` becomes true (or its sender is dropped).
///
/// Connection problems never end this function: it logs them, publishes
/// `SessionState::Disconnected`, and reconnects with back-off.
pub async fn run(
    cfg: SessionConfig,
    view: ViewHandle,
    mut notifications: mpsc::Receiver<Vec<VarBind>>,
    state: watch::Sender<SessionState>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut notifications_open = true;
    let mut backoff = cfg.backoff_initial;
    // The last failure logged at warn level; repeats go to debug so a master
    // that is down for hours doesn't flood the log.
    let mut last_failure: Option<String> = None;
    loop {
        if shutdown_requested(&shutdown) {
            return Ok(());
        }
        state.send_replace(SessionState::Connecting);
        let exit = run_once(
            &cfg,
            &view,
            &mut notifications,
            &mut notifications_open,
            &state,
            &mut shutdown,
        )
        .await;
        match exit {
            Exit::Shutdown => {
                state.send_replace(SessionState::Disconnected {
                    reason: "shutdown".to_string(),
                });
                return Ok(());
            }
            Exit::Lost { reason, registered } => {
                if registered {
                    // A working session ended: retry soon, the master is probably restarting.
                    backoff = cfg.backoff_initial;
                    last_failure = None;
                    info!(master = %cfg.master, %reason, "AgentX session ended; reconnecting");
                } else if last_failure.as_deref() == Some(reason.as_str()) {
                    debug!(master = %cfg.master, %reason, retry_in = ?backoff, "AgentX connection failed again");
                } else {
                    warn!(master = %cfg.master, %reason, retry_in = ?backoff, "AgentX connection failed; will keep retrying");
                    last_failure = Some(reason.clone());
                }
                state.send_replace(SessionState::Disconnected { reason });
            }
        }
        let deadline = Instant::now() + backoff;
        backoff = backoff.saturating_mul(2).min(cfg.backoff_max);
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => break,
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return Ok(());
                    }
                }
                n = notifications.recv(), if notifications_open => match n {
                    Some(vbs) => warn!(
                        varbinds = vbs.len(),
                        "notification dropped: not connected to the AgentX master"
                    ),
                    None => notifications_open = false,
                },
            }
        }
    }
}

fn shutdown_requested(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// How one connection ended.
enum Exit {
    Shutdown,
    Lost { reason: String, registered: bool },
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

type FrameResult = Result<Option<(Header, Vec<u8>)>, FrameError>;

/// Aborts the reader task when the connection is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One open connection to the master.
struct Conn {
    writer: WriteHalf<Box<dyn Stream>>,
    /// Frames from a reader task; reading in a task keeps partial reads
    /// intact while the main loop `select!`s on other events.
    frames: mpsc::Receiver<FrameResult>,
    _reader: AbortOnDrop,
    next_packet_id: u32,
    session_id: u32,
    /// See [`write_timeout`].
    write_timeout: Duration,
}

impl Conn {
    async fn connect(master: &MasterAddress, write_timeout: Duration) -> anyhow::Result<Conn> {
        use anyhow::Context;
        let stream: Box<dyn Stream> = match master {
            MasterAddress::Unix(path) => Box::new(
                timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(path))
                    .await
                    .context("connect timed out")?
                    .with_context(|| format!("connecting to unix:{}", path.display()))?,
            ),
            MasterAddress::Tcp(hp) => {
                let s = timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(hp.as_str()))
                    .await
                    .context("connect timed out")?
                    .with_context(|| format!("connecting to tcp:{hp}"))?;
                // Small request/response PDUs: don't let Nagle delay them.
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
        };
        let (reader, writer) = tokio::io::split(stream);
        let (tx, frames) = mpsc::channel(16);
        let task = tokio::spawn(read_frames(reader, tx));
        Ok(Conn {
            writer,
            frames,
            _reader: AbortOnDrop(task),
            next_packet_id: 1,
            session_id: 0,
            write_timeout,
        })
    }

    fn packet_id(&mut self) -> u32 {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
        id
    }

    async fn send(&mut self, pdu: &Pdu) -> anyhow::Result<()> {
        let bytes = pdu.encode()?;
        // A timed-out write may have sent part of the PDU: the framing is
        // lost, so the caller drops the connection.
        match timeout(self.write_timeout, self.writer.write_all(&bytes)).await {
            Ok(written) => Ok(written?),
            Err(_) => anyhow::bail!(
                "the master read nothing of a {}-byte PDU for {:?}: it is not reading",
                bytes.len(),
                self.write_timeout
            ),
        }
    }

    /// Sends a request of ours and returns its packet id.
    async fn send_request(&mut self, payload: Payload) -> anyhow::Result<u32> {
        let id = self.packet_id();
        let pdu = Pdu::new(payload, self.session_id, id, id);
        self.send(&pdu).await?;
        Ok(id)
    }

    /// Waits for the Response to `packet_id`, ignoring other PDUs (only used
    /// before registration, when the master has nothing to ask us).
    async fn await_response(
        &mut self,
        packet_id: u32,
        what: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(Header, Response), Exit> {
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => return Err(lost(format!("no response to {what} within {RESPONSE_TIMEOUT:?}"), false)),
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return Err(Exit::Shutdown);
                    }
                }
                frame = self.frames.recv() => {
                    let (header, payload) = match frame {
                        Some(Ok(Some(f))) => f,
                        Some(Ok(None)) | None => return Err(lost(format!("master closed the connection while waiting for the {what} response"), false)),
                        Some(Err(e)) => return Err(lost(format!("reading {what} response: {e}"), false)),
                    };
                    match Pdu::decode_payload(header, &payload) {
                        Ok(Pdu { header, payload: Payload::Response(r), .. }) if header.packet_id == packet_id => {
                            return Ok((header, r));
                        }
                        Ok(Pdu { payload: Payload::Close(reason), .. }) => {
                            return Err(lost(format!("master sent Close ({reason:?}) while waiting for the {what} response"), false));
                        }
                        Ok(other) => debug!(pdu = ?other.payload.pdu_type(), "ignoring PDU while waiting for {what} response"),
                        Err(e) => warn!(error = %e, "malformed PDU from master while waiting for {what} response"),
                    }
                }
            }
        }
    }
}

fn lost(reason: String, registered: bool) -> Exit {
    Exit::Lost { reason, registered }
}

async fn read_frames(mut reader: ReadHalf<Box<dyn Stream>>, tx: mpsc::Sender<FrameResult>) {
    loop {
        let r = codec::read_frame(&mut reader, codec::DEFAULT_MAX_PAYLOAD).await;
        let stop = !matches!(r, Ok(Some(_)));
        if tx.send(r).await.is_err() || stop {
            return;
        }
    }
}

/// Connects, opens, registers and serves until the connection ends.
async fn run_once(
    cfg: &SessionConfig,
    view: &ViewHandle,
    notifications: &mut mpsc::Receiver<Vec<VarBind>>,
    notifications_open: &mut bool,
    state: &watch::Sender<SessionState>,
    shutdown: &mut watch::Receiver<bool>,
) -> Exit {
    let connect = tokio::select! {
        c = Conn::connect(&cfg.master, write_timeout(cfg)) => c,
        _ = wait_for_shutdown(shutdown) => return Exit::Shutdown,
    };
    let mut conn = match connect {
        Ok(c) => c,
        Err(e) => return lost(format!("{e:#}"), false),
    };
    debug!(master = %cfg.master, "connected; sending Open");

    let open = Payload::Open(Open {
        timeout: cfg.timeout_secs,
        id: Oid::default(),
        descr: cfg.description.as_bytes().to_vec(),
    });
    let id = match conn.send_request(open).await {
        Ok(id) => id,
        Err(e) => return lost(format!("sending Open: {e:#}"), false),
    };
    let (header, resp) = match conn.await_response(id, "Open", shutdown).await {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    if resp.error != ErrorStatus::NoError {
        error!(master = %cfg.master, error = ?resp.error, "AgentX master refused Open");
        return lost(format!("master refused Open: {:?}", resp.error), false);
    }
    conn.session_id = header.session_id;
    info!(master = %cfg.master, session_id = conn.session_id, "AgentX session opened");

    let register = Payload::Register(Register {
        timeout: 0,
        priority: cfg.priority,
        range_subid: 0,
        subtree: cfg.subtree.clone(),
        upper_bound: None,
    });
    let id = match conn.send_request(register).await {
        Ok(id) => id,
        Err(e) => return lost(format!("sending Register: {e:#}"), false),
    };
    let (_, resp) = match conn.await_response(id, "Register", shutdown).await {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    if resp.error != ErrorStatus::NoError {
        let hint = match resp.error {
            ErrorStatus::DuplicateRegistration => {
                "another subagent already registered this subtree with the same priority; \
                 stop it or configure a different priority"
            }
            ErrorStatus::RequestDenied => "the master's access control denied the registration",
            _ => "the master rejected the registration",
        };
        error!(
            subtree = %cfg.subtree, priority = cfg.priority, error = ?resp.error,
            "AgentX registration refused: {hint}"
        );
        close(&mut conn, CloseReason::Other).await;
        return lost(
            format!(
                "registration of {} refused: {:?} ({hint})",
                cfg.subtree, resp.error
            ),
            false,
        );
    }
    info!(
        subtree = %cfg.subtree, priority = cfg.priority, session_id = conn.session_id,
        "AgentX subtree registered"
    );
    for (caps_id, descr) in &cfg.capabilities {
        let caps = Payload::AddAgentCaps {
            id: caps_id.clone(),
            descr: descr.as_bytes().to_vec(),
        };
        let id = match conn.send_request(caps).await {
            Ok(id) => id,
            Err(e) => return lost(format!("sending AddAgentCaps: {e:#}"), false),
        };
        let (_, resp) = match conn.await_response(id, "AddAgentCaps", shutdown).await {
            Ok(r) => r,
            Err(exit) => return exit,
        };
        // Serving works without it: a refusal is worth a warning, not a
        // reconnect.
        if resp.error != ErrorStatus::NoError {
            warn!(sys_or_id = %caps_id, error = ?resp.error, "the master refused AddAgentCaps (sysORTable row)");
        }
    }
    state.send_replace(SessionState::Connected {
        session_id: conn.session_id,
    });

    serve(
        cfg,
        view,
        &mut conn,
        notifications,
        notifications_open,
        shutdown,
    )
    .await
}

async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if shutdown_requested(shutdown) {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

async fn close(conn: &mut Conn, reason: CloseReason) {
    if let Err(e) = conn.send_request(Payload::Close(reason)).await {
        debug!(error = %e, "sending Close failed");
    }
    let _ = conn.writer.shutdown().await;
}

/// The registered session's main loop.
async fn serve(
    cfg: &SessionConfig,
    view: &ViewHandle,
    conn: &mut Conn,
    notifications: &mut mpsc::Receiver<Vec<VarBind>>,
    notifications_open: &mut bool,
    shutdown: &mut watch::Receiver<bool>,
) -> Exit {
    let ping_interval = cfg.ping_interval.max(Duration::from_millis(10));
    let mut next_ping = Instant::now() + ping_interval;
    // (packet id, deadline) of the Ping we are waiting for.
    let mut pending_ping: Option<(u32, Instant)> = None;
    loop {
        let ping_deadline = pending_ping.map(|(_, d)| d);
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    info!(session_id = conn.session_id, "shutting down: closing AgentX session");
                    close(conn, CloseReason::Shutdown).await;
                    return Exit::Shutdown;
                }
            }
            _ = sleep_until(next_ping), if pending_ping.is_none() => {
                match conn.send_request(Payload::Ping).await {
                    Ok(id) => pending_ping = Some((id, Instant::now() + RESPONSE_TIMEOUT.min(ping_interval.max(Duration::from_secs(1))))),
                    Err(e) => return lost(format!("sending Ping: {e:#}"), true),
                }
            }
            _ = sleep_until(ping_deadline.unwrap_or_else(Instant::now)), if ping_deadline.is_some() => {
                return lost("master did not answer Ping; assuming it is gone".to_string(), true);
            }
            n = notifications.recv(), if *notifications_open => match n {
                Some(varbinds) => {
                    let count = varbinds.len();
                    match conn.send_request(Payload::Notify(varbinds)).await {
                        Ok(id) => debug!(packet_id = id, varbinds = count, "sent Notify"),
                        Err(e) => return lost(format!("sending Notify: {e:#}"), true),
                    }
                }
                None => *notifications_open = false,
            },
            frame = conn.frames.recv() => {
                let (header, payload) = match frame {
                    Some(Ok(Some(f))) => f,
                    Some(Ok(None)) | None => return lost("master closed the connection (EOF)".to_string(), true),
                    Some(Err(e @ FrameError::TooLarge { .. })) => {
                        warn!(error = %e, "dropping AgentX connection");
                        return lost(e.to_string(), true);
                    }
                    Some(Err(e)) => return lost(e.to_string(), true),
                };
                match handle_frame(cfg, view, conn, header, &payload) {
                    Action::Reply(pdu) => {
                        if let Err(e) = conn.send(&pdu).await {
                            warn!(error = %format!("{e:#}"), "cannot write a response; dropping the AgentX connection");
                            return lost(format!("writing response: {e:#}"), true);
                        }
                    }
                    Action::None => {}
                    Action::Response(header, resp) => {
                        if pending_ping.is_some_and(|(id, _)| id == header.packet_id) {
                            pending_ping = None;
                            next_ping = Instant::now() + ping_interval;
                        } else if resp.error != ErrorStatus::NoError {
                            warn!(packet_id = header.packet_id, error = ?resp.error, "master answered our PDU with an error");
                        } else {
                            debug!(packet_id = header.packet_id, "response from master");
                        }
                    }
                    Action::Closed(reason) => {
                        return lost(format!("master sent Close ({reason:?})"), true);
                    }
                }
            }
        }
    }
}

enum Action {
    Reply(Pdu),
    None,
    Response(Header, Response),
    Closed(CloseReason),
}

fn respond(header: &Header, error: ErrorStatus, index: u16, varbinds: Vec<VarBind>) -> Action {
    Action::Reply(Pdu::response_to(
        header,
        Response {
            sys_uptime: 0,
            error,
            index,
            varbinds,
        },
    ))
}

fn handle_frame(
    cfg: &SessionConfig,
    view: &ViewHandle,
    conn: &Conn,
    header: Header,
    payload: &[u8],
) -> Action {
    let pdu = match Pdu::decode_payload(header.clone(), payload) {
        Ok(pdu) => pdu,
        Err(e) => {
            warn!(
                error = %e, pdu_type = header.pdu_type, packet_id = header.packet_id,
                "malformed AgentX PDU from master"
            );
            // Never answer a Response; everything else gets parseError.
            if header.kind() == Some(PduType::Response) {
                return Action::None;
            }
            return respond(&header, ErrorStatus::ParseError, 0, Vec::new());
        }
    };
    let header = pdu.header;
    let is_request = matches!(
        pdu.payload,
        Payload::Get(_)
            | Payload::GetNext(_)
            | Payload::GetBulk(_)
            | Payload::TestSet(_)
            | Payload::CommitSet
            | Payload::UndoSet
            | Payload::CleanupSet
    );
    if is_request && header.session_id != conn.session_id {
        warn!(
            got = header.session_id,
            ours = conn.session_id,
            "request for another session"
        );
        if matches!(pdu.payload, Payload::CleanupSet) {
            return Action::None;
        }
        return respond(&header, ErrorStatus::NotOpen, 0, Vec::new());
    }
    // We serve the default context only (RFC 2741 7.1.4.1: a request in a
    // context we do not support gets unsupportedContext, not our values).
    let foreign_context = pdu.context.as_ref().is_some_and(|c| !c.is_empty());
    if is_request && foreign_context && !matches!(pdu.payload, Payload::CleanupSet) {
        debug!(
            packet_id = header.packet_id,
            "request for a non-default context"
        );
        return respond(&header, ErrorStatus::UnsupportedContext, 0, Vec::new());
    }
    match pdu.payload {
        Payload::Get(ranges) => {
            let view = view.load();
            debug!(packet_id = header.packet_id, n = ranges.len(), "Get");
            let vbs = ranges
                .iter()
                .map(|r| VarBind {
                    name: r.start.clone(),
                    value: get_value(&view, &cfg.subtree, &r.start),
                })
                .collect();
            respond(&header, ErrorStatus::NoError, 0, vbs)
        }
        Payload::GetNext(ranges) => {
            let view = view.load();
            debug!(packet_id = header.packet_id, n = ranges.len(), "GetNext");
            let vbs = ranges
                .iter()
                .map(|r| get_next(&view, &cfg.subtree, r))
                .collect();
            respond(&header, ErrorStatus::NoError, 0, vbs)
        }
        Payload::GetBulk(bulk) => {
            let view = view.load();
            debug!(
                packet_id = header.packet_id,
                non_repeaters = bulk.non_repeaters,
                max_repetitions = bulk.max_repetitions,
                n = bulk.ranges.len(),
                "GetBulk"
            );
            respond(
                &header,
                ErrorStatus::NoError,
                0,
                get_bulk(&view, &cfg.subtree, &bulk),
            )
        }
        Payload::TestSet(vbs) => {
            debug!(packet_id = header.packet_id, "TestSet refused: read-only");
            // All our objects are read-only; index is 1-based.
            let index = if vbs.is_empty() { 0 } else { 1 };
            respond(&header, ErrorStatus::NotWritable, index, Vec::new())
        }
        // Our TestSet never succeeds, so there is nothing to commit.
        Payload::CommitSet => respond(&header, ErrorStatus::CommitFailed, 0, Vec::new()),
        // Nothing was changed, so undoing trivially succeeds.
        Payload::UndoSet => respond(&header, ErrorStatus::NoError, 0, Vec::new()),
        // RFC 2741 7.2.4.4: CleanupSet has no response.
        Payload::CleanupSet => Action::None,
        Payload::Ping => respond(&header, ErrorStatus::NoError, 0, Vec::new()),
        Payload::Response(r) => Action::Response(header, r),
        Payload::Close(reason) => Action::Closed(reason),
        other => {
            warn!(pdu = ?other.pdu_type(), "unexpected PDU type from master");
            respond(&header, ErrorStatus::ProcessingError, 0, Vec::new())
        }
    }
}

/// The value for an exact Get (RFC 2741 7.2.3.1).
pub fn get_value(view: &MibView, subtree: &Oid, oid: &Oid) -> Value {
    if !oid.starts_with(subtree) || oid.len() <= subtree.len() {
        return Value::NoSuchObject;
    }
    if let Some(v) = view.get(oid) {
        return v.clone();
    }
    // An object type exists when something lives under the OID's parent
    // (a scalar's .0, a column's other rows) or under the OID itself (a
    // scalar or column asked without instance): then only the instance is
    // missing. The registration root itself is not an object type.
    let parent = Oid::new(&oid.as_slice()[..oid.len() - 1]);
    if view.has_subtree(oid) || (parent.len() > subtree.len() && view.has_subtree(&parent)) {
        Value::NoSuchInstance
    } else {
        Value::NoSuchObject
    }
}

/// The next varbind in `range` inside `subtree` (RFC 2741 7.2.3.2); the start
/// OID with endOfMibView when there is none.
pub fn get_next(view: &MibView, subtree: &Oid, range: &SearchRange) -> VarBind {
    let end_of_view = || VarBind {
        name: range.start.clone(),
        value: Value::EndOfMibView,
    };
    // Only serve our own subtree, even if the view holds more.
    let (start, include) = if range.start < *subtree {
        (subtree, true)
    } else {
        (&range.start, range.include)
    };
    match view.next(start, include) {
        Some((oid, value))
            if oid.starts_with(subtree) && (range.end.is_empty() || *oid < range.end) =>
        {
            VarBind {
                name: oid.clone(),
                value: value.clone(),
            }
        }
        _ => end_of_view(),
    }
}

/// GetBulk (RFC 2741 7.2.3.3): non-repeaters once, then up to
/// `max_repetitions` rows of the repeaters, stopping after a row that is all
/// endOfMibView or before a row that would exceed `MAX_BULK_VARBINDS`.
pub fn get_bulk(view: &MibView, subtree: &Oid, bulk: &GetBulk) -> Vec<VarBind> {
    let n = usize::from(bulk.non_repeaters).min(bulk.ranges.len());
    let (non_rep, rep) = bulk.ranges.split_at(n);
    let mut out: Vec<VarBind> = non_rep.iter().map(|r| get_next(view, subtree, r)).collect();
    let mut cursors: Vec<SearchRange> = rep.to_vec();
    for _ in 0..bulk.max_repetitions {
        // RFC 2741 allows fewer varbinds than asked; this bounds the response size.
        if cursors.is_empty() || out.len() + cursors.len() > MAX_BULK_VARBINDS {
            break;
        }
        let mut all_end = true;
        for cursor in cursors.iter_mut() {
            let vb = get_next(view, subtree, cursor);
            if vb.value != Value::EndOfMibView {
                all_end = false;
                cursor.start = vb.name.clone();
                cursor.include = false;
            }
            out.push(vb);
        }
        if all_end {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agentx::codec::tests::to_little_endian;
    use crate::agentx::codec::{flags, DEFAULT_MAX_PAYLOAD, HEADER_LEN};
    use tokio::io::AsyncWriteExt;
    use tokio::net::{UnixListener, UnixStream};
    use tokio::task::JoinHandle;

    const BASE: &str = "1.3.6.1.4.1.8072.9999.9999.25";
    const WAIT: Duration = Duration::from_secs(5);

    fn oid(s: &str) -> Oid {
        Oid::parse(s).unwrap()
    }

    fn o(suffix: &str) -> Oid {
        oid(&format!("{BASE}.{suffix}"))
    }

    fn view() -> MibView {
        MibView::from_entries(vec![
            (o("1.0"), Value::Counter64(1 << 40)),
            (o("2.0"), Value::Gauge32(42)),
            (o("5.1.1.1"), Value::Integer(1)),
            (o("5.1.1.2"), Value::Integer(2)),
            (o("5.1.2.1"), Value::string("a")),
            (o("5.1.2.2"), Value::string("b")),
            // Outside the registered subtree: must never be served.
            (oid("1.3.6.1.4.1.8072.9999.9999.26.1.0"), Value::Integer(9)),
        ])
    }

    fn range(start: Oid, include: bool, end: Option<Oid>) -> SearchRange {
        SearchRange {
            start,
            include,
            end: end.unwrap_or_default(),
        }
    }

    #[test]
    fn master_address_parsing() {
        assert_eq!(
            "unix:/var/agentx/master".parse(),
            Ok(MasterAddress::Unix("/var/agentx/master".into()))
        );
        assert_eq!(
            "/run/agentx.sock".parse(),
            Ok(MasterAddress::Unix("/run/agentx.sock".into()))
        );
        assert_eq!(
            "tcp:localhost:705".parse(),
            Ok(MasterAddress::Tcp("localhost:705".into()))
        );
        assert_eq!(
            "tcp:[::1]:705".parse(),
            Ok(MasterAddress::Tcp("[::1]:705".into()))
        );
        for bad in [
            "",
            "unix:",
            "tcp:host",
            "tcp::705",
            "tcp:h:99999",
            "relative/path",
        ] {
            assert!(bad.parse::<MasterAddress>().is_err(), "{bad}");
        }
        assert_eq!(
            MasterAddress::Tcp("h:1".into()).to_string(),
            "tcp:h:1".to_string()
        );
    }

    #[test]
    fn get_exceptions_follow_the_parent_rule() {
        let v = view();
        let base = oid(BASE);
        assert_eq!(get_value(&v, &base, &o("2.0")), Value::Gauge32(42));
        assert_eq!(get_value(&v, &base, &o("2.1")), Value::NoSuchInstance);
        assert_eq!(get_value(&v, &base, &o("2")), Value::NoSuchInstance);
        assert_eq!(get_value(&v, &base, &o("5.1.2.3")), Value::NoSuchInstance);
        assert_eq!(get_value(&v, &base, &o("5.1.3.1")), Value::NoSuchObject);
        assert_eq!(get_value(&v, &base, &o("3.0")), Value::NoSuchObject);
        assert_eq!(get_value(&v, &base, &o("3")), Value::NoSuchObject);
        assert_eq!(get_value(&v, &base, &o("5.1")), Value::NoSuchInstance);
        assert_eq!(get_value(&v, &base, &base), Value::NoSuchObject);
        assert_eq!(
            get_value(&v, &base, &oid("1.3.6.1.4.1.8072.9999.9999.26.1.0")),
            Value::NoSuchObject
        );
        assert_eq!(get_value(&v, &base, &Oid::default()), Value::NoSuchObject);
    }

    #[test]
    fn getnext_honours_include_end_and_subtree() {
        let v = view();
        let base = oid(BASE);
        let next = |r: SearchRange| get_next(&v, &base, &r);
        assert_eq!(next(range(o("2.0"), true, None)).name, o("2.0"));
        assert_eq!(next(range(o("2.0"), false, None)).name, o("5.1.1.1"));
        // Before the subtree: first object, regardless of include.
        assert_eq!(next(range(oid("1.3"), false, None)).name, o("1.0"));
        assert_eq!(next(range(Oid::default(), false, None)).name, o("1.0"));
        // End bound is exclusive.
        let vb = next(range(o("2.0"), false, Some(o("5.1.1.1"))));
        assert_eq!((vb.name, vb.value), (o("2.0"), Value::EndOfMibView));
        assert_eq!(
            next(range(o("2.0"), false, Some(o("5.1.1.2")))).name,
            o("5.1.1.1")
        );
        // Past our last object: the entry of the other subtree is not served.
        let vb = next(range(o("5.1.2.2"), false, None));
        assert_eq!((vb.name, vb.value), (o("5.1.2.2"), Value::EndOfMibView));
    }

    #[test]
    fn getbulk_non_repeaters_and_repetitions() {
        let v = view();
        let base = oid(BASE);
        let bulk = GetBulk {
            non_repeaters: 1,
            max_repetitions: 10,
            ranges: vec![
                range(o("1.0"), false, None),
                range(o("5.1.1"), false, None),
                range(o("5.1.2"), false, None),
            ],
        };
        let got: Vec<(Oid, Value)> = get_bulk(&v, &base, &bulk)
            .into_iter()
            .map(|vb| (vb.name, vb.value))
            .collect();
        assert_eq!(
            got,
            vec![
                (o("2.0"), Value::Gauge32(42)),
                (o("5.1.1.1"), Value::Integer(1)),
                (o("5.1.2.1"), Value::string("a")),
                (o("5.1.1.2"), Value::Integer(2)),
                (o("5.1.2.2"), Value::string("b")),
                (o("5.1.2.1"), Value::string("a")),
                (o("5.1.2.2"), Value::EndOfMibView),
                (o("5.1.2.2"), Value::string("b")),
                (o("5.1.2.2"), Value::EndOfMibView),
                // The row where every repeater hit the end stops the repetition.
                (o("5.1.2.2"), Value::EndOfMibView),
                (o("5.1.2.2"), Value::EndOfMibView),
            ]
        );
        // non_repeaters larger than the list, zero repetitions.
        let bulk = GetBulk {
            non_repeaters: 9,
            max_repetitions: 0,
            ranges: vec![range(o("1.0"), true, None)],
        };
        assert_eq!(get_bulk(&v, &base, &bulk).len(), 1);
        let bulk = GetBulk {
            non_repeaters: 0,
            max_repetitions: 0,
            ranges: vec![range(o("1.0"), true, None)],
        };
        assert!(get_bulk(&v, &base, &bulk).is_empty());
        // A huge request against a big view is bounded.
        let big = MibView::from_entries(
            (0..5000u32)
                .map(|i| (o(&format!("9.{i}")), Value::Counter32(i)))
                .collect(),
        );
        let bulk = GetBulk {
            non_repeaters: 0,
            max_repetitions: u16::MAX,
            ranges: vec![range(o("9"), false, None), range(o("9.1"), false, None)],
        };
        let got = get_bulk(&big, &base, &bulk);
        assert_eq!(got.len(), MAX_BULK_VARBINDS);
        assert_eq!(got[2].name, o("9.1"));
    }

    #[test]
    fn getbulk_answer_is_capped() {
        // ~130 000 ranges fit in a 1 MiB request; the answer stays bounded
        // and ends at a row boundary.
        let v = view();
        let base = oid(BASE);
        let ranges = 130_000;
        let bulk = GetBulk {
            non_repeaters: 0,
            max_repetitions: u16::MAX,
            ranges: vec![range(o("1.0"), false, None); ranges],
        };
        let got = get_bulk(&v, &base, &bulk);
        assert!(got.is_empty(), "a single row would exceed the cap");
        // 1 000 ranges: two whole rows fit under the cap, a third does not
        // (the view has more objects, so the walk would go on).
        let bulk = GetBulk {
            non_repeaters: 0,
            max_repetitions: u16::MAX,
            ranges: vec![range(o("1.0"), false, None); 1_000],
        };
        let got = get_bulk(&v, &base, &bulk);
        assert_eq!(got.len(), 2_000);
        assert_ne!(got[1_999].value, Value::EndOfMibView);
    }

    // ---- fake master over a unix socket ----

    struct Harness {
        _dir: tempfile::TempDir,
        path: PathBuf,
        listener: Option<UnixListener>,
        shutdown: watch::Sender<bool>,
        state: watch::Receiver<SessionState>,
        notify: mpsc::Sender<Vec<VarBind>>,
        task: JoinHandle<anyhow::Result<()>>,
    }

    fn start_agent(listen: bool, tweak: impl FnOnce(&mut SessionConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.sock");
        let listener = listen.then(|| UnixListener::bind(&path).unwrap());
        let mut cfg = SessionConfig::new(MasterAddress::Unix(path.clone()), oid(BASE));
        cfg.backoff_initial = Duration::from_millis(20);
        cfg.backoff_max = Duration::from_millis(200);
        cfg.ping_interval = Duration::from_secs(60);
        tweak(&mut cfg);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (state_tx, state) = watch::channel(SessionState::Connecting);
        let (notify, notify_rx) = mpsc::channel(4);
        let task = tokio::spawn(run(
            cfg,
            ViewHandle::new(view()),
            notify_rx,
            state_tx,
            shutdown_rx,
        ));
        Harness {
            _dir: dir,
            path,
            listener,
            shutdown,
            state,
            notify,
            task,
        }
    }

    impl Harness {
        async fn accept(&self) -> UnixStream {
            let l = self.listener.as_ref().unwrap();
            timeout(WAIT, l.accept())
                .await
                .expect("no connect")
                .unwrap()
                .0
        }

        /// Accepts, answers Open (with `session_id`) and Register (with `reg_error`).
        async fn handshake(
            &self,
            session_id: u32,
            reg_error: ErrorStatus,
        ) -> (UnixStream, Register) {
            let mut s = self.accept().await;
            let open = read_pdu(&mut s).await;
            let Payload::Open(ref o) = open.payload else {
                panic!("expected Open, got {open:?}")
            };
            assert_eq!(o.descr, b"postfix-agentx");
            assert_eq!(o.timeout, 5);
            let mut resp = ok_response(&open.header);
            resp.header.session_id = session_id;
            send(&mut s, &resp).await;
            let reg = read_pdu(&mut s).await;
            assert_eq!(reg.header.session_id, session_id);
            let Payload::Register(r) = reg.payload.clone() else {
                panic!("expected Register, got {reg:?}")
            };
            let mut resp = ok_response(&reg.header);
            if let Payload::Response(ref mut rr) = resp.payload {
                rr.error = reg_error;
            }
            send(&mut s, &resp).await;
            (s, r)
        }

        async fn wait_state(&mut self, want: impl Fn(&SessionState) -> bool) -> SessionState {
            let r = timeout(WAIT, self.state.wait_for(|s| want(s))).await;
            r.expect("state not reached").unwrap().clone()
        }
    }

    fn ok_response(h: &Header) -> Pdu {
        Pdu::response_to(
            h,
            Response {
                sys_uptime: 0,
                error: ErrorStatus::NoError,
                index: 0,
                varbinds: vec![],
            },
        )
    }

    async fn read_pdu(s: &mut UnixStream) -> Pdu {
        let (h, p) = timeout(WAIT, codec::read_frame(s, DEFAULT_MAX_PAYLOAD))
            .await
            .expect("timed out waiting for a PDU")
            .unwrap()
            .expect("EOF instead of a PDU");
        assert_ne!(
            h.flags & flags::NETWORK_BYTE_ORDER,
            0,
            "we always send network byte order"
        );
        Pdu::decode_payload(h, &p).unwrap()
    }

    async fn send(s: &mut UnixStream, pdu: &Pdu) {
        s.write_all(&pdu.encode().unwrap()).await.unwrap();
    }

    /// Writes one byte per write call, yielding in between.
    async fn send_trickle(s: &mut UnixStream, bytes: &[u8]) {
        for b in bytes {
            s.write_all(&[*b]).await.unwrap();
            s.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
    }

    fn response_of(pdu: Pdu) -> (Header, Response) {
        match pdu.payload {
            Payload::Response(r) => (pdu.header, r),
            other => panic!("expected Response, got {other:?}"),
        }
    }

    fn request(payload: Payload, session_id: u32, packet_id: u32) -> Pdu {
        Pdu::new(payload, session_id, 100 + packet_id, packet_id)
    }

    #[tokio::test]
    async fn serves_requests_in_both_byte_orders_across_partial_reads() {
        let mut h = start_agent(true, |_| {});
        let (mut s, reg) = h.handshake(42, ErrorStatus::NoError).await;
        assert_eq!(reg.priority, 127);
        assert_eq!(reg.subtree, oid(BASE));
        assert_eq!(reg.range_subid, 0);
        assert_eq!(
            h.wait_state(|s| matches!(s, SessionState::Connected { .. }))
                .await,
            SessionState::Connected { session_id: 42 }
        );

        // GetNext, big endian, one byte at a time.
        let getnext = request(
            Payload::GetNext(vec![
                range(o("1.0"), false, None),
                range(o("1.0"), true, None),
                range(o("5.1.2.2"), false, None),
            ]),
            42,
            1,
        );
        send_trickle(&mut s, &getnext.encode().unwrap()).await;
        let (rh, r) = response_of(read_pdu(&mut s).await);
        assert_eq!(
            (rh.packet_id, rh.transaction_id, rh.session_id),
            (1, 101, 42)
        );
        assert_eq!(r.error, ErrorStatus::NoError);
        assert_eq!(r.sys_uptime, 0);
        let got: Vec<_> = r
            .varbinds
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (o("2.0"), Value::Gauge32(42)),
                (o("1.0"), Value::Counter64(1 << 40)),
                (o("5.1.2.2"), Value::EndOfMibView),
            ]
        );

        // Get, little endian, trickled too.
        let get = request(
            Payload::Get(vec![
                range(o("2.0"), false, None),
                range(o("2.7"), false, None),
                range(o("7.0"), false, None),
                range(oid("1.3.6.1.4.1.8072.9999.9999.26.1.0"), false, None),
            ]),
            42,
            2,
        );
        send_trickle(&mut s, &to_little_endian(&get)).await;
        let (rh, r) = response_of(read_pdu(&mut s).await);
        assert_eq!(rh.packet_id, 2);
        let values: Vec<_> = r.varbinds.iter().map(|v| v.value.clone()).collect();
        assert_eq!(
            values,
            vec![
                Value::Gauge32(42),
                Value::NoSuchInstance,
                Value::NoSuchObject,
                Value::NoSuchObject
            ]
        );
        assert_eq!(r.varbinds[1].name, o("2.7"));

        // A malformed PDU (bad OID length) between good ones: parseError, same ids.
        let mut bad = request(Payload::Get(vec![range(o("2.0"), false, None)]), 42, 3)
            .encode()
            .unwrap();
        bad[HEADER_LEN] = 200; // n_subid beyond the payload and the 128 limit
        s.write_all(&bad).await.unwrap();
        let (rh, r) = response_of(read_pdu(&mut s).await);
        assert_eq!((rh.packet_id, r.error), (3, ErrorStatus::ParseError));

        // An unknown PDU type: parseError too, framing kept.
        let mut unknown = request(Payload::Ping, 42, 4).encode().unwrap();
        unknown[1] = 99;
        s.write_all(&unknown).await.unwrap();
        let (rh, r) = response_of(read_pdu(&mut s).await);
        assert_eq!((rh.packet_id, r.error), (4, ErrorStatus::ParseError));

        // GetBulk little endian.
        let bulk = request(
            Payload::GetBulk(GetBulk {
                non_repeaters: 0,
                max_repetitions: 3,
                ranges: vec![range(o("5.1.1"), false, None)],
            }),
            42,
            5,
        );
        s.write_all(&to_little_endian(&bulk)).await.unwrap();
        let (_, r) = response_of(read_pdu(&mut s).await);
        let names: Vec<_> = r.varbinds.iter().map(|v| v.name.clone()).collect();
        assert_eq!(names, vec![o("5.1.1.1"), o("5.1.1.2"), o("5.1.2.1")]);

        // TestSet -> notWritable at index 1; CleanupSet gets no response.
        let set = request(
            Payload::TestSet(vec![VarBind {
                name: o("2.0"),
                value: Value::Gauge32(1),
            }]),
            42,
            6,
        );
        send(&mut s, &set).await;
        let (rh, r) = response_of(read_pdu(&mut s).await);
        assert_eq!(
            (rh.packet_id, r.error, r.index),
            (6, ErrorStatus::NotWritable, 1)
        );
        send(&mut s, &request(Payload::CleanupSet, 42, 7)).await;
        // A Ping from the master: the next thing we read must be its response.
        send(&mut s, &request(Payload::Ping, 42, 8)).await;
        let (rh, r) = response_of(read_pdu(&mut s).await);
        assert_eq!((rh.packet_id, r.error), (8, ErrorStatus::NoError));

        // Wrong session id -> notOpen.
        send(
            &mut s,
            &request(Payload::Get(vec![range(o("2.0"), false, None)]), 7, 9),
        )
        .await;
        let (rh, r) = response_of(read_pdu(&mut s).await);
        assert_eq!((rh.packet_id, r.error), (9, ErrorStatus::NotOpen));

        // Shutdown sends Close(shutdown) and returns.
        h.shutdown.send(true).unwrap();
        let close = read_pdu(&mut s).await;
        assert_eq!(close.payload, Payload::Close(CloseReason::Shutdown));
        assert_eq!(close.header.session_id, 42);
        timeout(WAIT, h.task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn reconnects_and_reregisters_after_eof_and_close() {
        let mut h = start_agent(true, |_| {});
        let (s, _) = h.handshake(1, ErrorStatus::NoError).await;
        h.wait_state(|s| *s == SessionState::Connected { session_id: 1 })
            .await;
        drop(s); // plain EOF, like a crashed snmpd
        let st = h
            .wait_state(|s| matches!(s, SessionState::Disconnected { .. }))
            .await;
        assert!(format!("{st:?}").contains("EOF"), "{st:?}");
        let (mut s, reg) = h.handshake(2, ErrorStatus::NoError).await;
        assert_eq!(reg.subtree, oid(BASE));
        h.wait_state(|s| *s == SessionState::Connected { session_id: 2 })
            .await;
        // Close from the master.
        send(
            &mut s,
            &request(Payload::Close(CloseReason::Shutdown), 2, 1),
        )
        .await;
        let st = h
            .wait_state(|s| matches!(s, SessionState::Disconnected { .. }))
            .await;
        assert!(format!("{st:?}").contains("Close"), "{st:?}");
        let (_s, _) = h.handshake(3, ErrorStatus::NoError).await;
        h.wait_state(|s| *s == SessionState::Connected { session_id: 3 })
            .await;
        h.shutdown.send(true).unwrap();
        timeout(WAIT, h.task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn duplicate_registration_closes_and_retries() {
        let mut h = start_agent(true, |_| {});
        let (mut s, _) = h.handshake(1, ErrorStatus::DuplicateRegistration).await;
        let close = read_pdu(&mut s).await;
        assert_eq!(close.payload, Payload::Close(CloseReason::Other));
        let st = h
            .wait_state(|s| matches!(s, SessionState::Disconnected { .. }))
            .await;
        assert!(
            format!("{st:?}").contains("DuplicateRegistration"),
            "{st:?}"
        );
        let (_s, _) = h.handshake(2, ErrorStatus::NoError).await;
        h.wait_state(|s| *s == SessionState::Connected { session_id: 2 })
            .await;
        h.shutdown.send(true).unwrap();
        timeout(WAIT, h.task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_during_backoff_returns_promptly() {
        // No listener: connects fail (ENOENT), and the back-off is long.
        let mut h = start_agent(false, |c| {
            c.backoff_initial = Duration::from_secs(30);
            c.backoff_max = Duration::from_secs(60);
        });
        let st = h
            .wait_state(|s| matches!(s, SessionState::Disconnected { .. }))
            .await;
        assert!(format!("{st:?}").contains("master.sock"), "{st:?}");
        // A notification while disconnected is dropped, not queued forever.
        h.notify.send(vec![]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = std::time::Instant::now();
        h.shutdown.send(true).unwrap();
        timeout(Duration::from_secs(1), h.task)
            .await
            .expect("run did not return within 1 s")
            .unwrap()
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(1));
        // Stale socket file (ECONNREFUSED) behaves the same.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (state_tx, mut state) = watch::channel(SessionState::Connecting);
        let (_n, notify_rx) = mpsc::channel(1);
        let mut cfg = SessionConfig::new(MasterAddress::Unix(path), oid(BASE));
        cfg.backoff_initial = Duration::from_secs(30);
        let task = tokio::spawn(run(
            cfg,
            ViewHandle::default(),
            notify_rx,
            state_tx,
            shutdown_rx,
        ));
        let st = timeout(
            WAIT,
            state.wait_for(|s| matches!(s, SessionState::Disconnected { .. })),
        )
        .await
        .unwrap()
        .unwrap()
        .clone();
        assert!(
            format!("{st:?}").to_lowercase().contains("refused"),
            "{st:?}"
        );
        shutdown.send(true).unwrap();
        timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        drop(h.path);
    }

    #[tokio::test]
    async fn notifications_are_sent_as_notify() {
        let mut h = start_agent(true, |_| {});
        let (mut s, _) = h.handshake(5, ErrorStatus::NoError).await;
        h.wait_state(|s| matches!(s, SessionState::Connected { .. }))
            .await;
        let vbs = vec![
            VarBind {
                name: oid("1.3.6.1.6.3.1.1.4.1.0"),
                value: Value::ObjectIdentifier(o("0.1")),
            },
            VarBind {
                name: o("2.0"),
                value: Value::Gauge32(99),
            },
        ];
        h.notify.send(vbs.clone()).await.unwrap();
        let n = read_pdu(&mut s).await;
        assert_eq!(n.payload, Payload::Notify(vbs));
        assert_eq!(n.header.session_id, 5);
        send(&mut s, &ok_response(&n.header)).await;
        h.shutdown.send(true).unwrap();
        timeout(WAIT, h.task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_non_default_context_gets_unsupported_context() {
        let mut h = start_agent(true, |_| {});
        let (mut s, _) = h.handshake(3, ErrorStatus::NoError).await;
        h.wait_state(|s| matches!(s, SessionState::Connected { .. }))
            .await;
        let payloads = [
            Payload::Get(vec![range(o("2.0"), false, None)]),
            Payload::GetNext(vec![range(o("1.0"), false, None)]),
            Payload::GetBulk(GetBulk {
                non_repeaters: 0,
                max_repetitions: 5,
                ranges: vec![range(o("1"), false, None)],
            }),
        ];
        for (i, payload) in payloads.into_iter().enumerate() {
            let id = u32::try_from(i).unwrap() + 1;
            let mut pdu = request(payload.clone(), 3, id);
            pdu.context = Some(b"vrf-blue".to_vec());
            send(&mut s, &pdu).await;
            let (rh, r) = response_of(read_pdu(&mut s).await);
            assert_eq!(rh.packet_id, id);
            assert_eq!(r.error, ErrorStatus::UnsupportedContext, "{payload:?}");
            assert!(r.varbinds.is_empty(), "{:?}", r.varbinds);
            // The same request in the default context is served.
            send(&mut s, &request(payload, 3, id + 10)).await;
            let (_, r) = response_of(read_pdu(&mut s).await);
            assert_eq!(r.error, ErrorStatus::NoError);
            assert!(!r.varbinds.is_empty());
        }
        h.shutdown.send(true).unwrap();
        timeout(WAIT, h.task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_master_that_stops_reading_is_dropped_and_reconnected() {
        let mut h = start_agent(true, |_| {});
        let (s, _) = h.handshake(1, ErrorStatus::NoError).await;
        h.wait_state(|s| *s == SessionState::Connected { session_id: 1 })
            .await;
        // Requests without end, answers never read: our socket buffer fills
        // and the agent's write blocks.
        let (read_half, mut write_half) = tokio::io::split(s);
        let flood = tokio::spawn(async move {
            for id in 1u32.. {
                let bulk = request(
                    Payload::GetBulk(GetBulk {
                        non_repeaters: 0,
                        max_repetitions: 100,
                        ranges: vec![range(oid(BASE), false, None)],
                    }),
                    1,
                    id,
                );
                if write_half.write_all(&bulk.encode().unwrap()).await.is_err() {
                    return;
                }
            }
        });
        let started = std::time::Instant::now();
        let st = timeout(
            Duration::from_secs(20),
            h.state
                .wait_for(|s| matches!(s, SessionState::Disconnected { .. })),
        )
        .await
        .expect("the agent stayed blocked writing to a master that does not read")
        .unwrap()
        .clone();
        assert!(format!("{st:?}").contains("not reading"), "{st:?}");
        // Within the write bound (5 s, the harness's AgentX timeout), plus slack.
        assert!(started.elapsed() < Duration::from_secs(15));
        flood.abort();
        drop(read_half);
        let (_s, _) = h.handshake(2, ErrorStatus::NoError).await;
        h.wait_state(|s| *s == SessionState::Connected { session_id: 2 })
            .await;
        h.shutdown.send(true).unwrap();
        timeout(WAIT, h.task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn unanswered_ping_and_oversized_frame_drop_the_connection() {
        let mut h = start_agent(true, |c| c.ping_interval = Duration::from_millis(100));
        let (mut s, _) = h.handshake(1, ErrorStatus::NoError).await;
        // Answer the first Ping, ignore the second.
        let p = read_pdu(&mut s).await;
        assert_eq!(p.payload, Payload::Ping);
        send(&mut s, &ok_response(&p.header)).await;
        let p2 = read_pdu(&mut s).await;
        assert_eq!(p2.payload, Payload::Ping);
        let st = h
            .wait_state(|s| matches!(s, SessionState::Disconnected { .. }))
            .await;
        assert!(format!("{st:?}").contains("Ping"), "{st:?}");
        // Reconnects; then a frame over the payload cap loses framing.
        let (mut s, _) = h.handshake(2, ErrorStatus::NoError).await;
        h.wait_state(|s| *s == SessionState::Connected { session_id: 2 })
            .await;
        let mut huge = request(Payload::Ping, 2, 1).encode().unwrap();
        huge[16..20].copy_from_slice(&(DEFAULT_MAX_PAYLOAD + 4).to_be_bytes());
        s.write_all(&huge).await.unwrap();
        let st = h
            .wait_state(|s| matches!(s, SessionState::Disconnected { .. }))
            .await;
        assert!(format!("{st:?}").contains("exceeds the limit"), "{st:?}");
        let (_s, _) = h.handshake(3, ErrorStatus::NoError).await;
        h.shutdown.send(true).unwrap();
        timeout(WAIT, h.task).await.unwrap().unwrap().unwrap();
    }
}
