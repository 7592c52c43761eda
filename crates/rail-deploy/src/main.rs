//! Entry point of the `deploy` binary; everything lives in the library so tests can call it.

fn main() -> std::process::ExitCode {
    rail_deploy::run(std::env::args_os())
}
