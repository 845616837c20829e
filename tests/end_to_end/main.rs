//! End-to-end tier: the built binary as a user runs it, against a real
//! snmpd and Postfix, read back with net-snmp's tools: walks, traps, the
//! log followed through rotations and restarts, faults and hostile input,
//! load, the README's demo and the Debian package installed with dpkg.
//! `cargo test --test end_to_end`.
//!
//! Tests that measure time or CPU, or load the machine, hold
//! `support::exclusive()` while they run, so that they never run beside
//! each other (each had a binary of its own before).

#[path = "../support/mod.rs"]
mod support;

mod deb_install;
mod demo;
mod e2e_agent;
mod e2e_log;
mod e2e_queue_process;
mod e2e_traps;
mod faults;
mod hostile_local;
mod hostile_master;
mod log_steady_state;
mod security;
mod soak_short;
