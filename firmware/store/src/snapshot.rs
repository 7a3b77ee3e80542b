//! Putting an [`Store::export`] back: the appliance's "restore the last-good copy" (issue 13),
//! and what a replicated snapshot install needs too.

use crate::change::ExportedTree;
use crate::error::{Result, StoreError};
use crate::{Store, migrations};

impl Store {
    /// Replace every exported tree's content (one sled batch per tree), then flush. Tree names
    /// this build does not know are refused before anything is written, so a snapshot from a
    /// newer schema never half-loads; its schema version comes along in the `meta` tree and is
    /// upgraded at the next open.
    ///
    /// A crash part-way leaves some trees old and some new: import into a fresh store beside
    /// the one to replace and swap the directories afterwards. The change feed is not told
    /// (nothing should be using the store yet).
    pub fn import(&self, trees: &[ExportedTree]) -> Result<()> {
        for (name, _) in trees {
            if !migrations::TREES.contains(&name.as_str()) {
                return Err(StoreError::Rejected(format!("snapshot holds an unknown tree '{name}'")));
            }
        }
        let _guard = self.lock();
        for (name, entries) in trees {
            let tree = self.inner.db.open_tree(name)?;
            tree.clear()?;
            let mut batch = sled::Batch::default();
            for (key, value) in entries {
                batch.insert(key.as_slice(), value.as_slice());
            }
            tree.apply_batch(batch)?;
        }
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn an_export_imported_into_a_fresh_store_exports_the_same() {
        let from = tempfile::tempdir().unwrap();
        let store = Store::open(from.path()).unwrap();
        let mut node = store.node_config().unwrap();
        node.listen = vec!["192.0.2.1".to_owned()];
        store.set_node_config(&node).unwrap();
        let exported = store.export().unwrap();

        let to = tempfile::tempdir().unwrap();
        let fresh = Store::open(to.path()).unwrap();
        fresh.import(&exported).unwrap();
        assert_eq!(fresh.export().unwrap(), exported);
        assert_eq!(fresh.node_config().unwrap().listen, ["192.0.2.1"]);

        let unknown = vec![("no-such-tree".to_owned(), Vec::new())];
        assert!(fresh.import(&unknown).is_err());
    }
}
