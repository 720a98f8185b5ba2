//! Rate and connection limits per key and per client address (issue 5
//! point 5): a token bucket per publisher for events per second with a burst,
//! and a count of open WebSocket and SSE connections. A limit of 0 is off.
//!
//! A publisher is its tenant and subject (a token's `sub`, an API key's
//! name). A tenant's record may carry its own values for any of the
//! `[limits]` settings below (`{"publish_rate_per_key": 50, …}`); the
//! others come from the configuration. Over a limit, REST answers `429` with `Retry-After`, a batch item
//! `429`, WebSocket an `ERROR` with code `rate_limited`. Only the flooding
//! key or address is slowed: every other publisher has its own bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::api::error::ApiError;
use crate::auth::Identity;
use crate::config::LimitsConfig;

/// Buckets not touched for this long are forgotten.
const IDLE_SECS: f64 = 300.0;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by name.
#[derive(Default)]
struct Buckets {
    map: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    /// Takes `n` tokens of `name`'s bucket filling at `rate` a second up to
    /// `burst` (at least `rate`), or says how many seconds until they would
    /// be there. A rate of 0 is no limit.
    fn take(&self, name: &str, rate: u32, burst: u32, n: f64) -> Result<(), u64> {
        if rate == 0 {
            return Ok(());
        }
        let (rate, burst) = (f64::from(rate), f64::from(burst.max(rate)));
        let now = Instant::now();
        let mut map = self.map.lock().expect("limits lock poisoned");
        if map.len() > 10_000 {
            map.retain(|_, b| now.duration_since(b.at).as_secs_f64() < IDLE_SECS);
        }
        let b = map.entry(name.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= n {
            b.tokens -= n;
            Ok(())
        } else {
            let wait = (n - b.tokens) / rate;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

/// Open connections by name.
#[derive(Default)]
struct Counts {
    map: Mutex<HashMap<String, usize>>,
}

impl Counts {
    /// Counts one more for `name` unless it has `max` (0: no limit, but
    /// still counted so that a limit set later sees the truth).
    fn open(&self, name: &str, max: usize) -> bool {
        let mut map = self.map.lock().expect("limits lock poisoned");
        let n = map.entry(name.to_owned()).or_default();
        if max > 0 && *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn close(&self, name: &str) {
        let mut map = self.map.lock().expect("limits lock poisoned");
        if let Some(n) = map.get_mut(name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(name);
            }
        }
    }
}

/// The limits that apply to one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Events per second per key.
    pub publish_rate_per_key: u32,
    /// Burst per key.
    pub publish_burst_per_key: u32,
    /// Events per second per address.
    pub publish_rate_per_ip: u32,
    /// Burst per address.
    pub publish_burst_per_ip: u32,
    /// Open connections per key.
    pub max_connections_per_key: usize,
    /// Open connections per address.
    pub max_connections_per_ip: usize,
}

/// The node's limits.
pub struct Limiter {
    defaults: Limits,
    tenants: RwLock<HashMap<String, Limits>>,
    publish_key: Buckets,
    publish_ip: Buckets,
    conns_key: Counts,
    conns_ip: Counts,
}

fn key_of(who: &Identity) -> String {
    format!("{}/{}", who.principal.tenant, who.principal.subject)
}

fn ip_of(who: &Identity) -> Option<String> {
    who.address.map(|a: IpAddr| a.to_string())
}

impl Limiter {
    /// Limits as configured.
    pub fn new(c: &LimitsConfig) -> Self {
        Self {
            defaults: Limits {
                publish_rate_per_key: c.publish_rate_per_key,
                publish_burst_per_key: c.publish_burst_per_key,
                publish_rate_per_ip: c.publish_rate_per_ip,
                publish_burst_per_ip: c.publish_burst_per_ip,
                max_connections_per_key: c.max_connections_per_key,
                max_connections_per_ip: c.max_connections_per_ip,
            },
            tenants: RwLock::new(HashMap::new()),
            publish_key: Buckets::default(),
            publish_ip: Buckets::default(),
            conns_key: Counts::default(),
            conns_ip: Counts::default(),
        }
    }

    /// Sets a tenant's own limits from its record's `limits` (the settings
    /// it names replace the configured ones; `null` or `{}` keeps them all).
    ///
    /// # Errors
    /// A message when `limits` is not an object of known settings.
    pub fn set_tenant(&self, tenant: &str, limits: &serde_json::Value) -> Result<(), String> {
        let mut merged = serde_json::to_value(self.defaults_json()).unwrap_or_default();
        match limits {
            serde_json::Value::Null => {}
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if merged.get(k).is_none() {
                        return Err(format!("unknown limit `{k}`"));
                    }
                    merged[k] = v.clone();
                }
            }
            _ => return Err("limits must be an object".into()),
        }
        let parsed: Limits = serde_json::from_value(merged).map_err(|e| e.to_string())?;
        self.tenants
            .write()
            .expect("limits lock poisoned")
            .insert(tenant.to_owned(), parsed);
        Ok(())
    }

    fn defaults_json(&self) -> serde_json::Value {
        let d = &self.defaults;
        serde_json::json!({
            "publish_rate_per_key": d.publish_rate_per_key,
            "publish_burst_per_key": d.publish_burst_per_key,
            "publish_rate_per_ip": d.publish_rate_per_ip,
            "publish_burst_per_ip": d.publish_burst_per_ip,
            "max_connections_per_key": d.max_connections_per_key,
            "max_connections_per_ip": d.max_connections_per_ip,
        })
    }

    /// The limits of `tenant`.
    pub fn of(&self, tenant: &str) -> Limits {
        self.tenants
            .read()
            .expect("limits lock poisoned")
            .get(tenant)
            .copied()
            .unwrap_or(self.defaults)
    }

    /// Takes one event of `who`'s publish rate (key and address).
    ///
    /// # Errors
    /// `429` with the seconds to wait.
    pub fn publish(&self, who: &Identity) -> Result<(), ApiError> {
        let limited = |retry_after: u64, what: &str| ApiError::TooManyRequests {
            detail: format!("publish rate exceeded for this {what}; retry in {retry_after} s"),
            retry_after,
        };
        let l = self.of(&who.principal.tenant);
        // Names are built only when a limit is on: this runs once per event.
        if l.publish_rate_per_key > 0 {
            let (rate, burst) = (l.publish_rate_per_key, l.publish_burst_per_key);
            self.publish_key
                .take(&key_of(who), rate, burst, 1.0)
                .map_err(|s| limited(s, "key"))?;
        }
        if l.publish_rate_per_ip > 0
            && let Some(ip) = ip_of(who)
        {
            self.publish_ip
                .take(&ip, l.publish_rate_per_ip, l.publish_burst_per_ip, 1.0)
                .map_err(|s| limited(s, "address"))?;
        }
        Ok(())
    }

    /// Counts a WebSocket or SSE connection of `who` until the guard drops.
    ///
    /// # Errors
    /// `429` when the key or the address has as many open as allowed.
    pub fn connect(self: &Arc<Self>, who: &Identity) -> Result<ConnectionGuard, ApiError> {
        let key = key_of(who);
        let ip = ip_of(who);
        let refused = |what: &str, max: usize| ApiError::TooManyRequests {
            detail: format!("this {what} already has {max} open connections"),
            retry_after: 5,
        };
        let l = self.of(&who.principal.tenant);
        if !self.conns_key.open(&key, l.max_connections_per_key) {
            return Err(refused("key", l.max_connections_per_key));
        }
        if let Some(ip) = &ip
            && !self.conns_ip.open(ip, l.max_connections_per_ip)
        {
            self.conns_key.close(&key);
            return Err(refused("address", l.max_connections_per_ip));
        }
        Ok(ConnectionGuard {
            limiter: Arc::clone(self),
            key,
            ip,
        })
    }
}

/// Keeps a connection counted; see [`Limiter::connect`].
pub struct ConnectionGuard {
    limiter: Arc<Limiter>,
    key: String,
    ip: Option<String>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.limiter.conns_key.close(&self.key);
        if let Some(ip) = &self.ip {
            self.limiter.conns_ip.close(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let b = Buckets::default();
        for _ in 0..20 {
            assert!(b.take("k", 10, 20, 1.0).is_ok());
        }
        assert_eq!(b.take("k", 10, 20, 1.0), Err(1));
        assert!(b.take("other", 10, 20, 1.0).is_ok(), "buckets are per name");
        assert!(b.take("k", 0, 0, 1e9).is_ok(), "0 is off");
    }

    #[test]
    fn connection_counts_are_released() {
        let c = Counts::default();
        assert!(c.open("k", 2) && c.open("k", 2));
        assert!(!c.open("k", 2));
        c.close("k");
        assert!(c.open("k", 2));
    }
}
