//! Process-level tests: the real `streambus` binary, killed, restarted and
//! driven by the seed's own client examples.

mod admin_rules_browser;
mod browser;
mod cluster;
mod cluster_catalog;
mod cluster_rules;
mod demo;
mod durability;
mod pages_browser;
mod proc;
mod proxy;
mod seed004;
mod wall_browser;
