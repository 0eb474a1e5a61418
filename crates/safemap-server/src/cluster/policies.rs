//! Every server of a cluster runs the same `[maps]` policies (cluster.md): a
//! deny rule or breaker that one server lacks would let writes through it
//! bypass the rule. The first server records its policies under
//! `<prefix>meta/policies` (one transaction; of servers starting together one
//! records); a server whose policies differ refuses to start, naming the map.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use serde_json::{Value, json};

use super::Cluster;
use crate::config::{Config, MapPolicy};

/// The canonical JSON of one map's policy.
fn policy_json(p: &MapPolicy) -> Value {
    json!({
        "retention_ms": p.retention.as_millis() as u64,
        "plan_ttl_ms": p.plan_ttl.as_millis() as u64,
        "delete_breaker": p.breaker.map(|(max, w)| json!({"max_deletes": max, "per_ms": w.as_millis() as u64})),
        "deny_delete": p.deny.iter().map(|d| json!({"name": d.name, "pointer": d.pointer, "equals": d.equals})).collect::<Vec<_>>(),
        "references": p.references.iter().map(|r| json!({
            "name": r.name, "pointer": r.pointer, "to": r.to,
            "on_delete": format!("{:?}", r.on_delete).to_lowercase(),
        })).collect::<Vec<_>>(),
    })
}

/// The canonical JSON of every configured map's policy, by name.
pub fn policies_json(config: &Config) -> BTreeMap<String, Value> {
    config
        .maps
        .iter()
        .map(|(name, p)| (name.clone(), policy_json(p)))
        .collect()
}

/// The first difference between `ours` and `recorded`, as a sentence.
pub fn difference(
    ours: &BTreeMap<String, Value>,
    recorded: &BTreeMap<String, Value>,
) -> Option<String> {
    let names: std::collections::BTreeSet<&String> = ours.keys().chain(recorded.keys()).collect();
    names
        .into_iter()
        .find_map(|name| match (ours.get(name), recorded.get(name)) {
            (Some(a), Some(b)) if a == b => None,
            (Some(a), Some(b)) => Some(format!("maps.{name} is {a} here but {b} in the cluster")),
            (Some(_), None) => Some(format!(
                "maps.{name} is configured here but not in the cluster"
            )),
            (None, Some(_)) => Some(format!(
                "maps.{name} is configured in the cluster but not here"
            )),
            (None, None) => None,
        })
}

impl Cluster {
    /// Records the policies if none are, else checks ours against them.
    pub async fn check_policies(&self, config: &Config) -> Result<(), String> {
        let key = self.layout.policies();
        let ours = policies_json(config);
        let bytes = serde_json::to_vec(&ours).map_err(|e| e.to_string())?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), bytes, None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let mut client = self.client();
        let resp = client
            .txn(txn)
            .await
            .map_err(|e| format!("recording the map policies in etcd: {e}"))?;
        if resp.succeeded() {
            return Ok(());
        }
        let recorded: BTreeMap<String, Value> = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .and_then(|kv| serde_json::from_slice(kv.value()).ok()),
                _ => None,
            })
            .ok_or_else(|| format!("{key} in etcd does not hold map policies"))?;
        match difference(&ours, &recorded) {
            None => Ok(()),
            Some(d) => Err(format!(
                "this server's [maps] policies differ from those the cluster runs ({key}): {d}; every server of a cluster must run the same policies"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_map() {
        let a = BTreeMap::from([("m".to_string(), json!({"x": 1}))]);
        let b = BTreeMap::from([("m".to_string(), json!({"x": 2}))]);
        assert_eq!(difference(&a, &a), None);
        assert!(difference(&a, &b).unwrap().starts_with("maps.m is"));
        assert!(
            difference(&a, &BTreeMap::new())
                .unwrap()
                .contains("not in the cluster")
        );
        assert!(
            difference(&BTreeMap::new(), &a)
                .unwrap()
                .contains("not here")
        );
    }
}
