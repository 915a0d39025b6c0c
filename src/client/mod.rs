//! The `sawmill` command line as a client of Loki's HTTP API, the way logcli is: it speaks
//! only the public API, so every command works against Sawmill and against Grafana Loki.
//! `Conn` holds the address and credentials and makes the requests (ureq, blocking; rustls for
//! https and wss); `query` pages log queries and follows the live tail, `meta` lists labels,
//! series, stats and volume, `push` ships lines, `output` prints what comes back.

pub mod correlate;
pub mod meta;
pub mod output;
pub mod push;
pub mod query;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use thiserror::Error;

/// How a client command failed; the exit code follows from it.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Wrong flags or arguments: exit code 2.
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {addr}: {reason} (is the server running? set --addr or LOKI_ADDR)")]
    Unreachable { addr: String, reason: String },
    #[error("{path}: server answered {status}: {body}")]
    Status {
        path: String,
        status: u16,
        body: String,
    },
    #[error("{path}: unexpected answer: {reason}")]
    Decode { path: String, reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// 2 for bad usage, 1 for everything the server or the query got wrong.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Worth retrying: the server is unreachable, overloaded (429) or failing (5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Where the server is and who we are to it (logcli's flags).
#[derive(Debug, Clone, Default)]
pub struct ConnOptions {
    pub addr: String,
    pub org_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub bearer_token: Option<String>,
}

/// A connection to a Loki-compatible server.
pub struct Conn {
    opts: ConnOptions,
    agent: ureq::Agent,
}

impl Conn {
    pub fn new(mut opts: ConnOptions) -> Result<Conn> {
        while opts.addr.ends_with('/') {
            opts.addr.pop();
        }
        if !(opts.addr.starts_with("http://") || opts.addr.starts_with("https://")) {
            return Err(ClientError::Usage(format!(
                "invalid --addr {:?}: expected http://host:port or https://host:port",
                opts.addr
            )));
        }
        if opts.bearer_token.is_some() && opts.username.is_some() {
            return Err(ClientError::Usage(
                "--bearer-token and --username are exclusive: pick one way to authenticate".into(),
            ));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .user_agent(concat!("sawmill/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Conn { opts, agent })
    }

    pub fn addr(&self) -> &str {
        &self.opts.addr
    }

    /// Headers every request carries: tenant and credentials.
    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let Some(org) = &self.opts.org_id {
            h.push(("X-Scope-OrgID", org.clone()));
        }
        if let Some(token) = &self.opts.bearer_token {
            h.push(("Authorization", format!("Bearer {token}")));
        } else if let Some(user) = &self.opts.username {
            let pass = self.opts.password.as_deref().unwrap_or("");
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            h.push(("Authorization", format!("Basic {b64}")));
        }
        h
    }

    fn call(&self, req: ureq::Request, path: &str, body: Option<(&str, &[u8])>) -> Result<String> {
        let mut req = req;
        for (k, v) in self.headers() {
            req = req.set(k, &v);
        }
        let res = match body {
            Some((ct, b)) => req.set("Content-Type", ct).send_bytes(b),
            None => req.call(),
        };
        match res {
            Ok(r) => r.into_string().map_err(|e| ClientError::Decode {
                path: path.to_string(),
                reason: e.to_string(),
            }),
            Err(ureq::Error::Status(status, r)) => {
                let body = r.into_string().unwrap_or_default();
                Err(ClientError::Status {
                    path: path.to_string(),
                    status,
                    body: body.trim().to_string(),
                })
            }
            Err(ureq::Error::Transport(t)) => Err(ClientError::Unreachable {
                addr: self.opts.addr.clone(),
                reason: t.to_string(),
            }),
        }
    }

    /// `GET path?params`, the body as text.
    pub fn get_text(&self, path: &str, params: &[(&str, String)]) -> Result<String> {
        let mut req = self.agent.get(&format!("{}{path}", self.opts.addr));
        for (k, v) in params {
            req = req.query(k, v);
        }
        self.call(req, path, None)
    }

    /// `GET path?params` answered with Loki's `{"status":"success","data":...}`: the data.
    pub fn get_data(&self, path: &str, params: &[(&str, String)]) -> Result<serde_json::Value> {
        let text = self.get_text(path, params)?;
        let mut v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ClientError::Decode {
                path: path.to_string(),
                reason: format!("not JSON: {e}"),
            })?;
        match v.get_mut("data") {
            Some(d) => Ok(d.take()),
            None => Ok(v),
        }
    }

    /// `POST path` with a body.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<String> {
        let req = self.agent.post(&format!("{}{path}", self.opts.addr));
        self.call(req, path, Some((content_type, body)))
    }

    /// Opens a WebSocket at `path?params` (ws:// for http, wss:// for https), with a read
    /// timeout so that a silent server is noticed.
    pub fn websocket(
        &self,
        path: &str,
        params: &[(&str, String)],
        read_timeout: Duration,
    ) -> Result<tungstenite::WebSocket<Box<dyn Stream>>> {
        use tungstenite::client::IntoClientRequest;
        let query =
            serde_urlencoded::to_string(params).map_err(|e| ClientError::Other(e.to_string()))?;
        let (tls, rest) = match self.opts.addr.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, self.opts.addr.trim_start_matches("http://")),
        };
        let scheme = if tls { "wss" } else { "ws" };
        let url = format!("{scheme}://{rest}{path}?{query}");
        let unreachable = |reason: String| ClientError::Unreachable {
            addr: self.opts.addr.clone(),
            reason,
        };
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::Usage(format!("invalid address {url:?}: {e}")))?;
        for (k, v) in self.headers() {
            let value = v
                .parse()
                .map_err(|_| ClientError::Usage(format!("invalid {k} header value")))?;
            req.headers_mut().insert(k, value);
        }
        let host = req.uri().host().unwrap_or("localhost").to_string();
        let port = req.uri().port_u16().unwrap_or(if tls { 443 } else { 80 });
        let tcp =
            TcpStream::connect((host.as_str(), port)).map_err(|e| unreachable(e.to_string()))?;
        tcp.set_read_timeout(Some(read_timeout))?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = if tls {
            Box::new(tls_stream(&host, tcp)?)
        } else {
            Box::new(tcp)
        };
        match tungstenite::client::client(req, stream) {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).trim().to_string())
                    .unwrap_or_default();
                Err(ClientError::Status {
                    path: path.to_string(),
                    status,
                    body,
                })
            }
            Err(e) => Err(unreachable(e.to_string())),
        }
    }
}

/// A byte stream a WebSocket runs over: plain TCP or TLS.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn tls_stream(
    host: &str,
    tcp: TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Other(format!("tls: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| ClientError::Usage(format!("invalid host name {host:?}: {e}")))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| ClientError::Other(format!("tls: {e}")))?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// A time flag: RFC3339, or Unix seconds or nanoseconds (as Loki's API takes them).
pub fn parse_time(flag: &str, v: &str) -> Result<i64> {
    crate::model::time::parse_timestamp(v)
        .map_err(|m| ClientError::Usage(format!("invalid --{flag}: {m}")))
}

/// A duration flag such as `--since 1h` or `--step 30s`, in nanoseconds.
pub fn parse_duration(flag: &str, v: &str) -> Result<i64> {
    crate::logql::parse_duration(v)
        .map(|d| d.as_nanos())
        .map_err(|e| ClientError::Usage(format!("invalid --{flag} {v:?}: {e}")))
}
