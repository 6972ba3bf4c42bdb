//! A catch-all SMTP server on a local port, in-process: it speaks enough SMTP for lettre and
//! keeps (or only counts) every message it accepts. It can refuse the first few with a
//! transient 451, or some recipients with a permanent 550, to try retries and bounces. Tests
//! read what arrived through it; `nurture bench dispatch` sends to it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<String>>>,
    accepted: Arc<AtomicUsize>,
    /// The count of accepted messages, for waiting on arrivals.
    arrived: Arc<tokio::sync::watch::Sender<usize>>,
    /// Whether accepted messages are kept (else only counted).
    keep: bool,
    transient_failures: Arc<AtomicUsize>,
    permanent_for: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    /// Listens on a free port and keeps what it accepts; the first `transient_failures`
    /// messages are refused with 451.
    pub async fn start(transient_failures: usize) -> Self {
        Self::listen(transient_failures, true).await.expect("a free local port")
    }

    /// Listens on a free port and only counts what it accepts (for benchmarks).
    pub async fn counting() -> std::io::Result<Self> {
        Self::listen(0, false).await
    }

    async fn listen(transient_failures: usize, keep: bool) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let sink = Self {
            port: listener.local_addr()?.port(),
            received: Arc::default(),
            accepted: Arc::default(),
            arrived: Arc::new(tokio::sync::watch::Sender::new(0)),
            keep,
            transient_failures: Arc::new(AtomicUsize::new(transient_failures)),
            permanent_for: Arc::default(),
        };
        let server = sink.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let _ = socket.set_nodelay(true);
                tokio::spawn(server.clone().session(socket));
            }
        });
        Ok(sink)
    }

    /// Mail to this address is refused with 550 (no such user).
    pub fn reject(&self, address: &str) {
        self.permanent_for
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(address.to_lowercase());
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// How many messages were accepted so far.
    pub fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` messages have arrived; after `within` without them, says how
    /// many did (a guard against a hang, not a measure of speed).
    pub async fn wait_for(&self, n: usize, within: std::time::Duration) -> Result<(), usize> {
        let mut arrived = self.arrived.subscribe();
        tokio::time::timeout(within, arrived.wait_for(|count| *count >= n))
            .await
            .map(|_| ())
            .map_err(|_| self.count())
    }

    /// The messages kept so far, as received (headers and body).
    pub fn messages(&self) -> Vec<String> {
        self.received.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn session(self, socket: tokio::net::TcpStream) {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        let _ = write.write_all(b"220 sink ESMTP\r\n").await;
        let mut refused = false;
        while let Ok(Some(line)) = lines.next_line().await {
            let upper = line.to_uppercase();
            let answer: &[u8] = if upper.starts_with("EHLO") {
                b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
            } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
                b"250 OK\r\n"
            } else if upper.starts_with("RSET") {
                refused = false;
                b"250 OK\r\n"
            } else if upper.starts_with("MAIL FROM") {
                let left = self.transient_failures.load(Ordering::SeqCst);
                if left > 0 {
                    self.transient_failures.store(left - 1, Ordering::SeqCst);
                    b"451 4.3.0 try again later\r\n"
                } else {
                    b"250 OK\r\n"
                }
            } else if upper.starts_with("RCPT TO") {
                let to = line[8..]
                    .trim()
                    .trim_start_matches(':')
                    .trim()
                    .trim_matches(['<', '>'])
                    .to_lowercase();
                if self
                    .permanent_for
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&to)
                {
                    refused = true;
                    b"550 5.1.1 no such user\r\n"
                } else {
                    b"250 OK\r\n"
                }
            } else if upper.starts_with("DATA") {
                if refused {
                    b"554 no valid recipients\r\n"
                } else {
                    let _ = write.write_all(b"354 go ahead\r\n").await;
                    let mut message = String::new();
                    let mut complete = false;
                    while let Ok(Some(data)) = lines.next_line().await {
                        if data == "." {
                            complete = true;
                            break;
                        }
                        if self.keep {
                            message.push_str(data.strip_prefix('.').unwrap_or(&data));
                            message.push_str("\r\n");
                        }
                    }
                    if !complete {
                        // The client went away mid-message: as a real server does, keep nothing.
                        return;
                    }
                    if self.keep {
                        self.received.lock().unwrap_or_else(|p| p.into_inner()).push(message);
                    }
                    let now = self.accepted.fetch_add(1, Ordering::SeqCst) + 1;
                    self.arrived.send_modify(|n| *n = (*n).max(now));
                    b"250 2.0.0 queued\r\n"
                }
            } else if upper.starts_with("QUIT") {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            } else {
                b"502 not implemented\r\n"
            };
            if write.write_all(answer).await.is_err() {
                return;
            }
        }
    }
}
