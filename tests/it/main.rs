//! The one integration-test binary: the storage contract suite (run against SQLite and
//! PostgreSQL), the REST API against a real server on port 0, and the `nurture` binary itself.

mod api;
mod cli;
mod crash;
mod email;
mod handoff;
mod playbook;
mod smtp;
mod storage;
mod support;
mod webhooks;
mod wechat;
