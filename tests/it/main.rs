//! The one integration-test binary: the storage contract suite (run against SQLite and
//! PostgreSQL), the REST API against a real server on port 0, and the `nurture` binary itself.

/// Runs each `async fn case(app: TestApp, backend: Backend)` against a real server on SQLite
/// and on PostgreSQL (which fails in CI, and is reported as skipped elsewhere, when unreachable).
macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(app) = crate::support::spawn_app_on(crate::support::Backend::Sqlite).await {
                    super::$case(app, crate::support::Backend::Sqlite).await;
                }
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(app) = crate::support::spawn_app_on(crate::support::Backend::Postgres).await {
                    super::$case(app, crate::support::Backend::Postgres).await;
                }
            })*
        }
    };
}

mod api;
mod cli;
mod clock;
mod crash;
mod deliverability;
mod email;
mod handoff;
mod outage;
mod playbook;
mod smtp;
mod storage;
mod support;
mod trust;
mod webhooks;
mod wechat;
