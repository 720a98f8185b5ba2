//! Runs the `streambus` binary on a free loopback port and a given data dir.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// How long any single wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A running server process; killed on drop.
pub struct Proc {
    pub child: Child,
    pub base: String,
    pub port: u16,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Proc {
    /// Starts `streambus serve` on `dir` and waits until `/readyz` answers.
    pub async fn spawn(dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_on(free_port(), dir, extra).await
    }

    /// As [`Proc::spawn`], on a given port (to restart a server in place).
    pub async fn spawn_on(port: u16, dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_with(port, dir, extra, &[]).await
    }

    /// As [`Proc::spawn_on`], with extra environment variables.
    pub async fn spawn_with(
        port: u16,
        dir: &Path,
        extra: &[&str],
        envs: &[(String, String)],
    ) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_streambus"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn streambus");
        let p = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
        };
        let client = reqwest::Client::new();
        let start = tokio::time::Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", p.base)).send().await
                && r.status().is_success()
            {
                return p;
            }
            assert!(start.elapsed() < DEADLINE, "server did not become ready");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("kill -9");
        let _ = self.child.wait().await;
    }

    /// SIGTERM.
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -TERM failed");
    }
}
