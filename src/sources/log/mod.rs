//! The Postfix mail log: following log files or the journal, and saving state.

pub mod follow;
pub mod journal;
pub mod state;
