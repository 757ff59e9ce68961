//! HTTPS serving: rustls over a TCP listener, HTTP/1.1 only, a cap on connections (and a lower
//! one per client), a deadline on every phase of a connection, accept errors that back off, and
//! a graceful shutdown that lets requests in flight finish. The limits are [`ServerLimits`].

mod body;
mod io;
mod limits;

pub use limits::ServerLimits;

use crate::ca::{pem_blocks, CaFiles};
use crate::portal::PortalConfig;
use crate::service::Cms;
use body::DeadlineBody;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use io::WriteDeadline;
use limits::ClientSlots;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The largest buffer a connection reads into or writes from: the API's heads are well under
/// 8 KiB, and hyper's default (about 400 KiB) would let 1,024 slow connections hold 400 MiB.
/// hyper checks it between reads, so one read can carry a head a little past it.
const MAX_BUFFER_BYTES: usize = 64 * 1024;
/// The longest request head (request line and headers) answered; longer heads get `431` and
/// the connection is closed, however the bytes arrived.
const MAX_HEAD_BYTES: usize = 64 * 1024;
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

/// The size of a request's head as sent: request line and header lines.
fn head_bytes<B>(request: &hyper::Request<B>) -> usize {
    let line = request.method().as_str().len() + request.uri().to_string().len() + 12;
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + line
}

/// The answer to a head over [`MAX_HEAD_BYTES`]: `431`, and the connection closed.
fn head_too_large() -> axum::response::Response {
    let mut response = axum::response::Response::new(axum::body::Body::empty());
    *response.status_mut() = hyper::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    response
}

/// Why a request's connection is closed without an answer (hyper closes the connection of a
/// request whose service fails).
#[derive(Debug, Error)]
enum Unanswered {
    /// The gate refused the request.
    #[error("request refused: the server is set to refuse requests")]
    Refused,
    /// The request's body did not arrive in full before its deadline.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimedOut(Duration),
}

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
/// issued itself and the default [`ServerLimits`], until [`RunningServer::stop`].
pub async fn start(cms: Arc<Cms>, addr: SocketAddr) -> Result<RunningServer, ServerError> {
    let files = TlsFiles::own(&cms.data_dir().ca_files());
    start_with_tls(cms, addr, &files, &ServerLimits::default()).await
}

/// As [`start`], with the web portal on under `/portal`, its pages talking to the identity
/// agent bridge of `portal`.
pub async fn start_with_portal(
    cms: Arc<Cms>,
    addr: SocketAddr,
    portal: PortalConfig,
) -> Result<RunningServer, ServerError> {
    let files = TlsFiles::own(&cms.data_dir().ca_files());
    start_serving(cms, addr, &files, &ServerLimits::default(), Some(portal)).await
}

/// As [`start`], presenting the certificate and key in `files` (an organisation's own) and
/// holding connections to `limits`.
pub async fn start_with_tls(
    cms: Arc<Cms>,
    addr: SocketAddr,
    files: &TlsFiles,
    limits: &ServerLimits,
) -> Result<RunningServer, ServerError> {
    start_serving(cms, addr, files, limits, None).await
}

/// As [`start_with_tls`], with the web portal on when `portal` is given (off, `/portal` is an
/// unknown endpoint as any other).
pub async fn start_serving(
    cms: Arc<Cms>,
    addr: SocketAddr,
    files: &TlsFiles,
    limits: &ServerLimits,
    portal: Option<PortalConfig>,
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
    let task = tokio::spawn(serve(
        listener,
        tls,
        app(cms, portal.as_ref()),
        *limits,
        shutdown.clone(),
        gate.clone(),
    ));
    Ok(RunningServer {
        addr,
        shutdown,
        task,
        gate,
    })
}

/// Serves connections from `listener`, held to `limits`, until `shutdown` is cancelled, then
/// drains them.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cms: Arc<Cms>,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) {
    serve(
        listener,
        tls,
        app(cms, None),
        *limits,
        shutdown,
        Arc::new(Gate::default()),
    )
    .await;
}

/// What the server answers: the API, and the portal's pages when it is on.
fn app(cms: Arc<Cms>, portal: Option<&PortalConfig>) -> axum::Router {
    let api = crate::api::router(cms.clone());
    match portal {
        Some(config) => crate::portal::router(cms, config).merge(api),
        None => api,
    }
}

/// [`run`], serving `app` and letting requests through `gate`.
async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
    gate: Arc<Gate>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let client_slots = ClientSlots::new(limits.max_connections_per_client.max(1));
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
        // Over its client's cap, a connection is closed before the handshake costs anything.
        let Some(client_slot) = client_slots.take(peer.ip()) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = TowerToHyperService::new(app.clone());
        let gate = gate.clone();
        // A refused request, or one whose body is late, fails the service, and hyper closes
        // its connection unanswered.
        let client = crate::api::ClientAddr(peer.ip());
        let body_timeout = limits.body_timeout;
        let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let oversized = (head_bytes(&request) > MAX_HEAD_BYTES).then(head_too_large);
                let timed_out = Arc::new(AtomicBool::new(false));
                let mut request =
                    request.map(|body| DeadlineBody::new(body, body_timeout, timed_out.clone()));
                request.extensions_mut().insert(client);
                let admitted = oversized.is_none() && gate.admit();
                let answer = admitted.then(|| app.call(request));
                async move {
                    if let Some(refusal) = oversized {
                        return Ok(refusal);
                    }
                    let Some(answer) = answer else {
                        return Err(Unanswered::Refused);
                    };
                    let response = answer.await.map_err(|never| match never {})?;
                    if timed_out.load(Ordering::SeqCst) {
                        tracing::debug!(client = %client.0, "request body late: connection closed");
                        return Err(Unanswered::BodyTimedOut(body_timeout));
                    }
                    Ok(response)
                }
            });
        let shutdown = shutdown.clone();
        let handshake_timeout = limits.handshake_timeout;
        let header_timeout = limits.header_timeout;
        let write_timeout = limits.write_timeout;
        tracker.spawn(async move {
            let _permit = permit;
            let _client_slot = client_slot;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client = %client.0, "TLS handshake late: connection closed");
                    return;
                }
            };
            // HTTP/1.1 only, as ALPN says: an HTTP/2 preface is refused at once. hyper starts
            // the header timer as soon as the connection is ready for a request, so it bounds
            // the idle keep-alive wait and a trickled header alike; a client that leaves its
            // answers unread is cut off by the write deadline.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(MAX_BUFFER_BYTES)
                .serve_connection(
                    TokioIo::new(WriteDeadline::new(tls, write_timeout)),
                    service,
                );
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
