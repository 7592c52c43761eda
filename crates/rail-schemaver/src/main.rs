//! Entry point of the `schemaver` binary; everything lives in the library so tests can call it.

// Parsing a large schema is mostly small allocations; mimalloc halves the CPU time of a compare.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    rail_schemaver::run(std::env::args_os())
}
