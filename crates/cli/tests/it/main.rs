//! Process-level tests: the real `streambus` binary, killed, restarted and
//! driven by the seed's own client examples.

mod browser;
mod cluster;
mod cluster_catalog;
mod durability;
mod pages_browser;
mod proc;
mod proxy;
mod seed004;
