//! Integration tests: the real server on an ephemeral port, real clients.

mod util;

mod auth;
mod cluster;
mod health;
mod history;
mod ingest;
mod limits;
mod overlays;
mod pages;
mod pause;
mod pollers;
mod publish;
mod requests;
mod resume;
mod rules;
mod schedule;
mod seed004;
mod slow;
mod smoke;
mod sse;
mod state;
mod subscriptions;
mod templates;
mod tenants;
mod types;
mod webhooks;
mod ws;
