//! Docs that cannot drift: every command line the documentation shows for one of the four binaries
//! (shell blocks and inline code in README.md, docs/*.md, docker/README.md, and the examples of every
//! `--help`) goes through that binary's own argument parser, and a parse error fails the test.

use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use fs_err as fs;

use crate::util::project_root;

const BINARIES: [&str; 4] = ["deploy", "rollback", "healthcheck", "schemaver"];

/// One command line found in the docs, and where.
#[derive(Debug)]
struct Shown {
    place: String,
    words: Vec<String>,
    /// Inline code in prose: it may name a command without all its arguments (`rollback rollback`,
    /// `deploy --version`), but what it does give must parse.
    mention: bool,
}

/// The Markdown files whose command lines are checked.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("docker").join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Shell code blocks (no language, `sh`, `bash`, `shell`, `console`) and inline code spans.
fn command_lines(file: &Path, text: &str) -> Vec<Shown> {
    let mut found = Vec::new();
    let mut in_block: Option<bool> = None;
    let mut pending = String::new();
    let mut pending_line = 0;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        if let Some(fence) = trimmed.strip_prefix("```") {
            in_block = match in_block {
                Some(_) => None,
                None => Some(matches!(fence.trim(), "" | "sh" | "bash" | "shell" | "console")),
            };
            continue;
        }
        match in_block {
            Some(true) => {
                if pending.is_empty() {
                    pending_line = number;
                }
                let body = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
                if let Some(continued) = body.strip_suffix('\\') {
                    pending.push_str(continued);
                    pending.push(' ');
                    continue;
                }
                pending.push_str(body);
                let place = format!("{}:{pending_line}", file.display());
                found.extend(segments(&pending).into_iter().map(|words| Shown {
                    place: place.clone(),
                    words,
                    mention: false,
                }));
                pending.clear();
            }
            Some(false) => {}
            None => {
                for span in inline_spans(line) {
                    // Usage syntax (`[FILE…]`, `on|off`) is not a command line.
                    if ["…", "...", "[", "|", "{"].iter().any(|s| span.contains(s)) {
                        continue;
                    }
                    let place = format!("{}:{number}", file.display());
                    found.extend(segments(span).into_iter().map(|words| Shown {
                        place: place.clone(),
                        words,
                        mention: true,
                    }));
                }
            }
        }
    }
    found
}

/// The text between single backticks on a line.
fn inline_spans(line: &str) -> Vec<&str> {
    let parts: Vec<&str> = line.split('`').collect();
    parts.iter().skip(1).step_by(2).copied().take(parts.len() / 2).collect()
}

/// The invocations of a rail binary in a shell line: its pipeline and `&&`/`;` lists split, leading
/// variable assignments and `sudo`/`env`/`exec` skipped, `cargo run … --bin NAME --` unwrapped,
/// redirections dropped. Each is `[binary, args…]`.
fn segments(line: &str) -> Vec<Vec<String>> {
    let Some(words) = shlex::split(&strip_comment(line)) else { return Vec::new() };
    let mut out = Vec::new();
    for segment in words.split(|w| matches!(w.as_str(), "|" | "||" | "&&" | ";" | "&")) {
        let mut rest: &[String] = segment;
        while let Some(first) = rest.first() {
            let is_assignment = first.contains('=')
                && first.split('=').next().is_some_and(|n| {
                    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
            if is_assignment || matches!(first.as_str(), "sudo" | "env" | "exec" | "time" | "!") {
                rest = &rest[1..];
            } else {
                break;
            }
        }
        if rest.first().is_some_and(|w| w == "cargo") && rest.get(1).is_some_and(|w| w == "run") {
            let bin = rest.iter().position(|w| w == "--bin").and_then(|i| rest.get(i + 1));
            let dashes = rest.iter().position(|w| w == "--");
            if let Some(bin) = bin {
                let mut words = vec![bin.clone()];
                if let Some(d) = dashes {
                    words.extend(rest[d + 1..].iter().cloned());
                }
                out.push(drop_redirections(words));
            }
            continue;
        }
        let Some(first) = rest.first() else { continue };
        let name = Path::new(first).file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if BINARIES.contains(&name)
            && (first == name || first.contains("target/") || first.starts_with('/'))
        {
            let mut words = vec![name.to_owned()];
            words.extend(rest[1..].iter().cloned());
            out.push(drop_redirections(words));
        }
    }
    out
}

/// `cmd # comment` → `cmd`, outside quotes.
fn strip_comment(line: &str) -> String {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev.is_whitespace() => return line[..i].to_owned(),
            _ => {}
        }
        prev = c;
    }
    line.to_owned()
}

fn drop_redirections(words: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for word in words {
        if skip_next {
            skip_next = false;
            continue;
        }
        let bare = word.trim_start_matches(|c: char| c.is_ascii_digit());
        if matches!(bare, ">" | ">>" | "<" | "<<<") {
            skip_next = true;
            continue;
        }
        if bare.starts_with('>') || bare.starts_with('<') {
            continue;
        }
        out.push(word);
    }
    out
}

/// Parse `words` with the binary's own parser; `None` when it parses (help and version count; for a
/// mention, so does stopping short of a required argument or a flag's value).
fn parse_error(words: &[String], mention: bool) -> Option<String> {
    fn check<P: Parser>(words: &[String], mention: bool) -> Option<String> {
        use clap::error::ErrorKind;
        match P::try_parse_from(words) {
            Ok(_) => None,
            Err(e) => {
                let incomplete = e.kind() == ErrorKind::MissingRequiredArgument
                    || (e.kind() == ErrorKind::InvalidValue
                        && e.to_string().contains("none was supplied"));
                match e.kind() {
                    ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => None,
                    _ if mention && incomplete => None,
                    _ => Some(e.render().to_string()),
                }
            }
        }
    }
    match words.first().map(String::as_str) {
        Some("deploy") => check::<rail_deploy::Cli>(words, mention),
        Some("rollback") => check::<rail_rollback::Cli>(words, mention),
        Some("healthcheck") => check::<rail_healthcheck::Cli>(words, mention),
        Some("schemaver") => check::<rail_schemaver::Cli>(words, mention),
        other => Some(format!("not a rail binary: {other:?}")),
    }
}

/// The example lines of every `after_help`, for each binary and each of its subcommands.
fn help_examples() -> Vec<Shown> {
    fn walk(cmd: &clap::Command, path: &str, found: &mut Vec<Shown>) {
        if let Some(help) = cmd.get_after_help() {
            for line in help.to_string().lines() {
                let place = format!("`{path} --help`");
                found.extend(segments(line.trim()).into_iter().map(|words| Shown {
                    place: place.clone(),
                    words,
                    mention: false,
                }));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), found);
        }
    }
    let mut found = Vec::new();
    walk(&rail_deploy::Cli::command(), "deploy", &mut found);
    walk(&rail_rollback::Cli::command(), "rollback", &mut found);
    walk(&rail_healthcheck::Cli::command(), "healthcheck", &mut found);
    walk(&rail_schemaver::Cli::command(), "schemaver", &mut found);
    found
}

#[test]
fn every_command_line_in_the_docs_and_help_parses() {
    let root = project_root();
    let mut shown = Vec::new();
    for file in documents(&root) {
        let text = fs::read_to_string(&file).unwrap();
        let relative = file.strip_prefix(&root).unwrap().to_path_buf();
        shown.extend(command_lines(&relative, &text));
    }
    let from_docs = shown.len();
    let examples = help_examples();
    let from_help = examples.len();
    shown.extend(examples);
    // Enough lines are found that the extraction itself is known to work.
    assert!(from_docs >= 40, "only {from_docs} command lines found in the docs");
    assert!(from_help >= 12, "only {from_help} examples found in --help");
    for bin in BINARIES {
        assert!(shown.iter().any(|s| s.words[0] == bin), "no command line of {bin} found");
    }
    let failures: Vec<String> = shown
        .iter()
        .filter_map(|s| {
            parse_error(&s.words, s.mention)
                .map(|e| format!("{}: `{}`\n{}", s.place, s.words.join(" "), e.trim_end()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} command lines do not parse:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_extraction_finds_what_a_reader_sees() {
    let text = "Run `deploy --dry-run` first.\n\n```sh\n$ FOO=1 deploy -e staging \\\n    --version v2 | tee out.json  # then\ncargo run -q -p rail-rollback --bin rollback -- list --format json > sets.json\n```\n\n```toml\ndeploy = 1\n```\nUsage: `rollback verify [NAME]` and `deploy.strategy`.\n";
    let found = command_lines(Path::new("x.md"), text);
    let lines: Vec<String> =
        found.iter().map(|s| format!("{} {}", s.place, s.words.join(" "))).collect();
    assert_eq!(
        lines,
        [
            "x.md:1 deploy --dry-run",
            "x.md:4 deploy -e staging --version v2",
            "x.md:6 rollback list --format json",
        ]
    );
    let words = |line: &str| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
    assert!(parse_error(&words("deploy --no-such-flag"), true).is_some());
    assert!(parse_error(&words("rollback list --format json"), false).is_none());
    // A mention may stop short; a command line may not.
    assert!(parse_error(&words("rollback rollback"), true).is_none());
    assert!(parse_error(&words("rollback rollback"), false).is_some());
    assert!(parse_error(&words("rollback rollbak"), true).is_some());
}
