//! Entry point of the `schemaver` binary; everything lives in the library so tests can call it.

fn main() -> std::process::ExitCode {
    rail_schemaver::run(std::env::args_os())
}
