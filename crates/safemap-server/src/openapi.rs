//! The OpenAPI 3.1 document of this API (`GET /v1/openapi.json`), written by
//! hand in `openapi.json`; a test checks it against [`crate::server::route_table`]
//! in both directions.

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// (method, path) pairs the document describes, methods upper-case.
pub fn documented_routes() -> Result<Vec<(String, String)>, String> {
    let doc: serde_json::Value =
        serde_json::from_str(DOCUMENT).map_err(|e| format!("openapi.json: {e}"))?;
    let paths = doc["paths"]
        .as_object()
        .ok_or("openapi.json has no paths object")?;
    let mut out = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().ok_or("path item is not an object")?;
        for method in item.keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn document_matches_route_table_both_ways() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let documented = super::documented_routes().unwrap();
        let mut served: Vec<(String, String)> = crate::server::route_table()
            .into_iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        served.sort();
        for r in &served {
            assert!(documented.contains(r), "served but not documented: {r:?}");
        }
        for r in &documented {
            assert!(served.contains(r), "documented but not served: {r:?}");
        }
    }

    /// Cluster mode's `X-Min-Revision`, `X-Safemap-Revision` and 504
    /// `replica_behind` hold on every `/v1/` route (the cluster layer
    /// covers all of them), as do the 400 of a malformed `X-Min-Revision`.
    #[test]
    fn every_v1_operation_documents_the_cluster_headers() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        for (method, path) in super::documented_routes().unwrap() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let op = &doc["paths"][&path][method.to_lowercase()];
            let params = op["parameters"].as_array().unwrap();
            assert!(
                params.iter().any(|p| p["name"] == "X-Min-Revision"),
                "{method} {path}"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("504"), "{method} {path}");
            assert!(
                responses["400"]["description"]
                    .as_str()
                    .unwrap()
                    .contains("X-Min-Revision"),
                "{method} {path}"
            );
            for (status, r) in responses {
                assert!(
                    r["headers"].get("X-Safemap-Revision").is_some(),
                    "{method} {path} {status}"
                );
            }
        }
    }
}
