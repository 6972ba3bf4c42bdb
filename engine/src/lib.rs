//! The nurture engine: leads, tags, scores, the condition language and the rules that apply
//! them, and the storage they live in.
//!
//! Architecture invariant: everything outside [`store`] is pure domain code and knows nothing
//! of SQL, HTTP or SMTP. The [`engine::Engine`] orchestrates work through the [`store::Store`]
//! port; the SQLite and PostgreSQL adapters implement it.

pub mod access;
pub mod bounce;
pub mod clock;
pub mod condition;
pub mod duration;
pub mod engine;
pub mod event;
pub mod fetch;
pub mod handoff;
pub mod journey;
pub mod lead;
pub mod mail;
pub mod nurture;
pub mod pacing;
pub mod playbook;
pub mod store;
pub mod tag;
pub mod template;
pub mod tls;
pub mod tracking;
pub mod webhook;
pub mod wechat;
