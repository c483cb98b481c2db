//! Misbehaving endpoints: a server that never answers, one that hangs up
//! in the middle of a response, and a proxy that stops the emulator in the
//! middle of a chosen request.
//!
//! **Invariant:** each endpoint runs on tasks of the caller's runtime and
//! misbehaves only in the one way it is named for; every other byte is
//! passed on (or read) untouched.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};

use crate::testing::EmbeddedDynamo;

/// Listens on a free local port; returns the listener and its endpoint URL.
async fn listen() -> std::io::Result<(TcpListener, String)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    Ok((listener, endpoint))
}

/// An endpoint that accepts connections and reads them, never answering:
/// only the client's timeouts end its calls. Returns the endpoint URL.
pub async fn black_hole() -> std::io::Result<String> {
    let (listener, endpoint) = listen().await?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut sink = vec![0u8; 64 * 1024];
                while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    Ok(endpoint)
}

/// A [`cut_off_server`]: its endpoint, and how many requests it received.
#[derive(Debug, Clone)]
pub struct CutOff {
    /// The endpoint URL.
    pub endpoint: String,
    /// Requests received so far.
    pub requests: Arc<AtomicUsize>,
}

/// An endpoint that answers every request with `200 OK` and headers
/// announcing a 1,000-byte body, then hangs up after a few bytes of it.
pub async fn cut_off_server() -> std::io::Result<CutOff> {
    let (listener, endpoint) = listen().await?;
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let (mut read, mut write) = socket.into_split();
                let mut buffer = Vec::new();
                if read_request(&mut read, &mut buffer).await.is_some() {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = write
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\n\
                              content-length: 1000\r\n\r\n{\"Items\":[{\"AggregateTypeAndId\":",
                        )
                        .await;
                    let _ = write.flush().await;
                }
            });
        }
    });
    Ok(CutOff { endpoint, requests })
}

/// One HTTP/1.1 request: head, body, and its `x-amz-target` (lowercase).
struct RawRequest {
    head: Vec<u8>,
    body: Vec<u8>,
    target: String,
}

/// Reads more bytes into `buffer`; `None` at the end of the stream.
async fn fill(client: &mut OwnedReadHalf, buffer: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 64 * 1024];
    match client.read(&mut chunk).await {
        Ok(read) if read > 0 => {
            buffer.extend_from_slice(chunk.get(..read)?);
            Some(())
        }
        _ => None,
    }
}

/// Reads one HTTP/1.1 request (head and `content-length` body); bytes after
/// it stay in `buffer`.
async fn read_request(client: &mut OwnedReadHalf, buffer: &mut Vec<u8>) -> Option<RawRequest> {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        fill(client, buffer).await?;
    };
    let head: Vec<u8> = buffer.drain(..head_end).collect();
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let header = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| value.trim().to_string())
    };
    let length: usize = header("content-length:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let target = header("x-amz-target:").unwrap_or_default();
    while buffer.len() < length {
        fill(client, buffer).await?;
    }
    let body: Vec<u8> = buffer.drain(..length).collect();
    Some(RawRequest { head, body, target })
}

/// A TCP proxy in front of an emulator that stops it in the middle of a
/// chosen request.
///
/// It forwards requests untouched until the `nth` request for `operation`;
/// of that one it forwards the headers and half the body, then stops the
/// emulator (cutting every connection) and stops listening, so retries find
/// nothing there. The emulator's database file (if any) is left as the
/// stop left it, to restart on with [`EmbeddedDynamo::start_on`].
#[derive(Debug)]
pub struct StopMidRequest {
    endpoint: String,
    state: Arc<ProxyState>,
}

#[derive(Debug)]
struct ProxyState {
    upstream: SocketAddr,
    server: Mutex<Option<EmbeddedDynamo>>,
    operation: String,
    nth: usize,
    seen: AtomicUsize,
    /// Set as soon as the chosen request arrives.
    triggered: AtomicBool,
    stopped: tokio::sync::watch::Sender<bool>,
}

impl StopMidRequest {
    /// Starts a proxy in front of `server` that stops it in the middle of
    /// the `nth` (from 1) request for `operation` (e.g. `Query`).
    pub async fn start(
        server: EmbeddedDynamo,
        operation: &str,
        nth: usize,
    ) -> std::io::Result<Self> {
        let (listener, endpoint) = listen().await?;
        let (stopped, mut stop_listening) = tokio::sync::watch::channel(false);
        let state = Arc::new(ProxyState {
            upstream: server.addr(),
            server: Mutex::new(Some(server)),
            operation: format!(".{}", operation.to_ascii_lowercase()),
            nth,
            seen: AtomicUsize::new(0),
            triggered: AtomicBool::new(false),
            stopped,
        });
        let proxy = StopMidRequest {
            endpoint,
            state: state.clone(),
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { return };
                        tokio::spawn(proxy_connection(client, state.clone()));
                    }
                    _ = stop_listening.wait_for(|stopped| *stopped) => return,
                }
            }
        });
        Ok(proxy)
    }

    /// The proxy's endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// True once the chosen request arrived (the stop follows it).
    pub fn has_stopped(&self) -> bool {
        self.state.triggered.load(Ordering::SeqCst)
    }
}

impl ProxyState {
    /// Stops the emulator (once), then the listener.
    async fn stop_server(&self) {
        let server = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(server) = server {
            server.shut_down().await;
        }
        let _ = self.stopped.send(true);
    }
}

async fn proxy_connection(client: TcpStream, state: Arc<ProxyState>) {
    let Ok(upstream) = TcpStream::connect(state.upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let responses = async move {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
    };
    let requests = async move {
        let mut buffer = Vec::new();
        while let Some(request) = read_request(&mut client_read, &mut buffer).await {
            let chosen = request.target.ends_with(&state.operation)
                && state.seen.fetch_add(1, Ordering::SeqCst) + 1 == state.nth;
            if upstream_write.write_all(&request.head).await.is_err() {
                return;
            }
            if chosen {
                state.triggered.store(true, Ordering::SeqCst);
                let half = request
                    .body
                    .get(..request.body.len() / 2)
                    .unwrap_or_default();
                let _ = upstream_write.write_all(half).await;
                let _ = upstream_write.flush().await;
                // In a task of its own: stopping the emulator ends this
                // connection, and with it this future.
                let state = state.clone();
                let _ = tokio::spawn(async move {
                    // Let the emulator start reading the body, then stop it.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    state.stop_server().await;
                })
                .await;
                return;
            }
            if upstream_write.write_all(&request.body).await.is_err() {
                return;
            }
        }
    };
    // Whichever side ends first ends the connection, as a dead server would.
    tokio::select! {
        () = responses => {}
        () = requests => {}
    }
}
