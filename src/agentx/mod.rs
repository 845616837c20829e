//! AgentX (RFC 2741) subagent protocol: PDU codec and the session with the master agent.
//!
//! The session knows nothing about Postfix: it serves whatever `MibView` the
//! `ViewHandle` holds under the registered subtree.

pub mod codec;
pub mod session;
