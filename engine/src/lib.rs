//! The nurture engine: the `Engine` facade every write goes through, and the adapters it
//! wires to the domain of `nurture-core`: storage (SQLite, PostgreSQL), mail (SMTP), WeChat
//! and webhook delivery.
//!
//! The domain modules are re-exported here under their own names, so `nurture_engine::lead`
//! is `nurture_core::lead`.

pub use nurture_core::{
    access, audit, bounce, channel, clock, condition, diagnostic, duration, event, fetch, handoff, journey, lead, note,
    nurture, pacing, pages, playbook, report, tag, template, tracking, yaml,
};

pub mod engine;
pub mod mail;
pub mod store;
pub mod tls;
pub mod webhook;
pub mod wechat;
