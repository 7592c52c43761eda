//! Entry point of the `rollback` binary; everything lives in the library so tests can call it.

fn main() -> std::process::ExitCode {
    rail_rollback::run(std::env::args_os())
}
