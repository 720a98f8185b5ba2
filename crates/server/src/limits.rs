//! Rate and connection limits per key and per client address (issue 5
//! point 5): a token bucket per publisher for events per second with a burst,
//! and a count of open WebSocket and SSE connections. A limit of 0 is off.
//!
//! A publisher is its tenant and subject (a token's `sub`, an API key's
//! name). Over a limit, REST answers `429` with `Retry-After`, a batch item
//! `429`, WebSocket an `ERROR` with code `rate_limited`. Only the flooding
//! key or address is slowed: every other publisher has its own bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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

/// Token buckets by name, for one rate and burst.
struct Buckets {
    rate: f64,
    burst: f64,
    map: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(rate)),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` tokens of `name`'s bucket, or says how many seconds until
    /// they would be there.
    fn take(&self, name: &str, n: f64) -> Result<(), u64> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = self.map.lock().expect("limits lock poisoned");
        if map.len() > 10_000 {
            map.retain(|_, b| now.duration_since(b.at).as_secs_f64() < IDLE_SECS);
        }
        let b = map.entry(name.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= n {
            b.tokens -= n;
            Ok(())
        } else {
            let wait = (n - b.tokens) / self.rate;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

/// Open connections by name, with a maximum.
struct Counts {
    max: usize,
    map: Mutex<HashMap<String, usize>>,
}

impl Counts {
    fn new(max: usize) -> Self {
        Self {
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn open(&self, name: &str) -> bool {
        if self.max == 0 {
            return true;
        }
        let mut map = self.map.lock().expect("limits lock poisoned");
        let n = map.entry(name.to_owned()).or_default();
        if *n >= self.max {
            return false;
        }
        *n += 1;
        true
    }

    fn close(&self, name: &str) {
        if self.max == 0 {
            return;
        }
        let mut map = self.map.lock().expect("limits lock poisoned");
        if let Some(n) = map.get_mut(name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(name);
            }
        }
    }
}

/// The node's limits.
pub struct Limiter {
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
            publish_key: Buckets::new(c.publish_rate_per_key, c.publish_burst_per_key),
            publish_ip: Buckets::new(c.publish_rate_per_ip, c.publish_burst_per_ip),
            conns_key: Counts::new(c.max_connections_per_key),
            conns_ip: Counts::new(c.max_connections_per_ip),
        }
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
        self.publish_key
            .take(&key_of(who), 1.0)
            .map_err(|s| limited(s, "key"))?;
        if let Some(ip) = ip_of(who) {
            self.publish_ip
                .take(&ip, 1.0)
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
        if !self.conns_key.open(&key) {
            return Err(refused("key", self.conns_key.max));
        }
        if let Some(ip) = &ip
            && !self.conns_ip.open(ip)
        {
            self.conns_key.close(&key);
            return Err(refused("address", self.conns_ip.max));
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
        let b = Buckets::new(10, 20);
        for _ in 0..20 {
            assert!(b.take("k", 1.0).is_ok());
        }
        assert_eq!(b.take("k", 1.0), Err(1));
        assert!(b.take("other", 1.0).is_ok(), "buckets are per name");
        assert!(Buckets::new(0, 0).take("k", 1e9).is_ok(), "0 is off");
    }

    #[test]
    fn connection_counts_are_released() {
        let c = Counts::new(2);
        assert!(c.open("k") && c.open("k"));
        assert!(!c.open("k"));
        c.close("k");
        assert!(c.open("k"));
    }
}
