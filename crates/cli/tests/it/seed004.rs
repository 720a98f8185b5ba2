//! Seed 004's client examples, run as written against the real binary: the
//! curl commands of "Monitoring and Debugging" and "Testing Event
//! Broadcasting", and the Python client (requests + sseclient-py).

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::proc::{DEADLINE, Proc};

/// Fails when the tests must not skip (CI), else prints why it skips.
fn skip(reason: &str) -> bool {
    assert!(
        std::env::var_os("STREAMBUS_REQUIRE_SERVICES").is_none(),
        "required: {reason}"
    );
    eprintln!("skipping: {reason}");
    true
}

/// Runs a seed curl command line with the host replaced; returns stdout.
async fn curl(server: &Proc, line: &str) -> String {
    let line = line.replace("localhost:8080", &format!("localhost:{}", server.port));
    let out = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .output()
        .await
        .expect("run curl");
    assert!(
        out.status.success() || line.contains("--max-time"),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_curl_examples_work_as_written() {
    if which("curl").is_none() && skip("curl is not installed") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let server = Proc::spawn(dir.path(), &["--demo"]).await;

    // "Example Usage (curl)", bounded so the test ends.
    let line = format!(
        "curl -N -H \"Accept: text/event-stream\" -H \"Cache-Control: no-cache\" --max-time 4 http://localhost:{}/api/v1/events/stream/default",
        server.port
    );
    let stream = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl -N");

    let streams: Value = serde_json::from_str(
        &curl(&server, "curl http://localhost:8080/api/v1/events/streams").await,
    )
    .expect("json");
    assert_eq!(streams["success"], true);
    for s in ["default", "system", "user-activity", "notifications"] {
        assert_eq!(
            streams["data"][s]["generator"]["running"], true,
            "{s}: {streams}"
        );
    }

    for (action, message) in [
        ("start", "started"),
        ("pause", "paused"),
        ("stop", "stopped and removed"),
    ] {
        let out = curl(
            &server,
            &format!("curl -X POST http://localhost:8080/api/v1/events/stream/custom/{action}"),
        )
        .await;
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["success"], true);
        assert_eq!(v["message"], format!("Stream 'custom' {message}"));
    }

    // Keep broadcasting until the streaming curl has surely connected.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        let out = curl(
            &server,
            r#"curl -X POST http://localhost:8080/api/v1/events/broadcast \
  -H "Content-Type: application/json" \
  -d '{
    "stream_id": "default",
    "type": "test_event",
    "message": "Test message",
    "data": {"test": true}
  }'"#,
        )
        .await;
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["message"], "Event broadcasted to stream: default");
        let all = curl(
            &server,
            r#"curl -X POST http://localhost:8080/api/v1/events/broadcast \
  -H "Content-Type: application/json" \
  -d '{
    "type": "global_test",
    "message": "Global test message"
  }'"#,
        )
        .await;
        assert_eq!(
            serde_json::from_str::<Value>(&all).expect("json")["success"],
            true
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let out = tokio::time::timeout(DEADLINE, stream.wait_with_output())
        .await
        .expect("curl ends")
        .expect("output");
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("data is JSON"))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "test_event" && e["message"] == "Test message"),
        "{text}"
    );
    assert!(events.iter().any(|e| e["type"] == "global_test"), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("event:")),
        "no event: lines"
    );

    // "Testing Both Services": the broadcast-demo prefix answers too.
    let v: Value = serde_json::from_str(
        &curl(
            &server,
            "curl http://localhost:8080/api/v1/broadcast-demo/streams",
        )
        .await,
    )
    .expect("json");
    assert_eq!(v["success"], true);
    let out = curl(
        &server,
        r#"curl -X POST http://localhost:8080/api/v1/broadcast-demo/broadcast \
  -H "Content-Type: application/json" \
  -d '{"type":"test","message":"Hello from Service H"}'"#,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["success"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_python_client_works_as_written() {
    let ok = Command::new("python3")
        .args(["-c", "import requests, sseclient"])
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !ok && skip("python3 with requests and sseclient-py is not installed") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let server = Proc::spawn(dir.path(), &[]).await;
    let script = include_str!("../fixtures/seed004_client.py").replace(
        "http://localhost:8080",
        &format!("http://localhost:{}", server.port),
    );
    let out = tokio::time::timeout(
        DEADLINE,
        Command::new("python3").arg("-c").arg(script).output(),
    )
    .await
    .expect("python ends in time")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Event: user_action - User logged in"),
        "{stdout}"
    );
    assert!(stdout.contains("RECEIVED evt_"), "{stdout}");
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(cmd))
        .find(|p| p.is_file())
}
