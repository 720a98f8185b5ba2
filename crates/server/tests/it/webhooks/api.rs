//! The definitions' API: bad input is a problem naming the field and
//! stores nothing; the secret is never shown; replace and conflict.

use serde_json::json;

use super::*;

fn valid() -> Value {
    json!({"id": "orders", "url": "http://127.0.0.1:9/hook", "secret": SECRET})
}

fn with(key: &str, value: Value) -> Value {
    let mut v = valid();
    v[key] = value;
    v
}

fn without(key: &str) -> Value {
    let mut v = valid();
    v.as_object_mut().expect("object").remove(key);
    v
}

async fn listed(server: &TestServer) -> Vec<Value> {
    let r = server.get("/api/v1/webhooks").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"].as_array().expect("data").clone()
}

#[tokio::test]
async fn bad_definitions_are_422_naming_the_field_and_store_nothing() {
    let server = server().await;
    let cases = [
        (with("id", json!("Orders")), "id"),
        (with("id", json!("-orders")), "id"),
        (with("id", json!("a".repeat(65))), "id"),
        (without("id"), "id"),
        (with("url", json!("https://example.com/hook")), "url"),
        (with("url", json!("ftp://example.com/hook")), "url"),
        (with("url", json!("not a url")), "url"),
        (without("url"), "url"),
        (with("secret", json!("too-short")), "secret"),
        (without("secret"), "secret"),
        (with("secret", json!(1234567890123456_u64)), "secret"),
        (
            with("filter", json!({"classes": ["shouting"]})),
            "filter.classes",
        ),
        (with("filter", json!({"bogus": 1})), "filter.bogus"),
        (with("filter", json!([])), "filter"),
        (with("max_attempts", json!(0)), "max_attempts"),
        (with("max_attempts", json!(51)), "max_attempts"),
        (with("max_attempts", json!(2.5)), "max_attempts"),
        (with("colour", json!("blue")), "colour"),
    ];
    for (body, field) in cases {
        let r = server.post_json("/api/v1/webhooks", &body).await;
        assert_problem(&r, 422, Some(field));
        // PUT takes the id from the path.
        if field != "id" {
            let r = server.put_json("/api/v1/webhooks/orders", &body).await;
            assert_problem(&r, 422, Some(field));
        }
    }
    let https = server
        .post_json("/api/v1/webhooks", &with("url", json!("https://h/x")))
        .await;
    assert!(
        https.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("TLS")),
        "{}",
        https.text
    );
    let r = server.post_json("/api/v1/webhooks", &json!(["x"])).await;
    assert_problem(&r, 422, None);
    let r = server
        .post_raw("/api/v1/webhooks", Some("application/json"), "{not json")
        .await;
    assert_problem(&r, 400, None);
    let r = server
        .put_json("/api/v1/webhooks/orders", &with("id", json!("other")))
        .await;
    assert_problem(&r, 422, Some("id"));
    let r = server
        .put_json("/api/v1/webhooks/Bad", &without("id"))
        .await;
    assert_problem(&r, 422, Some("id"));
    assert_eq!(listed(&server).await, Vec::<Value>::new(), "nothing stored");
}

#[tokio::test]
async fn unknown_webhooks_and_deliveries_are_404_and_bad_queries_400() {
    let server = server().await;
    for path in [
        "/api/v1/webhooks/nope",
        "/api/v1/webhooks/Not%20An%20Id",
        "/api/v1/webhooks/nope/deliveries",
        "/api/v1/webhooks/nope/deliveries/dlv_0",
    ] {
        assert_problem(&server.get(path).await, 404, None);
    }
    assert_problem(&server.delete("/api/v1/webhooks/nope").await, 404, None);
    let r = server
        .post_json(
            "/api/v1/webhooks/nope/deliveries/dlv_0/redeliver",
            &json!({}),
        )
        .await;
    assert_problem(&r, 404, None);

    create(&server, valid()).await;
    for (query, field) in [
        ("state=lost", Some("state")),
        ("limit=0", Some("limit")),
        ("limit=1001", Some("limit")),
        // Named in the detail only (the query extractor's message).
        ("limit=many", None),
        ("colour=blue", Some("colour")),
    ] {
        let r = server
            .get(&format!("/api/v1/webhooks/orders/deliveries?{query}"))
            .await;
        assert_problem(&r, 400, field);
    }
    let r = server
        .post_json(
            "/api/v1/webhooks/orders/deliveries/dlv_0/redeliver",
            &json!({}),
        )
        .await;
    assert_problem(&r, 404, None);
}

#[tokio::test]
async fn a_delivery_of_another_webhook_is_not_found_under_this_one() {
    let server = server().await;
    let receiver = Receiver::start(200).await;
    create_hook(&server, "one", &receiver.url, json!({})).await;
    create_hook(&server, "two", &receiver.url, json!({})).await;
    publish(&server, "s", "t").await;
    let of_one = wait_deliveries(&server, "one", 1, "delivered").await;
    let id = of_one[0]["id"].as_str().expect("id");
    let r = server
        .post_json(
            &format!("/api/v1/webhooks/two/deliveries/{id}/redeliver"),
            &json!({}),
        )
        .await;
    assert_problem(&r, 404, None);
    assert_problem(
        &server
            .get(&format!("/api/v1/webhooks/two/deliveries/{id}"))
            .await,
        404,
        None,
    );
}

#[tokio::test]
async fn the_secret_is_never_shown_and_put_replaces() {
    let server = server().await;
    let created = create(
        &server,
        with("filter", json!({"streams": ["orders"], "tags": ["vip"]})),
    )
    .await;
    let one = server.get("/api/v1/webhooks/orders").await;
    assert_eq!(one.status, 200, "{}", one.text);
    let list = server.get("/api/v1/webhooks").await;
    for text in [&created.to_string(), &one.text, &list.text] {
        assert!(!text.contains(SECRET), "secret revealed: {text}");
    }
    assert_eq!(one.body, created);
    assert_eq!(one.body["secret_set"], true);
    assert!(one.body.get("secret").is_none(), "{}", one.text);
    assert_eq!(
        one.body["filter"],
        json!({"streams": ["orders"], "tags": ["vip"]})
    );
    assert_eq!(one.body["max_attempts"], 8, "the server's default");
    assert_eq!(list.body["data"], json!([created.clone()]));

    let r = server.post_json("/api/v1/webhooks", &valid()).await;
    assert_problem(&r, 409, None);

    // A client may send back what GET showed, with a new secret.
    let mut replaced = one.body.clone();
    replaced["url"] = json!("http://127.0.0.1:9/other");
    replaced["secret"] = json!("a-brand-new-secret-0123");
    replaced["max_attempts"] = json!(2);
    let r = server.put_json("/api/v1/webhooks/orders", &replaced).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("a-brand-new-secret"), "{}", r.text);
    assert_eq!(r.body["url"], "http://127.0.0.1:9/other");
    assert_eq!(r.body["max_attempts"], 2);
    assert_eq!(r.body["created_offset"], created["created_offset"]);
    assert_eq!(r.body["created_at"], created["created_at"]);

    let r = server
        .put_json("/api/v1/webhooks/fresh", &without("id"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("location"), "/api/v1/webhooks/fresh");
    assert_eq!(listed(&server).await.len(), 2);
}
