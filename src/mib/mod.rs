//! The POSTFIX-MIB: its text, its OID layout, and the view built from a snapshot.

pub mod build;
pub mod names;
pub mod notify;
pub mod text;

pub use build::build_view;
