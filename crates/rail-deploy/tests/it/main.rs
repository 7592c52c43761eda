//! Integration tests of `deploy`: the real binary against a private demo app (gunicorn), its own
//! database and Redis db on the local stack.

mod support;

mod compose;
mod dryrun;
mod failures;
mod getting_started;
mod kill;
mod lock;
mod offsite;
mod online;
mod operator;
mod ops;
mod options;
mod pipeline;
mod statics;
