//! The command-line client, in the manner of etcdctl: `safemap get|put|delete|
//! list|audit|restore|plan|referrers|token|watch` against `--url` (default
//! `http://127.0.0.1:7878`) with the token from `SAFEMAP_TOKEN`.
//!
//! Success prints the server's JSON answer (pretty) on stdout and exits 0; an
//! API error prints `error: <code>: <message>` on stderr and exits 1; a
//! transport error exits 2.

use clap::{Args, Subcommand};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Characters left as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Connection options of every client command.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// Server URL.
    #[arg(
        long,
        global = true,
        env = "SAFEMAP_URL",
        default_value = "http://127.0.0.1:7878"
    )]
    pub url: String,
    /// Bearer token.
    #[arg(long, global = true, env = "SAFEMAP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Client commands.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCmd {
    /// Read an entry.
    Get {
        /// Map name.
        map: String,
        /// Key.
        key: String,
    },
    /// Create or replace an entry; VALUE is JSON (`@file` reads a file, `-` stdin).
    Put {
        /// Map name.
        map: String,
        /// Key.
        key: String,
        /// JSON value.
        value: String,
        /// Only if the entry is at this revision.
        #[arg(long)]
        if_revision: Option<u64>,
        /// Only if the key is absent.
        #[arg(long)]
        create: bool,
    },
    /// Delete an entry (a reason is required).
    Delete {
        /// Map name.
        map: String,
        /// Key.
        key: String,
        /// Why (X-Reason).
        #[arg(long)]
        reason: String,
        /// Only if the entry is at this revision.
        #[arg(long)]
        if_revision: Option<u64>,
    },
    /// List entries in key order.
    List {
        /// Map name.
        map: String,
        /// Key prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Start after this key.
        #[arg(long)]
        after: Option<String>,
        /// Page size (1..=1000).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Query the audit journal.
    Audit {
        /// Only this map.
        #[arg(long)]
        map: Option<String>,
        /// Only this key.
        #[arg(long)]
        key: Option<String>,
        /// Only this plan.
        #[arg(long)]
        plan: Option<String>,
        /// After this audit id: the `next` of the previous page (a page may
        /// hold fewer than `--limit` records while `next` is set; keep going
        /// until it is null).
        #[arg(long)]
        after: Option<u64>,
        /// Page size.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Restore a deleted value (by audit id) or a whole plan.
    Restore {
        /// Map name.
        map: String,
        /// Audit id of the delete.
        #[arg(long, conflicts_with = "plan", required_unless_present = "plan")]
        audit_id: Option<u64>,
        /// Plan id.
        #[arg(long)]
        plan: Option<String>,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Delete plans: create, then execute.
    #[command(subcommand)]
    Plan(PlanCmd),
    /// Who refers to a key, directly, in (map, key, reference) order.
    Referrers {
        /// Map name.
        map: String,
        /// Key.
        key: String,
        /// The `next` cursor of the previous page.
        #[arg(long)]
        after: Option<String>,
        /// Page size (1..=1000).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Tokens: create, list, revoke.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Follow changes of a map (server-sent events), one JSON line per event.
    Watch {
        /// Map name.
        map: String,
        /// From this revision.
        #[arg(long)]
        from_revision: Option<u64>,
        /// Key prefix.
        #[arg(long)]
        prefix: Option<String>,
    },
}

/// Plan commands.
#[derive(Debug, Clone, Subcommand)]
pub enum PlanCmd {
    /// Plan a bulk delete (dry run; nothing is deleted).
    Create {
        /// Map name.
        map: String,
        /// Keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// These keys (repeat the flag).
        #[arg(long = "key")]
        keys: Vec<String>,
        /// JSON pointer of a `where` selector.
        #[arg(long, requires = "equals")]
        pointer: Option<String>,
        /// JSON value the pointer must equal.
        #[arg(long, requires = "pointer")]
        equals: Option<String>,
        /// Also plan every key that refers to a planned key through a
        /// `cascade` reference; prints the tree per map and its depth.
        #[arg(long)]
        cascade: bool,
    },
    /// Execute a plan, confirming its count.
    Execute {
        /// Map name.
        map: String,
        /// Plan id.
        plan: String,
        /// The plan's count.
        #[arg(long)]
        count: u64,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

/// Token commands.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCmd {
    /// Create a token; it is printed once.
    Create {
        /// Token name.
        name: String,
        /// Roles: read, write, delete, admin (repeat or comma-separate).
        #[arg(long = "role", value_delimiter = ',', required = true)]
        roles: Vec<String>,
    },
    /// List token names and roles.
    List,
    /// Revoke a token.
    Revoke {
        /// Token name.
        name: String,
    },
}

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn parse_value(raw: &str) -> Result<Value, String> {
    let text = if raw == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("reading stdin: {e}"))?
    } else if let Some(path) = raw.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?
    } else {
        raw.to_string()
    };
    serde_json::from_str(&text).map_err(|e| format!("the value is not JSON: {e}"))
}

struct Req {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
}

impl Req {
    fn new(method: Method, path: String) -> Req {
        Req {
            method,
            path,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }
    fn q(mut self, k: &'static str, v: Option<impl ToString>) -> Req {
        if let Some(v) = v {
            self.query.push((k, v.to_string()));
        }
        self
    }
    fn h(mut self, k: &'static str, v: impl ToString) -> Req {
        self.headers.push((k, v.to_string()));
        self
    }
    fn body(mut self, v: Value) -> Req {
        self.body = Some(v);
        self
    }
}

/// Runs a client command; returns the process exit code.
pub async fn run(conn: Conn, cmd: ClientCmd) -> i32 {
    let req = match build(cmd.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let http = match reqwest::Client::builder().build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot build the HTTP client: {e}");
            return 2;
        }
    };
    let mut url = format!("{}{}", conn.url.trim_end_matches('/'), req.path);
    for (i, (k, v)) in req.query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(k);
        url.push('=');
        url.push_str(&seg(v));
    }
    let mut rb = http.request(req.method, &url);
    if let Some(t) = &conn.token {
        rb = rb.bearer_auth(t);
    }
    for (k, v) in &req.headers {
        rb = rb.header(*k, v);
    }
    if let Some(b) = &req.body {
        rb = rb.json(b);
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot reach {url}: {e}");
            return 2;
        }
    };
    let status = resp.status();
    if matches!(cmd, ClientCmd::Watch { .. }) && status == StatusCode::OK {
        return follow(resp).await;
    }
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: reading the answer failed: {e}");
            return 2;
        }
    };
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    if status.is_success() {
        match parsed {
            Some(v) => {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                if matches!(cmd, ClientCmd::Plan(PlanCmd::Create { cascade: true, .. })) {
                    eprint!("{}", tree_summary(&v));
                }
            }
            None => println!("{text}"),
        }
        0
    } else {
        match parsed.as_ref().and_then(|v| v.get("error")) {
            Some(e) => {
                eprintln!(
                    "error: {} ({}): {}",
                    e["code"].as_str().unwrap_or("?"),
                    status.as_u16(),
                    e["message"].as_str().unwrap_or("")
                );
                if e["details"].as_object().is_some_and(|d| !d.is_empty()) {
                    eprintln!("details: {}", e["details"]);
                }
            }
            None => eprintln!("error: HTTP {status}: {text}"),
        }
        1
    }
}

/// A cascading plan in a few lines (on stderr, so that stdout stays JSON):
/// the count per map, the depth, and each blocked root with its path.
fn tree_summary(plan: &Value) -> String {
    let mut out = String::new();
    let count = plan["count"].as_u64().unwrap_or(0);
    let depth = plan["depth"].as_u64().unwrap_or(0);
    out.push_str(&format!("tree: {count} keys, depth {depth}\n"));
    if let Some(tree) = plan["tree"].as_object() {
        for (map, n) in tree {
            out.push_str(&format!("  {map}: {n}\n"));
        }
    }
    for b in plan["blocked"].as_array().into_iter().flatten() {
        let path: Vec<String> = b["path"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                format!(
                    "{}/{}",
                    s["map"].as_str().unwrap_or("?"),
                    s["key"].as_str().unwrap_or("?")
                )
            })
            .collect();
        let by = b["reference"]
            .as_str()
            .or_else(|| b["rule"].as_str())
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "blocked {}: {}{by}: {}\n",
            b["key"].as_str().unwrap_or("?"),
            b["why"].as_str().unwrap_or("?"),
            path.join(" <- ")
        ));
    }
    if let Some(id) = plan["plan_id"].as_str() {
        out.push_str(&format!(
            "execute with: safemap plan execute MAP {id} --count {count} --reason ...\n"
        ));
    }
    out
}

async fn follow(mut resp: reqwest::Response) -> i32 {
    let mut buf = String::new();
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                buf.push_str(&String::from_utf8_lossy(&bytes));
                while let Some(i) = buf.find('\n') {
                    let line: String = buf.drain(..=i).collect();
                    if let Some(data) = line.trim_end().strip_prefix("data:") {
                        println!("{}", data.trim());
                    }
                }
            }
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("error: the stream broke: {e}");
                return 2;
            }
        }
    }
}

fn build(cmd: ClientCmd) -> Result<Req, String> {
    let key_path = |m: &str, k: &str| format!("/v1/maps/{}/keys/{}", seg(m), seg(k));
    Ok(match cmd {
        ClientCmd::Get { map, key } => Req::new(Method::GET, key_path(&map, &key)),
        ClientCmd::Put {
            map,
            key,
            value,
            if_revision,
            create,
        } => {
            let mut r = Req::new(Method::PUT, key_path(&map, &key)).body(parse_value(&value)?);
            if let Some(rev) = if_revision {
                r = r.h("if-match", format!("\"{rev}\""));
            }
            if create {
                r = r.h("if-none-match", "*");
            }
            r
        }
        ClientCmd::Delete {
            map,
            key,
            reason,
            if_revision,
        } => {
            let mut r = Req::new(Method::DELETE, key_path(&map, &key)).h("x-reason", reason);
            if let Some(rev) = if_revision {
                r = r.h("if-match", format!("\"{rev}\""));
            }
            r
        }
        ClientCmd::List {
            map,
            prefix,
            after,
            limit,
        } => Req::new(Method::GET, format!("/v1/maps/{}/keys", seg(&map)))
            .q("prefix", prefix)
            .q("after", after)
            .q("limit", limit),
        ClientCmd::Audit {
            map,
            key,
            plan,
            after,
            limit,
        } => Req::new(Method::GET, "/v1/audit".into())
            .q("map", map)
            .q("key", key)
            .q("plan_id", plan)
            .q("after", after)
            .q("limit", limit),
        ClientCmd::Restore {
            map,
            audit_id,
            plan,
            reason,
        } => {
            let body = match (audit_id, plan) {
                (Some(id), _) => json!({"audit_id": id}),
                (None, Some(p)) => json!({"plan_id": p}),
                (None, None) => return Err("give --audit-id or --plan".into()),
            };
            Req::new(Method::POST, format!("/v1/maps/{}/restore", seg(&map)))
                .h("x-reason", reason)
                .body(body)
        }
        ClientCmd::Plan(PlanCmd::Create {
            map,
            prefix,
            keys,
            pointer,
            equals,
            cascade,
        }) => {
            let mut body = serde_json::Map::new();
            if cascade {
                body.insert("cascade".into(), json!(true));
            }
            if let Some(p) = prefix {
                body.insert("prefix".into(), json!(p));
            }
            if !keys.is_empty() {
                body.insert("keys".into(), json!(keys));
            }
            if let (Some(p), Some(e)) = (pointer, equals) {
                body.insert(
                    "where".into(),
                    json!({"pointer": p, "equals": parse_value(&e)?}),
                );
            }
            Req::new(Method::POST, format!("/v1/maps/{}/delete-plans", seg(&map)))
                .body(Value::Object(body))
        }
        ClientCmd::Plan(PlanCmd::Execute {
            map,
            plan,
            count,
            reason,
        }) => Req::new(
            Method::POST,
            format!("/v1/maps/{}/delete-plans/{}/execute", seg(&map), seg(&plan)),
        )
        .h("x-reason", reason)
        .h("x-confirm-count", count),
        ClientCmd::Referrers {
            map,
            key,
            after,
            limit,
        } => Req::new(
            Method::GET,
            format!("/v1/maps/{}/keys/{}/referrers", seg(&map), seg(&key)),
        )
        .q("after", after)
        .q("limit", limit),
        ClientCmd::Token(TokenCmd::Create { name, roles }) => {
            Req::new(Method::POST, "/v1/tokens".into()).body(json!({"name": name, "roles": roles}))
        }
        ClientCmd::Token(TokenCmd::List) => Req::new(Method::GET, "/v1/tokens".into()),
        ClientCmd::Token(TokenCmd::Revoke { name }) => {
            Req::new(Method::DELETE, format!("/v1/tokens/{}", seg(&name)))
        }
        ClientCmd::Watch {
            map,
            from_revision,
            prefix,
        } => Req::new(Method::GET, format!("/v1/maps/{}/watch", seg(&map)))
            .q("from_revision", from_revision)
            .q("prefix", prefix),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_are_percent_encoded() {
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        assert_eq!(seg("é"), "%C3%A9");
        let r = build(ClientCmd::Get {
            map: "m".into(),
            key: "x/y".into(),
        })
        .unwrap();
        assert_eq!(r.path, "/v1/maps/m/keys/x%2Fy");
    }

    #[test]
    fn a_cascading_plan_is_summarised_per_map_with_its_depth() {
        let plan = json!({"plan_id": "00000000000000ab", "count": 5, "depth": 3,
            "tree": {"item_notes": 1, "order_items": 2, "orders": 2},
            "blocked": [{"key": "o-3", "why": "restricted", "reference": "order",
                "path": [{"map": "orders", "key": "o-3"}, {"map": "shipments", "key": "s-1"}]}]});
        let s = tree_summary(&plan);
        assert!(s.contains("tree: 5 keys, depth 3"), "{s}");
        assert!(s.contains("  order_items: 2"), "{s}");
        assert!(
            s.contains("blocked o-3: restricted (order): orders/o-3 <- shipments/s-1"),
            "{s}"
        );
    }

    #[test]
    fn values_must_be_json() {
        assert!(parse_value("{\"a\":1}").is_ok());
        assert!(parse_value("not json").is_err());
    }
}
