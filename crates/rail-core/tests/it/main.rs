//! Integration tests of rail-core against real programs, files and PostgreSQL.

mod journal;
mod lock;
mod maintenance;
mod notify;
mod process;
mod service;
