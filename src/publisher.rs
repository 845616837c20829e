//! Holds the current snapshot and publishes a fresh MIB view after each change.
//!
//! Collectors call [`Publisher::update`] with a closure that edits their part
//! of the snapshot; the view is rebuilt (a few hundred objects, microseconds)
//! and swapped in whole, so a request never sees half an update.

use crate::mib::build_view;
use crate::snapshot::{Snapshot, SourceHealth};
use crate::snmp::Oid;
use crate::snmp::ViewHandle;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

pub struct Publisher {
    root: Oid,
    snapshot: Mutex<Snapshot>,
    view: ViewHandle,
}

impl Publisher {
    pub fn new(root: Oid, snapshot: Snapshot) -> Publisher {
        let view = ViewHandle::new(build_view(&root, &snapshot, SystemTime::now()));
        Publisher {
            root,
            snapshot: Mutex::new(snapshot),
            view,
        }
    }

    /// The handle the AgentX session reads from.
    pub fn view(&self) -> ViewHandle {
        self.view.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Snapshot> {
        // A collector that panicked mid-update leaves plain data behind; keep serving it.
        self.snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `change` and publishes the resulting view.
    pub fn update(&self, change: impl FnOnce(&mut Snapshot)) {
        let mut s = self.lock();
        change(&mut s);
        // Built under the lock so views are stored in the order of updates.
        self.view
            .store(build_view(&self.root, &s, SystemTime::now()));
    }

    /// Updates one source's health row, creating it with `detail` if new.
    pub fn health(&self, source: &str, detail: &str, change: impl FnOnce(&mut SourceHealth)) {
        self.update(|s| change(s.health_mut(source, detail)));
    }

    /// Rebuilds the view so that ages (oldest message) stay current.
    pub fn refresh(&self) {
        self.update(|_| {});
    }

    /// A copy of the current snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{AgentInfo, LogCounters};

    #[test]
    fn updates_are_published_whole() {
        let root = Oid::parse("1.3.6.1.4.1.8072.9999.9999.25").unwrap();
        let p = Publisher::new(
            root.clone(),
            Snapshot::new(AgentInfo {
                version: "t".into(),
                start_time: SystemTime::UNIX_EPOCH,
                discontinuity_time: SystemTime::UNIX_EPOCH,
            }),
        );
        let handle = p.view();
        let before = handle.load();
        assert!(!before.has_subtree(&root.child(&[1, 1])));
        p.update(|s| {
            s.log = Some(LogCounters {
                delivered: 7,
                ..LogCounters::default()
            })
        });
        let after = handle.load();
        assert_eq!(
            after.get(&root.child(&[1, 1, 1, 0])),
            Some(&crate::snmp::Value::Counter64(7))
        );
        // The old view a request may still hold is unchanged.
        assert!(!before.has_subtree(&root.child(&[1, 1])));
    }
}
