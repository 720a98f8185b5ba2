//! Integration tests: the real server on an ephemeral port, real clients.

mod util;

mod health;
mod history;
mod pause;
mod publish;
mod resume;
mod seed004;
mod slow;
mod smoke;
mod sse;
mod subscriptions;
mod templates;
mod types;
mod ws;
