//! A TCP proxy a test can cut and restore, to take an engine (PostgreSQL,
//! NATS) away from the nodes without touching the engine itself.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards `127.0.0.1:port` to a target while up.
pub struct Proxy {
    pub port: u16,
    target: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts forwarding to `target` (host:port).
    pub async fn start(target: &str) -> Self {
        let target = tokio::net::lookup_host(target)
            .await
            .expect("resolve")
            .next()
            .expect("address");
        let port = crate::proc::free_port();
        let mut p = Self {
            port,
            target,
            tasks: Arc::default(),
            acceptor: None,
        };
        p.restore().await;
        p
    }

    /// Accepts and forwards again, on the same port.
    pub async fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("proxy bind");
        let (target, tasks) = (self.target, Arc::clone(&self.tasks));
        self.acceptor = Some(tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                tasks.lock().expect("lock").push(pipe);
            }
        }));
    }

    /// Refuses new connections and drops every open one.
    pub fn cut(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }

    /// `host:port` of the proxy.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
