//! Usage and configuration errors: exit 2 with a message that says what to do.

use crate::support::Env;

#[test]
fn asking_for_an_unconfigured_check_names_what_to_set() {
    let mut env = Env::stack();
    env.unset("REDIS_URL");
    let out = env.run(&["--check", "redis"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("the redis check is not configured: set REDIS_URL"),
        "{}",
        out.describe()
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn unknown_check_names_suggest_the_closest() {
    let env = Env::stack();
    let out = env.run(&["--check", "databse"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("unknown check `databse` (did you mean `database`?)"),
        "{}",
        out.describe()
    );
    // The older tool's name still works.
    env.run(&["--check", "graphql_endpoint"]).assert_success();
}

#[test]
fn a_malformed_url_is_a_configuration_error_without_its_password() {
    let mut env = Env::stack();
    env.set("DATABASE_URL", "postgresql://rail:hunter2@127.0.0.1:notaport/db");
    let out = env.run(&[]);
    out.assert_code(2);
    assert!(out.stderr.contains("invalid database URL"), "{}", out.describe());
    assert!(!out.stderr.contains("hunter2"));
}

#[test]
fn no_malformed_form_of_a_url_shows_its_password() {
    for url in [
        // No scheme: parses as a URL of scheme `rail` with no password.
        "rail:hunter2@127.0.0.1/db",
        // libpq's key=value form, with a port that does not parse.
        "host=127.0.0.1 port=notaport user=rail password=hunter2 dbname=x",
        "postgresql://rail:hunter2@[bad/db",
    ] {
        for format in ["text", "json"] {
            let mut env = Env::stack();
            env.set("DATABASE_URL", url);
            let out = env.run(&["--check", "database", "--format", format]);
            assert!(
                !out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"),
                "{url}: {}",
                out.describe()
            );
        }
    }
    // A TOML error quotes the broken line: the password in it is redacted.
    let dir = rail_testkit::TestDir::new();
    let config = dir.write("bad.toml", "[database]\nurl = \"postgresql://rail:hunter2@h/db\n");
    let env = Env::stack();
    let out = env.run(&["--config", config.to_str().unwrap()]);
    out.assert_code(2);
    assert!(out.stderr.contains("not valid TOML"), "{}", out.describe());
    assert!(out.stderr.contains("rail:***@h/db"), "{}", out.describe());
    assert!(!out.stderr.contains("hunter2"), "{}", out.describe());
}

#[test]
fn bad_flags_are_usage_errors() {
    let env = Env::stack();
    env.run(&["--format", "yaml"]).assert_code(2);
    env.run(&["--timeout", "soon"]).assert_code(2);
    let out = env.run(&["--monitor", "--interval", "0"]);
    out.assert_code(2);
    assert!(out.stderr.contains("--interval must be longer than zero"), "{}", out.describe());
}
