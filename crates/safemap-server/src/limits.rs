//! The listener: at most `max_connections` TCP connections served at once,
//! optionally TLS (rustls) in front.
//!
//! Connections beyond the bound are not refused; they wait in the kernel's
//! accept queue until a served connection closes (the permit is released when
//! the connection's stream is dropped). With TLS, handshakes run in their own
//! tasks (at most [`TLS_HANDSHAKE_TIMEOUT`] each) so a slow client never
//! stalls the accept loop; a failed handshake is logged at debug level.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Longest TLS handshake before the connection is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A `TcpListener` bounded in concurrent connections, plain or TLS.
pub struct LimitedListener {
    local: SocketAddr,
    mode: Mode,
}

enum Mode {
    Plain {
        inner: TcpListener,
        permits: Arc<Semaphore>,
    },
    Tls {
        rx: mpsc::Receiver<(ServedStream, SocketAddr)>,
        acceptor_task: tokio::task::JoinHandle<()>,
    },
}

impl Drop for LimitedListener {
    fn drop(&mut self) {
        if let Mode::Tls { acceptor_task, .. } = &self.mode {
            acceptor_task.abort();
        }
    }
}

async fn accept_tcp(
    inner: &TcpListener,
    permits: &Arc<Semaphore>,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    loop {
        let permit = match permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => std::future::pending().await,
        };
        match inner.accept().await {
            Ok((stream, addr)) => {
                let _ = stream.set_nodelay(true);
                return (stream, addr, permit);
            }
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                drop(permit);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl LimitedListener {
    /// Wraps `inner`, serving at most `max` connections at once, in plain text.
    pub fn new(inner: TcpListener, max: usize) -> io::Result<Self> {
        Ok(Self {
            local: inner.local_addr()?,
            mode: Mode::Plain {
                inner,
                permits: Arc::new(Semaphore::new(max.max(1))),
            },
        })
    }

    /// Wraps `inner` with TLS.
    pub fn tls(inner: TcpListener, max: usize, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = inner.local_addr()?;
        let permits = Arc::new(Semaphore::new(max.max(1)));
        let (tx, rx) = mpsc::channel(64);
        let acceptor_task = tokio::spawn(async move {
            loop {
                let (tcp, addr, permit) = accept_tcp(&inner, &permits).await;
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let s = ServedStream {
                                io: Io::Tls(Box::new(tls)),
                                _permit: permit,
                            };
                            let _ = tx.send((s, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            local,
            mode: Mode::Tls { rx, acceptor_task },
        })
    }
}

/// Loads a PEM certificate chain and private key into a TLS acceptor that
/// offers HTTP/2 and HTTP/1.1 (ALPN).
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("reading {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("reading {}: {e}", key.display()))?;
    let mut config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A served connection holding its permit.
pub struct ServedStream {
    io: Io,
    _permit: OwnedSemaphorePermit,
}

impl axum::serve::Listener for LimitedListener {
    type Io = ServedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match &mut self.mode {
            Mode::Plain { inner, permits } => {
                let (tcp, addr, permit) = accept_tcp(inner, permits).await;
                (
                    ServedStream {
                        io: Io::Plain(tcp),
                        _permit: permit,
                    },
                    addr,
                )
            }
            Mode::Tls { rx, .. } => match rx.recv().await {
                Some(c) => c,
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl AsyncRead for ServedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}
