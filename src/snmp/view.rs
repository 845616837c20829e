//! A MIB view: an immutable, sorted map from OID to value (the MIB module
//! layer builds one from each snapshot).
//!
//! The AgentX session answers every request from one `MibView` without any I/O.

use super::{Oid, Value};
use std::sync::{Arc, RwLock};

/// Sorted OID → value table. Lookups are binary searches.
#[derive(Debug, Default, Clone)]
pub struct MibView {
    entries: Vec<(Oid, Value)>,
}

impl MibView {
    /// Builds a view from unsorted entries; duplicate OIDs keep the last value.
    pub fn from_entries(mut entries: Vec<(Oid, Value)>) -> MibView {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                std::mem::swap(&mut earlier.1, &mut later.1);
                true
            } else {
                false
            }
        });
        MibView { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[(Oid, Value)] {
        &self.entries
    }

    /// Exact lookup.
    pub fn get(&self, oid: &Oid) -> Option<&Value> {
        self.entries
            .binary_search_by(|(o, _)| o.cmp(oid))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// True if some object in the view lies at or below `prefix`.
    pub fn has_subtree(&self, prefix: &Oid) -> bool {
        let i = self.entries.partition_point(|(o, _)| o < prefix);
        self.entries
            .get(i)
            .is_some_and(|(o, _)| o.starts_with(prefix))
    }

    /// The first entry after `start` (or at `start` when `include` is set).
    pub fn next(&self, start: &Oid, include: bool) -> Option<(&Oid, &Value)> {
        let i = if include {
            self.entries.partition_point(|(o, _)| o < start)
        } else {
            self.entries.partition_point(|(o, _)| o <= start)
        };
        self.entries.get(i).map(|(o, v)| (o, v))
    }
}

/// The current view, swapped atomically by collectors and read by the session.
///
/// Readers take an `Arc` clone under a short read lock, then work lock-free on
/// that immutable view, so one request always sees one consistent snapshot.
#[derive(Debug, Clone, Default)]
pub struct ViewHandle {
    inner: Arc<RwLock<Arc<MibView>>>,
}

impl ViewHandle {
    pub fn new(view: MibView) -> ViewHandle {
        ViewHandle {
            inner: Arc::new(RwLock::new(Arc::new(view))),
        }
    }

    pub fn load(&self) -> Arc<MibView> {
        match self.inner.read() {
            Ok(g) => Arc::clone(&g),
            // A writer panicked mid-swap; the Arc inside is still a whole view.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn store(&self, view: MibView) {
        let new = Arc::new(view);
        match self.inner.write() {
            Ok(mut g) => *g = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(s: &str) -> Oid {
        Oid::parse(s).unwrap()
    }

    #[test]
    fn next_and_get_follow_lexicographic_order() {
        let v = MibView::from_entries(vec![
            (oid("1.3.6.1.4.1.9.2"), Value::Integer(2)),
            (oid("1.3.6.1.4.1.9.10"), Value::Integer(10)),
            (oid("1.3.6.1.4.1.9.1.1"), Value::Integer(11)),
        ]);
        assert_eq!(v.get(&oid("1.3.6.1.4.1.9.2")), Some(&Value::Integer(2)));
        assert_eq!(v.get(&oid("1.3.6.1.4.1.9")), None);
        let (o, _) = v.next(&oid("1.3.6.1.4.1.9"), false).unwrap();
        assert_eq!(o, &oid("1.3.6.1.4.1.9.1.1"));
        let (o, _) = v.next(&oid("1.3.6.1.4.1.9.2"), true).unwrap();
        assert_eq!(o, &oid("1.3.6.1.4.1.9.2"));
        let (o, _) = v.next(&oid("1.3.6.1.4.1.9.2"), false).unwrap();
        assert_eq!(o, &oid("1.3.6.1.4.1.9.10"));
        assert!(v.next(&oid("1.3.6.1.4.1.9.10"), false).is_none());
        assert!(v.has_subtree(&oid("1.3.6.1.4.1.9.1")));
        assert!(!v.has_subtree(&oid("1.3.6.1.4.1.9.3")));
    }

    #[test]
    fn duplicates_keep_the_last_value() {
        let v = MibView::from_entries(vec![
            (oid("1.2"), Value::Integer(1)),
            (oid("1.2"), Value::Integer(2)),
        ]);
        assert_eq!(v.len(), 1);
        assert_eq!(v.get(&oid("1.2")), Some(&Value::Integer(2)));
    }
}
