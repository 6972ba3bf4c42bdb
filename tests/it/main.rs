//! The one integration-test binary: the storage contract suite (run against SQLite and
//! PostgreSQL), the REST API against a real server on port 0, and the `nurture` binary itself.

/// Runs each case against SQLite and against PostgreSQL (which fails in CI, and is reported
/// as skipped elsewhere, when unreachable). `setup` turns a backend into what every case takes,
/// e.g. `support::engine` (a `TestEngine`) or `support::spawn_app_on` (a real server, `TestApp`):
/// `both_backends!(crate::support::engine; case_a, case_b)`.
macro_rules! both_backends {
    ($setup:path; $($case:ident),* $(,)?) => {
        both_backends!(@on sqlite Sqlite $setup; $($case),*);
        both_backends!(@on postgres Postgres $setup; $($case),*);
    };
    (@on $module:ident $backend:ident $setup:path; $($case:ident),*) => {
        mod $module {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(given) = $setup(crate::support::Backend::$backend).await {
                    super::$case(given).await;
                }
            })*
        }
    };
}

mod api;
mod audit;
mod backlog;
mod browser;
mod campaign_pages;
mod capture;
mod cli;
mod clock;
mod console;
mod crash;
mod deliverability;
mod deployments;
mod email;
mod handoff;
mod keys;
mod lead_search;
mod outage;
mod playbook;
mod playbook_editor;
mod queue_reports;
mod reports;
mod segments;
mod smtp;
mod storage;
mod support;
mod templates;
mod trust;
mod webhooks;
mod wechat;
