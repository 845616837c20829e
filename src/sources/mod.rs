//! Collectors. Each reads one kind of Postfix data and knows nothing of SNMP.
pub mod cert;
pub mod log;
pub mod probe;
pub mod process;
pub mod queue;
