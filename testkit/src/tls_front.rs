//! A TLS front for a plaintext gRPC server on loopback: what a client sees of a Temporal
//! frontend behind TLS or of Temporal Cloud (whose endpoint the dev server cannot imitate:
//! `temporal server start-dev` has no TLS settings). It has its own CA and a certificate for
//! `localhost` and `127.0.0.1`, asks for a client certificate signed by that CA when told to
//! (mTLS), forwards every HTTP/2 request to the server behind it, and records each request's
//! `authorization` header (how an API key travels) and every refused handshake.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// A CA with a server certificate (localhost, 127.0.0.1) and a client certificate it signed,
/// all PEM.
pub struct TestPki {
    pub ca_pem: String,
    /// The server's certificate and key, PEM (for servers that read files, e.g. redis-server).
    pub server_cert_pem: String,
    pub server_key_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
    ca_der: CertificateDer<'static>,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl TestPki {
    pub fn generate() -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "maestro test CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let leaf =
            |names: Vec<String>, cn: &str| -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::new(names)?;
                params.distinguished_name.push(DnType::CommonName, cn);
                Ok((params.signed_by(&key, &issuer)?, key))
            };
        let (server, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "temporal frontend",
        )?;
        let (client, client_key) = leaf(vec!["maestro".into()], "maestro worker")?;
        Ok(Self {
            ca_pem: ca.pem(),
            server_cert_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
            ca_der: ca.der().clone(),
            server_cert: server.der().clone(),
            server_key: server_key.serialize_der(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        })
    }
}

/// A running front; stops when dropped.
pub struct TlsFront {
    addr: SocketAddr,
    authorizations: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    /// Serves TLS on a free loopback port in front of `upstream` (plaintext HTTP/2, e.g. a
    /// Temporal dev server). With `client_certs`, a client without a certificate of the
    /// PKI's CA is refused at the handshake.
    pub async fn start(upstream: &str, pki: &TestPki, client_certs: bool) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if client_certs {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca_der.clone())?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone()));
        let mut config = builder.with_single_cert(vec![pki.server_cert.clone()], key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let upstream: SocketAddr = upstream.parse().context("upstream must be host:port")?;
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (authorizations, refused) = (authorizations.clone(), refused.clone());
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (acceptor, authorizations, refused) =
                        (acceptor.clone(), authorizations.clone(), refused.clone());
                    tokio::spawn(async move {
                        match acceptor.accept(tcp).await {
                            Ok(tls) => {
                                let _ = forward(tls, upstream, authorizations).await;
                            }
                            Err(e) => lock(&refused).push(e.to_string()),
                        }
                    });
                }
            }
        });
        Ok(Self {
            addr,
            authorizations,
            refused,
            task,
        })
    }

    /// `host:port` to connect to (`127.0.0.1:…`; the certificate names it).
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Every `authorization` header a request carried.
    pub fn authorizations(&self) -> Vec<String> {
        lock(&self.authorizations).clone()
    }

    /// Why each refused handshake was refused.
    pub fn refused_handshakes(&self) -> Vec<String> {
        lock(&self.refused).clone()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves one TLS connection's HTTP/2 requests by sending each to `upstream` over one
/// plaintext HTTP/2 connection.
async fn forward(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    upstream: SocketAddr,
    authorizations: Arc<Mutex<Vec<String>>>,
) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpStream::connect(upstream).await?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let service = service_fn(move |mut request: Request<Incoming>| {
        let mut sender = sender.clone();
        if let Some(value) = request.headers().get("authorization") {
            lock(&authorizations).push(value.to_str().unwrap_or_default().to_string());
        }
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        async move {
            *request.uri_mut() = Uri::try_from(format!("http://{upstream}{path}"))?;
            anyhow::Ok(sender.send_request(request).await?)
        }
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await?;
    Ok(())
}
