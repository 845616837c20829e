//! Component tier: each part of the agent against the real programs it
//! talks to, one part at a time: the AgentX codec against the `agentx`
//! crate and the session against snmpd, the log parser against a real
//! Postfix's log, the follower through real rotations, the queue, process
//! and probe collectors against a private Postfix and Dovecot, the MIB
//! against smilint and net-snmp, and the shipped templates and packaging
//! files against the MIB and systemd. `cargo test --test component`.

#[path = "../support/mod.rs"]
mod support;

mod agentx_codec_diff;
mod agentx_snmpd;
mod log_follow;
mod log_real_postfix;
mod mib;
mod packaging;
mod probe_real;
mod process_real_postfix;
mod queue_real_postfix;
mod templates;
