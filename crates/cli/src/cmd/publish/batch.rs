//! Batching and sending `publish` input: [`Batcher`] groups serialised events
//! into request bodies bounded by count and size, [`BatchSender`] posts them and
//! reports each event the server stored, repeated or refused ([`Totals`]).

use anyhow::{Context, Result, bail};
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use serde_json::Value;

use crate::cmd::client::{Problem, array_body, problem_error};

/// Groups serialised events into request bodies bounded by count and size.
pub(super) struct Batcher {
    max_events: usize,
    max_bytes: usize,
    items: Vec<String>,
    /// Size of the body `[a,b,...]` the current items make.
    bytes: usize,
}

impl Batcher {
    pub(super) fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            max_events: max_events.max(1),
            max_bytes,
            items: Vec::new(),
            bytes: 2,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds an event; returns the batch to send first when the event does not fit
    /// (an event larger than a body on its own is still sent, alone, and the
    /// server's answer says why it is refused).
    pub(super) fn push(&mut self, item: String) -> Option<Vec<String>> {
        let extra = item.len() + usize::from(!self.items.is_empty());
        let full = !self.items.is_empty() && self.bytes + extra > self.max_bytes;
        let out = if full { Some(self.take()) } else { None };
        self.bytes += item.len() + usize::from(!self.items.is_empty());
        self.items.push(item);
        if out.is_none() && self.items.len() >= self.max_events {
            return Some(self.take());
        }
        out
    }

    pub(super) fn take(&mut self) -> Vec<String> {
        self.bytes = 2;
        std::mem::take(&mut self.items)
    }
}

#[derive(Debug, Default)]
pub(super) struct Totals {
    pub(super) batches: u64,
    pub(super) events: u64,
    pub(super) stored: u64,
    pub(super) duplicates: u64,
    pub(super) rejected: u64,
}

pub(super) struct BatchSender<'a> {
    pub(super) client: &'a reqwest::Client,
    pub(super) url: &'a str,
    pub(super) print_events: bool,
    pub(super) totals: Totals,
}

impl BatchSender<'_> {
    pub(super) async fn send(&mut self, items: Vec<String>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let first_item = self.totals.events + 1;
        let resp = self
            .client
            .post(self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(array_body(&items))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.url))?;
        if !resp.status().is_success() {
            let what = format!("the server refused the batch of events {first_item}..");
            return Err(problem_error(resp, &what).await);
        }
        let answer: BatchAnswer = resp
            .json()
            .await
            .context("the server's batch answer is not valid")?;
        if answer.results.len() != items.len() {
            bail!(
                "sent {} events but the server answered for {}",
                items.len(),
                answer.results.len()
            );
        }
        self.totals.batches += 1;
        self.totals.events += items.len() as u64;
        let (mut stored, mut duplicates, mut rejected) = (0, 0, 0);
        let (mut low, mut high) = (u64::MAX, 0);
        for (i, item) in answer.results.into_iter().enumerate() {
            match item.status {
                201 | 200 => {
                    if item.status == 201 {
                        stored += 1
                    } else {
                        duplicates += 1
                    }
                    if let Some(offset) = item.event.as_ref().and_then(|e| e["offset"].as_u64()) {
                        low = low.min(offset);
                        high = high.max(offset);
                    }
                    if self.print_events
                        && let Some(event) = item.event
                    {
                        println!("{event}");
                    }
                }
                status => {
                    rejected += 1;
                    let problem = item.problem.unwrap_or_default();
                    eprintln!(
                        "event {}: rejected: {}",
                        first_item + i as u64,
                        problem.with_status(status)
                    );
                }
            }
        }
        self.totals.stored += stored;
        self.totals.duplicates += duplicates;
        self.totals.rejected += rejected;
        if !self.print_events {
            let offsets = if low <= high {
                format!(" (offsets {low}..={high})")
            } else {
                String::new()
            };
            println!(
                "batch {}: {} events: {stored} stored, {duplicates} duplicates, {rejected} rejected{offsets}",
                self.totals.batches,
                items.len()
            );
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct BatchAnswer {
    results: Vec<BatchItem>,
}

#[derive(Debug, Deserialize)]
struct BatchItem {
    status: u16,
    #[serde(default)]
    event: Option<Value>,
    #[serde(default)]
    problem: Option<Problem>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_body_size() {
        let mut b = Batcher::new(3, 1000);
        assert!(b.push("a".into()).is_none());
        assert!(b.push("b".into()).is_none());
        assert_eq!(b.push("c".into()).unwrap(), ["a", "b", "c"]);
        assert!(b.is_empty());

        // Body `[xxxx,yyyy]` is 11 bytes: the third item would make it 16 > 12.
        let mut b = Batcher::new(10, 12);
        assert!(b.push("xxxx".into()).is_none());
        assert!(b.push("yyyy".into()).is_none());
        let sent = b.push("zzzz".into()).unwrap();
        assert_eq!(array_body(&sent), "[xxxx,yyyy]");
        assert!(array_body(&sent).len() <= 12);
        assert_eq!(b.take(), ["zzzz"]);

        // An item larger than a body still goes, alone.
        let mut b = Batcher::new(10, 4);
        assert!(b.push("toolarge".into()).is_none());
        assert_eq!(b.push("x".into()).unwrap(), ["toolarge"]);
    }
}
