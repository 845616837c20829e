//! Collectors. Each reads one kind of Postfix data and knows nothing of SNMP.

pub use collector::{Collected, Collector, Outcome};
pub mod cert;
pub mod collector;
pub mod log;
pub(crate) mod postconf;
pub mod probe;
pub mod process;
pub mod queue;
