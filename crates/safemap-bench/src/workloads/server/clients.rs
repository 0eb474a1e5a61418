//! The three clients of the server workload, behind one call: Redis over
//! RESP on a TCP connection per task (GET/SET/DEL), etcd over its v3 JSON
//! gateway (`/v3/kv/range`, `/v3/kv/put`, `/v3/kv/deleterange`, base64
//! keys), and safemap over its HTTP API (a bearer token, `X-Reason` on
//! deletes). Every request is bounded by [`REQUEST_TIMEOUT`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest a single request may take before it counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The map every safemap request goes to.
pub const SAFEMAP_MAP: &str = "bench";

/// An operation of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read one key.
    Get,
    /// Write one key (unconditional).
    Put,
    /// Delete one key (with a reason where the server takes one).
    Delete,
}

impl Op {
    /// `get`, `put` or `delete`, as in the JSON lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Delete => "delete",
        }
    }
}

/// Where a server listens and how to talk to it.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// Redis at this address.
    Redis(SocketAddr),
    /// etcd's JSON gateway at this base URL.
    Etcd(String),
    /// safemap's HTTP API at this base URL, with a token.
    Safemap {
        /// Base URL, `http://127.0.0.1:PORT`.
        base: String,
        /// Bearer token.
        token: String,
    },
    /// Several servers of one cluster: task `t` talks to part `t % len`
    /// (the load split evenly across them).
    Spread(Vec<Endpoint>),
}

/// One task's connection.
pub enum Conn {
    /// A RESP connection.
    Redis(BufReader<TcpStream>),
    /// The shared HTTP client (it pools connections).
    Http(reqwest::Client),
}

/// Standard base64 with padding (etcd's gateway wants keys and values so).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A RESP command as bytes.
fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Read one RESP reply (simple, error, integer or bulk string); errors are `Err`.
async fn read_reply(r: &mut BufReader<TcpStream>) -> Result<(), String> {
    let mut line = String::new();
    if r.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
        return Err("redis closed the connection".into());
    }
    match line.as_bytes().first() {
        Some(b'+') | Some(b':') => Ok(()),
        Some(b'-') => Err(format!("redis: {}", line.trim())),
        Some(b'$') => {
            let n: i64 = line[1..]
                .trim()
                .parse()
                .map_err(|_| format!("bad RESP length {line:?}"))?;
            if n >= 0 {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        _ => Err(format!("unexpected RESP reply {line:?}")),
    }
}

impl Endpoint {
    /// The endpoint task `t` talks to: itself, or one part of a [`Endpoint::Spread`].
    pub fn for_task(&self, t: usize) -> &Endpoint {
        match self {
            Endpoint::Spread(parts) if !parts.is_empty() => parts[t % parts.len()].for_task(t),
            other => other,
        }
    }

    /// Open this task's connection.
    pub async fn connect(&self, http: &reqwest::Client) -> Result<Conn, String> {
        match self {
            Endpoint::Redis(addr) => {
                let s = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("redis {addr}: {e}"))?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                Ok(Conn::Redis(BufReader::new(s)))
            }
            _ => Ok(Conn::Http(http.clone())),
        }
    }

    /// Whether the server answers (redis PING, etcd /health, safemap /readyz).
    pub async fn ready(&self, http: &reqwest::Client) -> bool {
        match self {
            Endpoint::Redis(_) => {
                let Ok(Conn::Redis(mut c)) = self.connect(http).await else {
                    return false;
                };
                c.get_mut().write_all(&resp(&[b"PING"])).await.is_ok()
                    && read_reply(&mut c).await.is_ok()
            }
            Endpoint::Etcd(base) => http
                .get(format!("{base}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            Endpoint::Safemap { base, .. } => http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            Endpoint::Spread(parts) => {
                for p in parts {
                    if !Box::pin(p.ready(http)).await {
                        return false;
                    }
                }
                !parts.is_empty()
            }
        }
    }

    /// One request; `Err` on a transport error, a timeout or a non-success answer.
    pub async fn call(&self, conn: &mut Conn, op: Op, key: &str, value: u64) -> Result<(), String> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.call_inner(conn, op, key, value)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{} timed out after {REQUEST_TIMEOUT:?}",
                op.as_str()
            )),
        }
    }

    async fn call_inner(
        &self,
        conn: &mut Conn,
        op: Op,
        key: &str,
        value: u64,
    ) -> Result<(), String> {
        match (self, conn) {
            (Endpoint::Redis(_), Conn::Redis(c)) => {
                let v = value.to_string();
                let cmd = match op {
                    Op::Get => resp(&[b"GET", key.as_bytes()]),
                    Op::Put => resp(&[b"SET", key.as_bytes(), v.as_bytes()]),
                    Op::Delete => resp(&[b"DEL", key.as_bytes()]),
                };
                c.get_mut()
                    .write_all(&cmd)
                    .await
                    .map_err(|e| e.to_string())?;
                read_reply(c).await
            }
            (Endpoint::Etcd(base), Conn::Http(h)) => {
                let k = base64(key.as_bytes());
                let (path, body) = match op {
                    Op::Get => ("range", format!(r#"{{"key":"{k}"}}"#)),
                    Op::Put => (
                        "put",
                        format!(
                            r#"{{"key":"{k}","value":"{}"}}"#,
                            base64(value.to_string().as_bytes())
                        ),
                    ),
                    Op::Delete => ("deleterange", format!(r#"{{"key":"{k}"}}"#)),
                };
                let resp = h
                    .post(format!("{base}/v3/kv/{path}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                finish(resp).await
            }
            (Endpoint::Safemap { base, token }, Conn::Http(h)) => {
                let url = format!("{base}/v1/maps/{SAFEMAP_MAP}/keys/{key}");
                let req = match op {
                    Op::Get => h.get(url),
                    Op::Put => h
                        .put(url)
                        .header("content-type", "application/json")
                        .body(format!(r#"{{"v":{value}}}"#)),
                    Op::Delete => h.delete(url).header("x-reason", "benchmark"),
                };
                let resp = req
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                finish(resp).await
            }
            _ => Err("connection does not match the endpoint".into()),
        }
    }
}

/// Read the whole body (so the connection is reused) and check the status.
async fn finish(resp: reqwest::Response) -> Result<(), String> {
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn a_spread_splits_tasks_evenly_across_its_parts() {
        let part = |i: usize| Endpoint::Safemap {
            base: format!("http://127.0.0.1:{i}"),
            token: "t".into(),
        };
        let spread = Endpoint::Spread(vec![part(1), part(2)]);
        let base_of = |t: usize| match spread.for_task(t) {
            Endpoint::Safemap { base, .. } => base.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(base_of(0), "http://127.0.0.1:1");
        assert_eq!(base_of(1), "http://127.0.0.1:2");
        assert_eq!(base_of(2), "http://127.0.0.1:1");
        let single = Endpoint::Etcd("http://e".into());
        assert!(matches!(single.for_task(7), Endpoint::Etcd(u) if u == "http://e"));
    }

    #[test]
    fn resp_encoding() {
        assert_eq!(
            resp(&[b"GET", b"k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()
        );
    }
}
