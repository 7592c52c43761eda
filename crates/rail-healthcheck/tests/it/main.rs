//! Integration tests of `healthcheck`: the real binary against the real stack (PostgreSQL, Redis, the
//! demo app), throwaway servers that are stopped mid-test, a listener that never answers, and real HTTP
//! receivers standing in for a Pushgateway.

mod checks;
mod cli;
mod formats;
mod monitor;
mod support;
