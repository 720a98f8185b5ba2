//! This node's side of the rules (issue 6 point 3; docs/RULES.md): the
//! definitions per tenant (from the configuration and the `rules` catalog),
//! each rule's [`Memory`], and the fold that derives events.
//!
//! The engine follows the log ([`crate::follow`]). Every node folds every
//! event and publishes what fires under the derived id, so the log stores
//! each derived event once however many nodes derive it. Replaying the
//! stored history at start rebuilds the memories without publishing; a
//! derived event that is missing afterwards (the node stopped between a
//! cause and its consequence) is published when the engine goes live —
//! only for causes after the rule's last stored output and within
//! [`RECOVERY_WINDOW_MS`], so history pruned by retention is not derived
//! again.
//!
//! Definitions change in the catalog, through the API of any node; the
//! fold takes them in between two records — at once on the node that made
//! the change ([`Rules::reload_now`]), within [`REFRESH_INTERVAL`] on the
//! others. A rule new to a node that has already folded past its `since`
//! first folds the stored records in between into its memory, so every node
//! remembers the same and derives the same. A disabled rule keeps folding
//! and derives nothing, for the same reason.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use streambus_core::event::{Event, Record};
use streambus_core::rule::{Derived, Memory, Rule, RuleDef, SOURCE_PREFIX};
use streambus_core::state::{StateChange, StateWrite};
use streambus_core::store::Catalog;
use streambus_core::time;
use streambus_core::validate::PublishContext;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::api::error::ApiError;
use crate::api::state::write::write_state;
use crate::follow::Fold;
use crate::publish::{prepare, publish_one};
use crate::state::AppState;

/// How often a cluster node reloads the rules catalog.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// Longest an API change waits for the fold to take it in.
const RELOAD_WAIT: Duration = Duration::from_secs(5);
/// How old a cause may be for its missing derived event to be published
/// when the engine goes live.
pub const RECOVERY_WINDOW_MS: i64 = 10 * 60 * 1000;

/// Where a rule is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `[[rules]]` in the configuration (read-only over the API).
    Config,
    /// The `rules` catalog.
    Api,
}

/// One rule on this node.
struct Entry {
    rule: Rule,
    origin: Origin,
    memory: Memory,
    /// Derived events of this rule seen in the log.
    fired: u64,
    last_fired_at: Option<String>,
    /// Offset of its newest derived event seen.
    last_output: u64,
    /// Events it looked at on this node since start.
    matched: u64,
    last_error: Option<String>,
}

impl Entry {
    fn new(rule: Rule, origin: Origin) -> Self {
        Self {
            rule,
            origin,
            memory: Memory::default(),
            fired: 0,
            last_fired_at: None,
            last_output: 0,
            matched: 0,
            last_error: None,
        }
    }

    /// Counts `record` when this rule derived it.
    fn note_output(&mut self, record: &Record) {
        if record.event.source.strip_prefix(SOURCE_PREFIX) == Some(self.rule.def.id.as_str()) {
            self.fired += 1;
            self.last_fired_at = Some(record.event.time.clone());
            self.last_output = record.offset();
        }
    }

    /// Whether the rule looks at `record` (then counted as matched).
    fn looks_at(&mut self, record: &Record) -> bool {
        let yes = self.rule.wants(&record.event, record.offset());
        if yes {
            self.matched += 1;
        }
        yes
    }

    fn view(&self) -> Value {
        let mut v = serde_json::to_value(&self.rule.def).unwrap_or_else(|_| json!({}));
        if let Value::Object(m) = &mut v {
            m.insert(
                "origin".into(),
                json!(match self.origin {
                    Origin::Config => "config",
                    Origin::Api => "api",
                }),
            );
            m.insert(
                "stats".into(),
                json!({"fired": self.fired, "last_fired_at": self.last_fired_at,
                       "matched": self.matched, "last_error": self.last_error}),
            );
        }
        v
    }
}

/// A derived event waiting to be published, with its cause's offset.
struct Pending {
    tenant: String,
    rule: String,
    cause_offset: u64,
    cause_ms: i64,
    derived: Derived,
    cause_id: String,
}

/// The rules of every tenant on this node. Shared behind an `Arc`.
pub struct Rules {
    tenants: Mutex<HashMap<String, BTreeMap<String, Entry>>>,
    /// Asks the fold to reload the catalog now.
    reload: Arc<Notify>,
    /// Bumped by every reload the fold makes.
    reloads: watch::Sender<u64>,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            tenants: Mutex::default(),
            reload: Arc::new(Notify::new()),
            reloads: watch::channel(0).0,
        }
    }
}

/// A rule installed afresh: its memory must be built from `since` on.
struct Fresh {
    tenant: String,
    id: String,
    since: u64,
}

impl Rules {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<String, Entry>>> {
        match self.tenants.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Every rule of `tenant` as the API shows it, by id.
    pub fn list(&self, tenant: &str) -> Vec<Value> {
        self.lock()
            .get(tenant)
            .map(|rules| rules.values().map(Entry::view).collect())
            .unwrap_or_default()
    }

    /// One rule as the API shows it.
    pub fn view(&self, tenant: &str, id: &str) -> Option<Value> {
        self.lock().get(tenant)?.get(id).map(Entry::view)
    }

    /// Where rule `id` of `tenant` is defined, if it exists.
    pub fn origin(&self, tenant: &str, id: &str) -> Option<Origin> {
        self.lock().get(tenant)?.get(id).map(|e| e.origin)
    }

    /// Whether rule `id` looks at `sample` and what it would derive from it
    /// now, changing nothing (its memory is copied); `None` for no rule.
    pub fn test(&self, tenant: &str, id: &str, sample: &Event) -> Option<(bool, Vec<Derived>)> {
        let tenants = self.lock();
        let entry = tenants.get(tenant)?.get(id)?;
        if !entry.rule.wants(sample, u64::MAX) {
            return Some((false, Vec::new()));
        }
        let mut memory = entry.memory.clone();
        let doc = serde_json::to_value(sample).unwrap_or(Value::Null);
        let firings = entry.rule.apply(&mut memory, &doc);
        let derived = firings
            .iter()
            .map(|f| entry.rule.derive(sample, &doc, f))
            .collect();
        Some((true, derived))
    }

    /// Installs `defs` of `origin` for `tenant`, replacing that origin's
    /// rules; a rule whose detector did not change keeps its memory and
    /// counts. Returns the rules whose memory starts empty.
    fn install(&self, tenant: &str, origin: Origin, defs: Vec<Rule>) -> Vec<Fresh> {
        let mut fresh = Vec::new();
        let mut tenants = self.lock();
        let rules = tenants.entry(tenant.to_owned()).or_default();
        // This origin's rules are replaced; the other origin's stay.
        let (mut old, others): (BTreeMap<String, Entry>, _) = std::mem::take(rules)
            .into_iter()
            .partition(|(_, e)| e.origin == origin);
        *rules = others;
        for rule in defs {
            let id = rule.def.id.clone();
            let entry = match old.remove(&id) {
                Some(mut e) if e.rule.def == rule.def => {
                    e.rule = rule;
                    e
                }
                Some(e) if same_detector(&e.rule.def, &rule.def) => Entry { rule, ..e },
                Some(e) => {
                    fresh.push((id.clone(), rule.def.since));
                    Entry {
                        fired: e.fired,
                        last_fired_at: e.last_fired_at,
                        last_output: e.last_output,
                        ..Entry::new(rule, origin)
                    }
                }
                None => {
                    fresh.push((id.clone(), rule.def.since));
                    Entry::new(rule, origin)
                }
            };
            rules.insert(id, entry);
        }
        fresh
            .into_iter()
            .map(|(id, since)| Fresh {
                tenant: tenant.to_owned(),
                id,
                since,
            })
            .collect()
    }

    /// Asks the fold to take in the catalog now and waits (a little) until
    /// it has.
    pub async fn reload_now(&self) {
        let mut seen = self.reloads.subscribe();
        seen.mark_unchanged();
        self.reload.notify_one();
        let _ = tokio::time::timeout(RELOAD_WAIT, seen.changed()).await;
    }

    /// The `since` of the oldest rule, if there is any.
    fn oldest_since(&self) -> Option<u64> {
        self.lock()
            .values()
            .flat_map(|rules| rules.values().map(|e| e.rule.def.since))
            .min()
    }

    /// Forgets the rules of tenants not in `tenants` (deleted ones).
    fn forget_others(&self, tenants: &[String]) {
        self.lock().retain(|t, _| tenants.contains(t));
    }

    /// Loads the configured rules and every tenant's catalog.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn load(&self, state: &AppState) -> Result<(), ApiError> {
        let demo = if state.config.server.demo {
            crate::demo::rules()
        } else {
            Vec::new()
        };
        let configured = state
            .config
            .rules
            .iter()
            .chain(&demo)
            .filter_map(|v| match Rule::from_json(v.clone()) {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!(error = %e, "configured rule ignored");
                    None
                }
            })
            .collect();
        // Before the replay, which builds every memory from the start.
        self.install(streambus_core::DEFAULT_TENANT, Origin::Config, configured);
        for tenant in state.tenants().await? {
            self.reload(state, &tenant).await?;
        }
        Ok(())
    }

    /// Reloads `tenant`'s catalog; returns the rules installed afresh.
    ///
    /// # Errors
    /// When the store cannot be read.
    async fn reload(&self, state: &AppState, tenant: &str) -> Result<Vec<Fresh>, ApiError> {
        let stored = state.store.list_entries(Catalog::Rules, tenant).await?;
        let rules = stored
            .into_iter()
            .filter_map(|v| match Rule::from_json(v) {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!(tenant, error = %e, "stored rule ignored");
                    None
                }
            })
            .collect();
        Ok(self.install(tenant, Origin::Api, rules))
    }

    /// Folds one record: counts it if a rule derived it, then runs every
    /// rule that wants it. Returns what fired.
    fn fold(&self, record: &Record) -> Vec<Pending> {
        let event = &record.event;
        if event.stream_id.starts_with('_') {
            return Vec::new();
        }
        let mut tenants = self.lock();
        let Some(rules) = tenants.get_mut(&record.tenant) else {
            return Vec::new();
        };
        if let Some(e) = event
            .source
            .strip_prefix(SOURCE_PREFIX)
            .and_then(|id| rules.get_mut(id))
        {
            e.note_output(record);
        }
        let mut doc: Option<Value> = None;
        let mut out = Vec::new();
        for entry in rules.values_mut() {
            if !entry.looks_at(record) {
                continue;
            }
            let doc = match &doc {
                Some(d) => d,
                None => doc.insert(serde_json::to_value(event).unwrap_or(Value::Null)),
            };
            let firings = entry.rule.apply(&mut entry.memory, doc);
            if !entry.rule.def.enabled {
                continue;
            }
            for firing in firings {
                out.push(Pending {
                    tenant: record.tenant.clone(),
                    rule: entry.rule.def.id.clone(),
                    cause_offset: record.offset(),
                    cause_ms: event.time_ms(),
                    derived: entry.rule.derive(event, doc, &firing),
                    cause_id: event.id.clone(),
                });
            }
        }
        out
    }

    /// Folds `records` into the memory of one rule only, deriving nothing
    /// (they were folded before the rule was known here).
    fn remember(&self, fresh: &Fresh, records: &[Arc<Record>]) {
        let mut tenants = self.lock();
        let Some(entry) = tenants
            .get_mut(&fresh.tenant)
            .and_then(|r| r.get_mut(&fresh.id))
        else {
            return;
        };
        for record in records {
            entry.note_output(record);
            if entry.looks_at(record)
                && let Ok(doc) = serde_json::to_value(&record.event)
            {
                entry.rule.apply(&mut entry.memory, &doc);
            }
        }
    }

    fn failed(&self, tenant: &str, rule: &str, error: String) {
        if let Some(e) = self.lock().get_mut(tenant).and_then(|r| r.get_mut(rule)) {
            e.last_error = Some(error);
        }
    }

    fn last_output(&self, tenant: &str, rule: &str) -> Option<(u64, u64)> {
        let tenants = self.lock();
        let e = tenants.get(tenant)?.get(rule)?;
        Some((e.last_output, e.rule.def.since))
    }

    /// Publishes one derived event and its state write.
    async fn publish(&self, state: &AppState, p: &Pending) {
        if let Err(e) = publish_derived(state, p).await {
            warn!(tenant = %p.tenant, rule = %p.rule, id = %p.derived.id, error = %e, "derived event not published");
            self.failed(&p.tenant, &p.rule, e.to_string());
        }
    }
}

/// True when two definitions detect the same thing the same way, so the
/// memory stays valid (only `enabled`, `description`, `emit` or `state`
/// differ).
fn same_detector(a: &RuleDef, b: &RuleDef) -> bool {
    a.detect == b.detect && a.when == b.when && a.since == b.since
}

async fn publish_derived(state: &AppState, p: &Pending) -> Result<(), ApiError> {
    let mut event = prepare(
        state,
        &p.tenant,
        p.derived.event.clone(),
        &PublishContext::default(),
    )?;
    event.event.derived_from = Some(p.cause_id.clone());
    event.supplied_id = true;
    let appended = publish_one(state, &p.tenant, event).await?;
    if let Some(w) = &p.derived.state
        && !appended.duplicate
    {
        crate::api::state::check_names(&w.stream, Some(&w.key))?;
        let write = StateWrite {
            max_value_bytes: state.limits.max_event_bytes,
            ..StateWrite::new(StateChange::Patch(w.patch.clone()))
        };
        write_state(state, &p.tenant, &w.stream, &w.key, &write).await?;
    }
    Ok(())
}

/// The fold [`crate::follow::run`] drives.
pub struct RulesFold {
    rules: Arc<Rules>,
    /// Derived during the replay, by id, until seen in the log.
    pending: HashMap<String, Pending>,
    /// The last offset folded.
    folded: u64,
    cluster: bool,
    next_refresh: Option<Instant>,
}

impl RulesFold {
    /// The fold of `rules`; in a cluster it reloads the catalog periodically.
    pub fn new(rules: Arc<Rules>, cluster: bool) -> Self {
        Self {
            rules,
            pending: HashMap::new(),
            folded: 0,
            cluster,
            next_refresh: cluster.then(|| Instant::now() + REFRESH_INTERVAL),
        }
    }

    /// Reloads every tenant's catalog and builds the memory of each rule
    /// new here from the stored records between its `since` and what this
    /// node has folded.
    async fn reload(&self, state: &AppState) -> Result<(), ApiError> {
        let tenants = state.tenants().await?;
        self.rules.forget_others(&tenants);
        for tenant in tenants {
            for fresh in self.rules.reload(state, &tenant).await? {
                if fresh.since >= self.folded {
                    continue;
                }
                let records = crate::follow::read_range(
                    state,
                    &fresh.tenant,
                    fresh.since,
                    self.folded,
                    |_| {},
                )
                .await?;
                debug!(tenant = %fresh.tenant, rule = %fresh.id, records = records.len(), "rule memory built from history");
                self.rules.remember(&fresh, &records);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Fold for RulesFold {
    fn name(&self) -> &'static str {
        "rules"
    }

    /// Nothing before the oldest rule's creation matters to any memory.
    fn replay_from(&self) -> u64 {
        self.rules.oldest_since().unwrap_or(u64::MAX)
    }

    async fn apply(&mut self, state: &AppState, records: &[Arc<Record>], replay: bool) {
        for record in records {
            self.folded = self.folded.max(record.offset());
            if replay {
                self.pending.remove(&record.event.id);
            }
            for p in self.rules.fold(record) {
                if replay {
                    self.pending.insert(p.derived.id.clone(), p);
                } else {
                    self.rules.publish(state, &p).await;
                }
            }
        }
    }

    async fn live(&mut self, state: &AppState, folded: u64) {
        self.folded = self.folded.max(folded);
        let cutoff = time::now_ms() - RECOVERY_WINDOW_MS;
        let mut missing: Vec<Pending> = std::mem::take(&mut self.pending)
            .into_values()
            .filter(|p| {
                p.cause_ms >= cutoff
                    && self
                        .rules
                        .last_output(&p.tenant, &p.rule)
                        .is_some_and(|(last, since)| p.cause_offset > last.max(since))
            })
            .collect();
        missing.sort_by_key(|p| p.cause_offset);
        debug!(missing = missing.len(), "rules live");
        for p in &missing {
            self.rules.publish(state, p).await;
        }
    }

    fn next_tick(&self) -> Option<Instant> {
        self.next_refresh
    }

    fn wake(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.rules.reload))
    }

    async fn tick(&mut self, state: &AppState) {
        if self.cluster {
            self.next_refresh = Some(Instant::now() + REFRESH_INTERVAL);
        }
        if let Err(e) = self.reload(state).await {
            warn!(error = %e, "cannot reload the rules");
        }
        self.rules.reloads.send_modify(|n| *n += 1);
    }
}
