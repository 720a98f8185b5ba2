//! Conformance checks for the records of security and tenancy (SPEC §5,
//! issue 5): API keys found by hash, tenant records, the audit log — and
//! that none of them crosses tenants.

use serde_json::json;

use super::super::fresh_tenant;
use crate::audit::{AuditEntry, AuditQuery};
use crate::auth::Role;
use crate::keys::{ApiKey, key_hash, new_key_secret};
use crate::store::{EventStore, StoreError};

/// A key of `tenant` with id `<tenant>-<n>`, made at `created_ms`.
fn key(tenant: &str, n: &str, role: Role, created_ms: i64) -> ApiKey {
    ApiKey {
        id: format!("{tenant}-{n}"),
        tenant: tenant.to_owned(),
        name: format!("service {n}"),
        role,
        publish: vec!["match-*".into(), "scores".into()],
        subscribe: vec!["*".into()],
        created_ms,
        revoked_ms: None,
        last_used_ms: None,
    }
}

/// Stores `key` under a fresh secret; returns the hash it is found by.
async fn put_key(store: &dyn EventStore, key: &ApiKey) -> String {
    let hash = key_hash(&new_key_secret());
    store.put_api_key(key, &hash).await.expect("put_api_key");
    hash
}

fn ids(keys: &[ApiKey]) -> Vec<&str> {
    keys.iter().map(|k| k.id.as_str()).collect()
}

/// A key comes back by the hash of its secret exactly as put; an unknown
/// hash finds nothing; a second key with the same id or hash is a
/// `Conflict` that changes nothing; `touch` only moves `last_used_ms`
/// forward; the list is newest first (ties by id, descending) and shows
/// revoked keys too.
pub async fn api_keys_round_trip_by_hash(store: &dyn EventStore) {
    let t = fresh_tenant("keys");
    let first = key(&t, "a", Role::Producer, 1_000);
    let hash = put_key(store, &first).await;
    assert_eq!(
        store.api_key_by_hash(&hash).await.expect("by hash"),
        Some(first.clone()),
        "found by hash exactly as put"
    );
    assert!(
        store
            .api_key_by_hash(&key_hash("sbk_unknown"))
            .await
            .expect("by hash")
            .is_none()
    );

    let mut same_id = key(&t, "a", Role::Admin, 5_000);
    same_id.name = "impostor".into();
    match store
        .put_api_key(&same_id, &key_hash(&new_key_secret()))
        .await
    {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("want Conflict for a repeated key id, got {other:?}"),
    }
    let other_id = key(&t, "dup-hash", Role::Admin, 5_000);
    match store.put_api_key(&other_id, &hash).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("want Conflict for a repeated hash, got {other:?}"),
    }
    assert_eq!(
        store.api_key_by_hash(&hash).await.expect("by hash"),
        Some(first.clone()),
        "a refused put changes nothing"
    );

    store.touch_api_key(&first.id, 7_000).await.expect("touch");
    store.touch_api_key(&first.id, 6_000).await.expect("touch");
    store
        .touch_api_key("no-such-key", 7_000)
        .await
        .expect("touching an unknown id is no error");
    let got = store.api_key_by_hash(&hash).await.expect("by hash");
    assert_eq!(
        got.and_then(|k| k.last_used_ms),
        Some(7_000),
        "last_used_ms only moves forward"
    );

    let mut consumer = key(&t, "c", Role::Consumer, 3_000);
    consumer.publish = Vec::new();
    consumer.subscribe = vec!["match-1".into()];
    put_key(store, &consumer).await;
    let tie_b = key(&t, "tie-b", Role::Overlay, 2_000);
    let tie_a = key(&t, "tie-a", Role::Overlay, 2_000);
    put_key(store, &tie_a).await;
    put_key(store, &tie_b).await;
    assert!(
        store
            .revoke_api_key(&t, &tie_a.id, 8_000)
            .await
            .expect("revoke")
    );

    let listed = store.list_api_keys(&t).await.expect("list_api_keys");
    let want_ids = [
        consumer.id.as_str(),
        tie_b.id.as_str(),
        tie_a.id.as_str(),
        first.id.as_str(),
    ];
    assert_eq!(
        ids(&listed),
        want_ids,
        "newest first, ties by id descending"
    );
    assert_eq!(listed[0], consumer, "the list holds the stored key");
    assert_eq!(listed[2].revoked_ms, Some(8_000), "revoked keys are listed");
}

/// Revoking is per tenant: another tenant's key id answers false and stays
/// usable; a revoked key is still found by hash, marked; revoking it again
/// answers false and keeps the first time.
pub async fn api_key_revoke_is_scoped_by_tenant(store: &dyn EventStore) {
    let (t, other) = (fresh_tenant("revoke"), fresh_tenant("revoke-o"));
    let k = key(&t, "k", Role::Producer, 1_000);
    let hash = put_key(store, &k).await;
    assert!(
        !store
            .revoke_api_key(&other, &k.id, 2_000)
            .await
            .expect("revoke"),
        "another tenant cannot revoke the key"
    );
    assert!(
        !store
            .revoke_api_key(&t, "no-such-key", 2_000)
            .await
            .expect("revoke"),
        "an unknown id is not revoked"
    );
    let got = store.api_key_by_hash(&hash).await.expect("by hash");
    assert_eq!(got.and_then(|k| k.revoked_ms), None, "still usable");

    assert!(
        store
            .revoke_api_key(&t, &k.id, 3_000)
            .await
            .expect("revoke")
    );
    assert!(
        !store
            .revoke_api_key(&t, &k.id, 4_000)
            .await
            .expect("revoke"),
        "revoked once"
    );
    let got = store
        .api_key_by_hash(&hash)
        .await
        .expect("by hash")
        .expect("a revoked key is still found");
    assert!(got.is_revoked());
    assert_eq!(got.revoked_ms, Some(3_000), "the first revocation stays");
    assert_eq!(
        Some(got),
        store.list_api_keys(&t).await.expect("list").pop(),
        "list and lookup agree"
    );
}

/// Tenant records: put says whether it was new and replaces the display name
/// and limits but not `created_ms`; get and list return what was put (list by
/// name); delete says whether there was one; an invalid name is a `Conflict`
/// and stores nothing.
pub async fn tenants_are_created_replaced_and_deleted(store: &dyn EventStore) {
    let b = fresh_tenant("tenant-b");
    let a = fresh_tenant("tenant-a");
    let limits = json!({"publish_per_second": 50, "max_payload": 65536,
        "streams": ["x", "y"], "nested": {"on": true}});
    assert!(
        store
            .put_tenant(&b, "Team B", &json!({}), 1_000)
            .await
            .expect("put_tenant"),
        "first put is new"
    );
    assert!(
        store
            .put_tenant(&a, "Team A", &limits, 2_000)
            .await
            .expect("put_tenant")
    );
    assert_eq!(
        store.get_tenant(&a).await.expect("get_tenant"),
        Some(crate::keys::Tenant {
            name: a.clone(),
            display_name: "Team A".into(),
            created_ms: 2_000,
            limits: limits.clone(),
        })
    );
    let new_limits = json!({"publish_per_second": 5});
    assert!(
        !store
            .put_tenant(&b, "Team B renamed", &new_limits, 9_000)
            .await
            .expect("put_tenant"),
        "a second put replaces"
    );
    let got = store
        .get_tenant(&b)
        .await
        .expect("get_tenant")
        .expect("stored");
    assert_eq!(got.display_name, "Team B renamed");
    assert_eq!(got.limits, new_limits);
    assert_eq!(got.created_ms, 1_000, "created_ms is kept");

    let listed: Vec<String> = store
        .list_tenants()
        .await
        .expect("list_tenants")
        .into_iter()
        .map(|t| t.name)
        .filter(|n| *n == a || *n == b)
        .collect();
    assert_eq!(listed, [a.clone(), b.clone()], "by name");

    for bad in ["", "Bad Name", "-x"] {
        match store.put_tenant(bad, "x", &json!({}), 1).await {
            Err(StoreError::Conflict(_)) => {}
            other => panic!("want Conflict for tenant name {bad:?}, got {other:?}"),
        }
    }
    assert!(
        store
            .get_tenant("Bad Name")
            .await
            .expect("get_tenant")
            .is_none()
    );

    assert!(store.delete_tenant(&b).await.expect("delete_tenant"));
    assert!(
        !store.delete_tenant(&b).await.expect("delete_tenant"),
        "deleted once"
    );
    assert!(store.get_tenant(&b).await.expect("get_tenant").is_none());
    assert!(store.get_tenant(&a).await.expect("get_tenant").is_some());
    assert!(store.delete_tenant(&a).await.expect("delete_tenant"));
}

/// An audit entry of `tenant`.
fn entry(tenant: &str, at_ms: i64, actor: &str, action: &str, outcome: u16) -> AuditEntry {
    AuditEntry {
        seq: 0,
        tenant: tenant.to_owned(),
        at_ms,
        actor: actor.to_owned(),
        role: Some(Role::Admin),
        action: action.to_owned(),
        target: format!("target-{at_ms}"),
        address: Some("192.0.2.7".into()),
        outcome,
        detail: json!({"at": at_ms}),
    }
}

/// Every page of `query` (whose limit must be set), following the cursor
/// until a page says there is no next one.
async fn audit_pages(
    store: &dyn EventStore,
    tenant: &str,
    mut query: AuditQuery,
) -> Vec<Vec<AuditEntry>> {
    let mut pages = Vec::new();
    loop {
        let (page, next) = store.query_audit(tenant, &query).await.expect("query");
        if page.len() < query.limit {
            assert_eq!(next, None, "a short page ends the walk");
        }
        pages.push(page);
        match next {
            Some(c) => query.cursor = Some(c),
            None => return pages,
        }
        assert!(pages.len() < 100, "the cursor does not advance");
    }
}

fn at(entries: &[AuditEntry]) -> Vec<i64> {
    entries.iter().map(|e| e.at_ms).collect()
}

/// Entries come back as appended with increasing `seq`, newest first;
/// actor, action and time (since inclusive, until exclusive) filter; the
/// cursor pages through every entry once.
pub async fn audit_log_filters_and_pages_newest_first(store: &dyn EventStore) {
    let t = fresh_tenant("audit");
    let mut anonymous = entry(&t, 1_000, "anonymous", "key.create", 401);
    anonymous.role = None;
    anonymous.address = None;
    anonymous.detail = serde_json::Value::Null;
    let appended = [
        anonymous,
        entry(&t, 2_000, "ana", "key.create", 201),
        entry(&t, 3_000, "bo", "tenant.put", 200),
        entry(&t, 4_000, "ana", "key.revoke", 204),
        entry(&t, 5_000, "ana", "key.create", 403),
        entry(&t, 6_000, "bo", "key.create", 201),
        entry(&t, 7_000, "ana", "stream.pause", 200),
    ];
    for e in &appended {
        store.append_audit(e).await.expect("append_audit");
    }

    let all = AuditQuery {
        limit: 100,
        ..Default::default()
    };
    let (got, next) = store.query_audit(&t, &all).await.expect("query_audit");
    assert_eq!(next, None);
    assert_eq!(at(&got), [7_000, 6_000, 5_000, 4_000, 3_000, 2_000, 1_000]);
    assert!(
        got.windows(2).all(|w| w[0].seq > w[1].seq),
        "newest first by seq: {:?}",
        got.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    for (stored, put) in got.iter().rev().zip(&appended) {
        assert!(stored.seq > 0, "the store assigns seq");
        let mut put = put.clone();
        put.seq = stored.seq;
        assert_eq!(*stored, put, "stored as appended");
    }

    let query = |f: &dyn Fn(&mut AuditQuery)| {
        let mut q = all.clone();
        f(&mut q);
        q
    };
    let cases: [(AuditQuery, Vec<i64>); 5] = [
        (
            query(&|q| q.actor = Some("ana".into())),
            vec![7_000, 5_000, 4_000, 2_000],
        ),
        (
            query(&|q| q.action = Some("key.create".into())),
            vec![6_000, 5_000, 2_000, 1_000],
        ),
        (
            query(&|q| {
                q.actor = Some("ana".into());
                q.action = Some("key.create".into());
            }),
            vec![5_000, 2_000],
        ),
        (
            query(&|q| {
                q.since_ms = Some(3_000);
                q.until_ms = Some(6_000);
            }),
            vec![5_000, 4_000, 3_000],
        ),
        (query(&|q| q.actor = Some("nobody".into())), vec![]),
    ];
    for (q, want) in cases {
        let (got, _) = store.query_audit(&t, &q).await.expect("query_audit");
        assert_eq!(at(&got), want, "{q:?}");
    }

    for limit in [1, 2, 3, 7, 8] {
        let pages = audit_pages(
            store,
            &t,
            AuditQuery {
                limit,
                ..Default::default()
            },
        )
        .await;
        let walked: Vec<i64> = pages.iter().flat_map(|p| at(p)).collect();
        assert_eq!(
            walked,
            [7_000, 6_000, 5_000, 4_000, 3_000, 2_000, 1_000],
            "limit {limit}: every entry once, newest first"
        );
        assert!(pages.iter().all(|p| p.len() <= limit));
    }
    let pages = audit_pages(
        store,
        &t,
        query(&|q| {
            q.actor = Some("ana".into());
            q.limit = 3;
        }),
    )
    .await;
    let walked: Vec<Vec<i64>> = pages.iter().map(|p| at(p)).collect();
    assert_eq!(
        walked,
        [vec![7_000, 5_000, 4_000], vec![2_000]],
        "filters hold across pages"
    );
}

/// Nothing crosses tenants: one tenant's keys are not listed for another,
/// and its audit entries are not read by another — whatever the filters.
pub async fn security_rows_never_cross_tenants(store: &dyn EventStore) {
    let (a, b) = (fresh_tenant("sec-a"), fresh_tenant("sec-b"));
    let ka = key(&a, "k", Role::Admin, 1_000);
    let kb = key(&b, "k", Role::Admin, 1_000);
    let ha = put_key(store, &ka).await;
    let hb = put_key(store, &kb).await;
    assert_eq!(ids(&store.list_api_keys(&a).await.expect("list")), [&ka.id]);
    assert_eq!(ids(&store.list_api_keys(&b).await.expect("list")), [&kb.id]);
    assert!(
        store
            .list_api_keys(&fresh_tenant("sec-none"))
            .await
            .expect("list")
            .is_empty()
    );
    let found = store.api_key_by_hash(&hb).await.expect("by hash");
    assert_eq!(
        found.map(|k| k.tenant),
        Some(b.clone()),
        "a hash finds its own tenant's key"
    );
    assert!(
        !store
            .revoke_api_key(&b, &ka.id, 2_000)
            .await
            .expect("revoke")
    );
    let found = store.api_key_by_hash(&ha).await.expect("by hash");
    assert_eq!(found.and_then(|k| k.revoked_ms), None);

    for (t, actor) in [(&a, "alice"), (&b, "bob"), (&a, "alice"), (&b, "bob")] {
        let e = entry(t, 1_000, actor, "key.create", 201);
        store.append_audit(&e).await.expect("append_audit");
    }
    let everything = AuditQuery {
        limit: 100,
        ..Default::default()
    };
    for (t, actor) in [(&a, "alice"), (&b, "bob")] {
        let (got, _) = store.query_audit(t, &everything).await.expect("query");
        assert_eq!(got.len(), 2, "only its own entries");
        assert!(got.iter().all(|e| e.tenant == *t && e.actor == actor));
    }
    let bobs_in_a = AuditQuery {
        actor: Some("bob".into()),
        ..everything.clone()
    };
    let (got, next) = store.query_audit(&a, &bobs_in_a).await.expect("query");
    assert!(got.is_empty() && next.is_none());
    // A cursor from another tenant's page reads nothing of that tenant.
    let (b_page, _) = store.query_audit(&b, &everything).await.expect("query");
    let from_b = AuditQuery {
        cursor: b_page.first().map(|e| e.seq + 1),
        ..everything
    };
    let (got, _) = store.query_audit(&a, &from_b).await.expect("query");
    assert!(got.iter().all(|e| e.tenant == a), "{got:?}");
    let (got, _) = store
        .query_audit(&fresh_tenant("sec-none"), &from_b)
        .await
        .expect("query");
    assert!(got.is_empty());
}
