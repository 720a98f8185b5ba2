//! Conformance checks for the on-air catalog: event types, templates and
//! overlays' stored subscriptions (per tenant, create-or-replace, by name).

use serde_json::json;

use super::super::fresh_tenant;
use crate::event_type::EventTypeDef;
use crate::store::EventStore;
use crate::template::Template;

fn type_def(v: serde_json::Value) -> EventTypeDef {
    EventTypeDef::from_json(v).expect("test event type must be valid")
}

fn template(v: serde_json::Value) -> Template {
    Template::from_json(v).expect("test template must be valid")
}

/// Event types: put creates then replaces (saying which), get and list
/// return exactly what was put (list by name), delete says whether there
/// was one, and nothing crosses tenants.
pub async fn event_types_are_stored_per_tenant(store: &dyn EventStore) {
    let (t, other) = (fresh_tenant("types"), fresh_tenant("types-o"));
    let score = type_def(json!({"name": "high_score", "description": "a high score",
        "schema": {"type": "object", "properties": {"score": {"type": "integer", "maximum": 100}},
                   "required": ["score"]},
        "class": "animated", "priority": "high", "duration_ms": 3000,
        "cancelable": false, "replayable": true}));
    let alert = type_def(json!({"name": "alert:v1", "class": "alert"}));
    assert!(
        store.put_event_type(&t, &score).await.expect("put"),
        "first put creates"
    );
    assert!(store.put_event_type(&t, &alert).await.expect("put"));
    let got = store.get_event_type(&t, "high_score").await.expect("get");
    assert_eq!(got.as_ref(), Some(&score), "get returns what was put");
    let names: Vec<String> = store
        .list_event_types(&t)
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["alert:v1", "high_score"], "listed by name");

    let replaced = type_def(json!({"name": "high_score", "class": "data"}));
    assert!(
        !store.put_event_type(&t, &replaced).await.expect("put"),
        "a second put replaces"
    );
    assert_eq!(
        store.get_event_type(&t, "high_score").await.expect("get"),
        Some(replaced),
        "replaced whole, not merged"
    );

    assert!(
        store
            .get_event_type(&other, "high_score")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .list_event_types(&other)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        !store
            .delete_event_type(&other, "high_score")
            .await
            .expect("delete")
    );

    assert!(
        store
            .delete_event_type(&t, "high_score")
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_event_type(&t, "high_score")
            .await
            .expect("delete")
    );
    assert!(
        store
            .get_event_type(&t, "high_score")
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(store.list_event_types(&t).await.expect("list"), [alert]);
}

/// Templates: the same create-or-replace, get, list and delete contract.
pub async fn templates_are_stored_per_tenant(store: &dyn EventStore) {
    let (t, other) = (fresh_tenant("tpl"), fresh_tenant("tpl-o"));
    let goal = template(json!({"name": "goal", "description": "a goal",
        "event": {"type": "goal", "class": "animated", "message": "{{player}} scores",
                  "data": {"player": "{{player}}", "minute": "{{minute}}", "nested": [1, {"a": null}]}},
        "params": {"player": {"required": true}, "minute": {"default": 90}}}));
    let card = template(json!({"name": "card", "event": {"type": "card"}}));
    assert!(store.put_template(&t, &goal).await.expect("put"));
    assert!(store.put_template(&t, &card).await.expect("put"));
    assert_eq!(
        store.get_template(&t, "goal").await.expect("get"),
        Some(goal.clone())
    );
    let names: Vec<String> = store
        .list_templates(&t)
        .await
        .expect("list")
        .into_iter()
        .map(|x| x.name)
        .collect();
    assert_eq!(names, ["card", "goal"]);
    let changed = template(json!({"name": "goal", "event": {"type": "goal:v2"}}));
    assert!(!store.put_template(&t, &changed).await.expect("put"));
    assert_eq!(
        store.get_template(&t, "goal").await.expect("get"),
        Some(changed)
    );
    assert!(
        store
            .get_template(&other, "goal")
            .await
            .expect("get")
            .is_none()
    );
    assert!(store.list_templates(&other).await.expect("list").is_empty());
    assert!(store.delete_template(&t, "goal").await.expect("delete"));
    assert!(!store.delete_template(&t, "goal").await.expect("delete"));
    assert_eq!(store.list_templates(&t).await.expect("list"), [card]);
}

/// Overlay subscriptions: put creates then replaces, get returns the JSON
/// as put, delete says whether there was one, per tenant.
pub async fn subscriptions_are_stored_per_overlay(store: &dyn EventStore) {
    let (t, other) = (fresh_tenant("subs"), fresh_tenant("subs-o"));
    let main = json!({"streams": ["scores", "match-*"], "eventTypes": ["high_*"],
        "classes": ["animated"], "minPriority": "high",
        "filter": {"data.team": ["a", 7]}});
    assert!(
        store
            .put_subscription(&t, "main", &main)
            .await
            .expect("put")
    );
    assert!(
        store
            .put_subscription(&t, "side", &json!({}))
            .await
            .expect("put")
    );
    assert_eq!(
        store.get_subscription(&t, "main").await.expect("get"),
        Some(main)
    );
    let narrower = json!({"classes": ["alert"]});
    assert!(
        !store
            .put_subscription(&t, "main", &narrower)
            .await
            .expect("put")
    );
    assert_eq!(
        store.get_subscription(&t, "main").await.expect("get"),
        Some(narrower)
    );
    assert_eq!(
        store.get_subscription(&t, "side").await.expect("get"),
        Some(json!({}))
    );
    assert!(
        store
            .get_subscription(&other, "main")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        !store
            .delete_subscription(&other, "main")
            .await
            .expect("delete")
    );
    assert!(store.delete_subscription(&t, "main").await.expect("delete"));
    assert!(
        store
            .get_subscription(&t, "main")
            .await
            .expect("get")
            .is_none()
    );
    assert!(!store.delete_subscription(&t, "main").await.expect("delete"));
}

/// The automation catalogs: each keeps its own entries per tenant, put
/// creates then replaces, list is by name, delete says whether there was one.
pub async fn automation_catalogs_are_separate_per_tenant(store: &dyn EventStore) {
    use crate::store::Catalog;
    let (t, other) = (fresh_tenant("auto"), fresh_tenant("auto-o"));
    for catalog in [Catalog::Rules, Catalog::Webhooks, Catalog::Pollers] {
        let b = json!({"name": "b", "what": catalog.what(), "n": 1});
        let a = json!({"name": "a", "nested": {"x": [1, 2]}});
        assert!(store.put_entry(catalog, &t, "b", &b).await.expect("put"));
        assert!(store.put_entry(catalog, &t, "a", &a).await.expect("put"));
        let b2 = json!({"name": "b", "n": 2});
        assert!(
            !store.put_entry(catalog, &t, "b", &b2).await.expect("put"),
            "second put replaces"
        );
        assert_eq!(
            store.get_entry(catalog, &t, "b").await.expect("get"),
            Some(b2.clone())
        );
        assert_eq!(
            store.list_entries(catalog, &t).await.expect("list"),
            vec![a.clone(), b2.clone()],
            "listed by name"
        );
        assert!(
            store
                .list_entries(catalog, &other)
                .await
                .expect("list")
                .is_empty()
        );
        assert_eq!(
            store.get_entry(catalog, &other, "b").await.expect("get"),
            None
        );
        assert!(
            !store
                .delete_entry(catalog, &other, "b")
                .await
                .expect("delete")
        );
        assert!(store.delete_entry(catalog, &t, "b").await.expect("delete"));
        assert!(!store.delete_entry(catalog, &t, "b").await.expect("delete"));
        assert_eq!(
            store.list_entries(catalog, &t).await.expect("list"),
            vec![a]
        );
    }
    // Catalogs do not share entries: a rule named `a` is not a webhook.
    store
        .delete_entry(Catalog::Rules, &t, "a")
        .await
        .expect("delete");
    assert!(
        store
            .get_entry(Catalog::Webhooks, &t, "a")
            .await
            .expect("get")
            .is_some()
    );
}
