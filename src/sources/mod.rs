//! Collectors. Each reads one kind of Postfix data and knows nothing of SNMP.
pub mod log;
pub mod process;
pub mod queue;
