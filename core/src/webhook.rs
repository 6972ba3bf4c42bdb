//! What the engine tells a CRM: the webhook payloads. Delivering them is the engine's
//! `webhook` adapter.

pub mod payload;
