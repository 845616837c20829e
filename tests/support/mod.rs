//! Shared helpers for integration tests. Include with `mod support;`.

#![allow(dead_code)]

pub mod snmpd;
