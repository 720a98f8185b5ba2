//! Process-level tests: the real `streambus` binary, killed, restarted and
//! driven by the seed's own client examples.

mod browser;
mod durability;
mod proc;
mod seed004;
