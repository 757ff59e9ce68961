//! HTTPS serving: rustls over a TCP listener, a cap on connections, accept errors that back
//! off, and a graceful shutdown that lets requests in flight finish.

use crate::ca::{pem_blocks, CaFiles};
use crate::service::Cms;
use hyper::service::Service as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The most connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 1024;
/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful shutdown waits for connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What stops the server from starting.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The TLS key or certificate cannot be read or used.
    #[error("TLS set-up: {0}")]
    Tls(String),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// The TLS certificate chain and key the server presents.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM: the server certificate first, then any intermediates.
    pub certificate_chain: PathBuf,
    /// PEM: the PKCS#8 private key.
    pub key: PathBuf,
    /// PEM: a CA certificate appended to the chain (the service's own CA for the certificate
    /// it issues itself).
    pub issuer: Option<PathBuf>,
}

impl TlsFiles {
    /// The TLS certificate the service issued itself at `init`.
    pub fn own(files: &CaFiles) -> Self {
        Self {
            certificate_chain: files.tls_certificate.clone(),
            key: files.tls_key.clone(),
            issuer: Some(files.ca_certificate.clone()),
        }
    }
}

/// The rustls configuration from TLS files.
pub fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))
    };
    let cert_pem = read(&files.certificate_chain)?;
    let key_pem = read(&files.key)?;
    let mut chain: Vec<CertificateDer<'static>> = pem_blocks(&cert_pem, "CERTIFICATE")
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    if chain.is_empty() {
        return Err(ServerError::Tls(format!(
            "{} holds no certificate",
            files.certificate_chain.display()
        )));
    }
    if let Some(issuer) = &files.issuer {
        if let Some(ca) = pem_blocks(&read(issuer)?, "CERTIFICATE").pop() {
            chain.push(CertificateDer::from(ca));
        }
    }
    let key = pem_blocks(&key_pem, "PRIVATE KEY")
        .pop()
        .ok_or_else(|| ServerError::Tls(format!("{} holds no PKCS#8 key", files.key.display())))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Counts the requests the server lets through and, when told to, refuses the rest: the
/// service then looks unreachable, as when it stops in the middle of a client's work.
#[derive(Debug)]
struct Gate {
    /// Requests let through.
    served: AtomicU64,
    /// The most requests to let through; `u64::MAX` for no limit.
    limit: AtomicU64,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            served: AtomicU64::new(0),
            limit: AtomicU64::new(u64::MAX),
        }
    }
}

impl Gate {
    /// Whether new work is let in now.
    fn is_open(&self) -> bool {
        self.served.load(Ordering::SeqCst) < self.limit.load(Ordering::SeqCst)
    }

    /// Lets one request through and counts it, or refuses it.
    fn admit(&self) -> bool {
        self.served
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |served| {
                (served < self.limit.load(Ordering::SeqCst)).then_some(served + 1)
            })
            .is_ok()
    }
}

/// A request the gate refused: hyper drops its connection without an answer.
#[derive(Debug, Error)]
#[error("request refused: the server is set to refuse requests")]
struct RefusedRequest;

/// A server running in the background.
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    gate: Arc<Gate>,
}

impl RunningServer {
    /// The `https://…` base URL of the server.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// How many API requests the server has served (let through) so far.
    pub fn requests(&self) -> u64 {
        self.gate.served.load(Ordering::SeqCst)
    }

    /// With `Some(n)`, refuses every request beyond the first `n` in total: a refused request's
    /// connection is closed at once without an answer, and new connections are closed as soon
    /// as they are accepted, so clients see the service unreachable. `None` serves normally
    /// again. Refused requests are not counted in [`RunningServer::requests`].
    pub fn refuse_after(&self, total: Option<u64>) {
        self.gate
            .limit
            .store(total.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Stops accepting, lets requests in flight finish, and waits until it has stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Binds `addr` and serves the API of `cms` over HTTPS, with the TLS certificate the service
/// issued itself, until [`RunningServer::stop`].
pub async fn start(cms: Arc<Cms>, addr: SocketAddr) -> Result<RunningServer, ServerError> {
    let files = TlsFiles::own(&cms.data_dir().ca_files());
    start_with_tls(cms, addr, &files).await
}

/// As [`start`], presenting the certificate and key in `files` (an organisation's own).
pub async fn start_with_tls(
    cms: Arc<Cms>,
    addr: SocketAddr,
    files: &TlsFiles,
) -> Result<RunningServer, ServerError> {
    let tls = tls_config(files)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let shutdown = CancellationToken::new();
    let gate = Arc::new(Gate::default());
    let task = tokio::spawn(serve(listener, tls, cms, shutdown.clone(), gate.clone()));
    Ok(RunningServer {
        addr,
        shutdown,
        task,
        gate,
    })
}

/// Serves connections from `listener` until `shutdown` is cancelled, then drains them.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cms: Arc<Cms>,
    shutdown: CancellationToken,
) {
    serve(listener, tls, cms, shutdown, Arc::new(Gate::default())).await;
}

/// [`run`], letting requests through `gate`.
async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cms: Arc<Cms>,
    shutdown: CancellationToken,
    gate: Arc<Gate>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let app = crate::api::router(cms);
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit,
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => {
                backoff = Duration::from_millis(5);
                conn
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, then try again.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        if !gate.is_open() {
            // Refusing: the connection closes before the TLS handshake.
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = TowerToHyperService::new(app.clone());
        let gate = gate.clone();
        // A refused request fails the service, and hyper closes its connection unanswered.
        let client = crate::api::ClientAddr(peer.ip());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(client);
            let admitted = gate.admit();
            let answer = admitted.then(|| app.call(request));
            async move {
                match answer {
                    Some(answer) => answer.await.map_err(|never| match never {}),
                    None => Err(RefusedRequest),
                }
            }
        });
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // A client that trickles its headers is cut off rather than holding a slot.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await;
}
