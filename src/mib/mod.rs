//! The POSTFIX-MIB: OID layout and the view built from a snapshot.

pub mod view;

pub use view::{MibView, ViewHandle};
