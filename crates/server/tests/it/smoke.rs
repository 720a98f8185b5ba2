use serde_json::json;

use crate::util::*;

#[tokio::test]
async fn publish_then_sse_and_ws_deliver() {
    let server = TestServer::start().await;
    let mut sse = SseClient::connect(&server.url("/api/v1/events/stream/default"), None).await;
    assert_eq!(sse.status, 200);
    let mut ws = WsClient::connect(&server).await;
    ws.subscribe(json!({"streams": ["default"]})).await;
    let stored = server
        .publish(json!({"type": "user_action", "message": "hi", "data": {"a": 1}}))
        .await;
    let m = sse.next().await;
    assert_eq!(m.event, None);
    assert_eq!(m.json()["id"], stored["id"]);
    assert_eq!(m.last_event_id, stored["offset"].to_string());
    let e = ws.events(1).await;
    assert_eq!(e[0]["id"], stored["id"]);
}
