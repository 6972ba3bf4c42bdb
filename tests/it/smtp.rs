//! The SMTP server the tests read mail from: the engine's catch-all sink.

pub use nurture_engine::mail::sink::SmtpSink;
