//! Integration tests of `schemaver`: the real binary on real files, against a real PostgreSQL (a
//! database of each test's own on the stack's cluster), real HTTP servers on 127.0.0.1 and the demo
//! app.

mod capture;
mod commands;
mod conformance;
mod hostile;
mod operations;
mod postgres;

use std::path::{Path, PathBuf};

use rail_testkit::{cmd, workspace_root, Cmd, Output, TestDir};

/// The binary under test, with a cleared environment.
pub fn schemaver() -> Cmd {
    cmd(env!("CARGO_BIN_EXE_schemaver"))
}

/// `schemaver ARGS…` with a dir store in `store`.
pub fn run_in(store: &Path, args: &[&str]) -> Output {
    schemaver().env("RAIL_SCHEMA_DIR", store).args(args).run()
}

/// The public schema pairs (GitHub, Saleor, Shopify) and GraphQL Inspector's reports on some of
/// them, which live beside the clone (CI mounts them read-only) and are not copied into it.
pub fn shared_schemas() -> PathBuf {
    let dir = workspace_root().join("../shared/graphql-schemas");
    assert!(
        dir.join("sdl").is_dir() && dir.join("inspector").is_dir(),
        "the public test schemas are missing: expected {} (with sdl/, introspection/ and inspector/) \
         beside the workspace; they are not part of the repository",
        dir.display()
    );
    dir
}

/// A public schema by file name, from `sdl/` or `introspection/`.
pub fn public_schema(name: &str) -> PathBuf {
    let dir = shared_schemas();
    let sdl = dir.join("sdl").join(name);
    if sdl.is_file() {
        return sdl;
    }
    let json = dir.join("introspection").join(name);
    assert!(json.is_file(), "no public schema named {name} in {}", dir.display());
    json
}

/// A temp dir holding a small schema in `v1.graphql` and `v2.graphql` (one safe, one breaking and
/// one dangerous change between them).
pub fn small_pair() -> TestDir {
    let dir = TestDir::new();
    dir.write("v1.graphql", "type Query { a: Int b: String e: E }\nenum E { X Y }\n");
    dir.write("v2.graphql", "type Query { a: Int c: Float e: E }\nenum E { X Y Z }\n");
    dir
}
