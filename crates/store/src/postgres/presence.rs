//! Cluster presence: each node replaces its own rows of connection counts;
//! readers sum the fresh rows of the other nodes. Rows of nodes that stopped
//! reporting age out (they are ignored when stale and deleted after a minute).

use sqlx::PgPool;
use streambus_core::StoreError;

use crate::sql_error;

/// Rows older than this are removed by the next report of any node.
const FORGET_AFTER_MS: i64 = 60_000;

/// Replaces `node`'s counts for `tenant`.
pub(super) async fn report(
    pool: &PgPool,
    node: &str,
    tenant: &str,
    counts: &[(String, u64)],
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(sql_error)?;
    sqlx::query("DELETE FROM presence WHERE (node = $1 AND tenant = $2) OR updated_ms < $3")
        .bind(node)
        .bind(tenant)
        .bind(now_ms - FORGET_AFTER_MS)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
    if !counts.is_empty() {
        let streams: Vec<&str> = counts.iter().map(|(s, _)| s.as_str()).collect();
        let clients: Vec<i64> = counts
            .iter()
            .map(|(_, n)| i64::try_from(*n).unwrap_or(i64::MAX))
            .collect();
        sqlx::query(
            "INSERT INTO presence (node, tenant, stream, clients, updated_ms)
             SELECT $1, $2, s, c, $5 FROM UNNEST($3::text[], $4::bigint[]) AS t(s, c)",
        )
        .bind(node)
        .bind(tenant)
        .bind(streams)
        .bind(clients)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(sql_error)?;
    }
    tx.commit().await.map_err(sql_error)
}

/// Counts per stream reported by other nodes since `fresh_since_ms`.
pub(super) async fn others(
    pool: &PgPool,
    tenant: &str,
    exclude_node: &str,
    fresh_since_ms: i64,
) -> Result<Vec<(String, u64)>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT stream, SUM(clients)::bigint FROM presence
         WHERE tenant = $1 AND node <> $2 AND updated_ms >= $3 GROUP BY stream",
    )
    .bind(tenant)
    .bind(exclude_node)
    .bind(fresh_since_ms)
    .fetch_all(pool)
    .await
    .map_err(sql_error)?;
    Ok(rows
        .into_iter()
        .map(|(s, n)| (s, u64::try_from(n).unwrap_or(0)))
        .collect())
}
