//! Exported object sets for the host objects (secrets, node devices, host
//! interfaces) and domain snapshots: the objects on the bus are brought in line with what the core
//! lists each time a client lists or looks one up, so an object path a method
//! returns is always served.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use zbus::object_server::Interface;
use zbus::{ObjectServer, OwnedObjectPath};

/// The objects of one kind on the bus, by key.
pub struct Objects<K> {
    have: Mutex<HashMap<K, OwnedObjectPath>>,
    /// Serialises updates.
    sync: tokio::sync::Mutex<()>,
}

impl<K> Default for Objects<K> {
    fn default() -> Self {
        Objects {
            have: Mutex::new(HashMap::new()),
            sync: tokio::sync::Mutex::new(()),
        }
    }
}

impl<K: Eq + Hash + Clone> Objects<K> {
    /// Exports `make(key)` at each wanted path not yet served and removes the
    /// objects whose key is no longer wanted.
    pub async fn sync<I: Interface>(
        &self,
        server: &ObjectServer,
        want: Vec<(K, OwnedObjectPath)>,
        make: impl Fn(&K) -> I,
    ) {
        let _guard = self.sync.lock().await;
        let have = self.have.lock().expect("poisoned").clone();
        for (key, path) in &want {
            if have.contains_key(key) {
                continue;
            }
            match super::properties::export(server, path, make(key)).await {
                Ok(_) => {
                    self.have
                        .lock()
                        .expect("poisoned")
                        .insert(key.clone(), path.clone());
                }
                Err(e) => tracing::error!(path = %path, error = %e, "cannot export object"),
            }
        }
        for (key, path) in have {
            if !want.iter().any(|(k, _)| *k == key) {
                let _ = server.remove::<I, _>(&path).await;
                self.have.lock().expect("poisoned").remove(&key);
            }
        }
    }
}
