//! Integration tests of `rollback`: the real binary against the real PostgreSQL of the local stack
//! (`cargo xtask stack up`), each test with a database and directories of its own.

mod app;
mod corruption;
mod hostile;
mod interrupt;
mod lock;
mod manage;
mod remote;
mod roundtrip;
mod support;
