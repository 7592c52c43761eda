//! The testkit's own integration tests: each helper is exercised against the real stack and real
//! servers of its own, as the other crates' tests will use it.

mod app;
mod cmd;
mod db;
mod redis;
mod throwaway;
