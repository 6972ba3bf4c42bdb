//! The nurture domain: leads, tags, events, durations, the condition language, the playbook and
//! its validation, message templates, the step function that moves a lead through a campaign,
//! pacing, bounces, the handoff state machine, tracking tokens and the clock.
//!
//! Architecture invariant: this crate is pure. It depends on no database driver, mailer, HTTP
//! client or async runtime (`cargo tree -p nurture-core` shows none), so everything in it is
//! tested in memory on a manual timeline. The adapters and the `Engine` that wires them live in
//! `nurture-engine`.

pub mod access;
pub mod audit;
pub mod bounce;
pub mod channel;
pub mod clock;
pub mod condition;
pub mod diagnostic;
pub mod duration;
pub mod event;
pub mod fetch;
pub mod handoff;
pub mod journey;
pub mod lead;
pub mod note;
pub mod nurture;
pub mod pacing;
pub mod pages;
pub mod playbook;
pub mod report;
pub mod tag;
pub mod template;
pub mod tracking;
pub mod webhook;
pub mod yaml;
