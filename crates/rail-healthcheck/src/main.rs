//! Entry point of the `healthcheck` binary; everything lives in the library so tests can call it.

fn main() -> std::process::ExitCode {
    rail_healthcheck::run(std::env::args_os())
}
