//! postfix-agentx: an SNMP AgentX subagent for Postfix.
//!
//! Data flows one way: `sources` (collectors) → `snapshot` (one set of values)
//! → `mib` (OID tree) → `agentx` (session with the master agent).

pub mod agentx;
pub(crate) mod alarms;
pub mod config;
pub mod daemon;
pub mod dump;
pub(crate) mod file_trust;
pub mod mib;
pub(crate) mod publisher;
pub mod refusal;
pub mod snapshot;
pub mod snmp;
pub mod sources;
