//! The map registry: maps by name, each built with its policy over the
//! shared journal, created on first write up to `server.max_maps`.

use std::sync::Arc;

use safemap::SafeMap;
use serde_json::Value;

use super::{Map, Shared};
use crate::config::MapPolicy;
use crate::error::ApiError;

impl Shared {
    /// Builds a map with its policy (configured or default) over the shared
    /// journal, registered on it by name so that maps can refer to each other
    /// (references.md). A reference's pointer names a key when it holds a
    /// string; anything else refers to nothing.
    pub(super) fn build_map(&self, name: &str) -> Result<Arc<Map>, String> {
        let MapPolicy {
            retention,
            breaker,
            deny,
            plan_ttl,
            references,
        } = self.config.policy_for(name);
        let mut b = SafeMap::builder()
            .name(name)
            .journal(self.journal.clone())
            .retain_deleted_for(retention)
            .plan_ttl(plan_ttl);
        if let Some((max, window)) = breaker {
            b = b.delete_breaker(max, window);
        }
        for rule in deny {
            let pointer = rule.pointer;
            let equals = rule.equals;
            b = b.deny_delete(rule.name, move |_k: &String, v: &Value| {
                v.pointer(&pointer) == Some(&equals)
            });
        }
        for r in references {
            let pointer = r.pointer;
            b = b.references(r.name, r.to, r.on_delete, move |v: &Value| {
                v.pointer(&pointer)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
        }
        b.build_shared()
            .map_err(|e| format!("building map {name:?}: {e}"))
    }

    /// The map, if it exists.
    pub fn map(&self, name: &str) -> Option<Arc<Map>> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        maps.get(name).cloned()
    }

    /// The map, created with its policy if absent (bounded by `max_maps`).
    pub fn map_or_create(&self, name: &str) -> Result<Arc<Map>, ApiError> {
        if let Some(m) = self.map(name) {
            return Ok(m);
        }
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = maps.get(name) {
            return Ok(Arc::clone(m));
        }
        if maps.len() >= self.config.server.max_maps {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "too_many_maps",
                format!(
                    "the server holds its limit of {} maps (server.max_maps)",
                    self.config.server.max_maps
                ),
            ));
        }
        let m = self.build_map(name).map_err(ApiError::internal)?;
        maps.insert(name.to_string(), Arc::clone(&m));
        Ok(m)
    }

    /// The map for the replica of a store that already committed writes to it
    /// (cluster mode): created if absent, beyond `max_maps` if need be, since
    /// the truth is elsewhere and must be mirrored whole.
    pub fn replica_map(&self, name: &str) -> Result<Arc<Map>, String> {
        if let Some(m) = self.map(name) {
            return Ok(m);
        }
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = maps.get(name) {
            return Ok(Arc::clone(m));
        }
        let m = self.build_map(name)?;
        maps.insert(name.to_string(), Arc::clone(&m));
        Ok(m)
    }

    /// All maps, sorted by name.
    pub fn all_maps(&self) -> Vec<(String, Arc<Map>)> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = maps
            .iter()
            .map(|(k, m)| (k.clone(), Arc::clone(m)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
