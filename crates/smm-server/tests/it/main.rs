//! smm-server's integration tests: one test binary (`it`), one support module.
//!
//! Run one area with a filter on the module path, e.g.
//! `cargo nextest run -p smm-server --test it e2e::` or `... --test it soak::`.
//! PostgreSQL variants need `TEST_DATABASE_URL` (see [`support`]); `scripts/test.sh` provides
//! one. Browser tests need Chromium and ChromeDriver (see [`support::browser`]);
//! `scripts/with-chromium.sh` provides them. Long variants stay opt-in by environment variable
//! (`SOAK_FULL=1`, `HTTP_FUZZ_SECS`).
//!
//! Every test has its own temp dir, ports and database and sets environment variables only on
//! the processes it starts, so the binary passes under nextest and plain `cargo test` alike.

#[macro_use]
mod support;

// One module per area; keep the list sorted.
mod admin;
mod browser;
mod cli;
mod console;
mod console_config;
mod console_notifications;
mod console_scorecards;
mod crash;
mod deploy;
mod e2e;
mod http_fuzz;
mod instances;
mod notifications;
mod reload;
mod scaleout;
mod security;
mod soak;
mod tidy;
