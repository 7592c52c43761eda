//! Project automation: `cargo xtask stack|test|demo|bench|ci`.

fn main() {}
