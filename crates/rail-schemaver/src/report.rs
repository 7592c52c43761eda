//! The report of `compare` and `check`: the classified changes, and, with `--operations`, the verdict
//! on each client operation, in every output format: text, JSON and Markdown for people and
//! scripts, and SARIF 2.1.0, GitLab Code Quality, JUnit XML and GitHub workflow commands for CI.
//!
//! Findings carry a place when there is one: a broken operation its file and line, a schema change the
//! line of its element in the new schema file (or, for an element that is gone, its nearest ancestor
//! there, else its line in the old file).

use std::fmt::Write as _;

use apollo_compiler::schema::ExtendedType;
use apollo_compiler::validation::Valid;
use rail_core::schema_store::sha256_hex;
use serde_json::{json, Value};

use crate::cli::{DiffFormat, FailOn};
use crate::diff::{self, Change, Counts, Level};
use crate::operations::{Status, Verdict};

/// A schema as the report refers to it.
pub struct SchemaRef<'a> {
    /// What to call it: its file, URL or stored version.
    pub name: &'a str,
    /// Its SDL file, when it is one (not stdin, an endpoint, a stored version or introspection JSON):
    /// changes can then point at lines in it.
    pub file: Option<&'a str>,
    pub compiled: &'a Valid<apollo_compiler::Schema>,
}

/// The client side of a report.
pub struct Clients {
    pub verdicts: Vec<Verdict>,
    /// Files read.
    pub files: usize,
    /// Whether breaking changes no operation uses were downgraded (`--consider-usage`).
    pub consider_usage: bool,
}

impl Clients {
    fn known(&self) -> usize {
        self.verdicts.iter().filter(|v| v.uses.is_some()).count()
    }

    fn broken(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| matches!(v.status, Status::Broken(_)))
    }

    fn invalid(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| matches!(v.status, Status::InvalidOnOld(_)))
    }
}

/// Everything `compare` and `check` report.
pub struct Report<'a> {
    pub changes: Vec<Change>,
    pub clients: Option<Clients>,
    pub old: SchemaRef<'a>,
    pub new: SchemaRef<'a>,
    pub fail_on: FailOn,
}

/// With `--consider-usage`: a breaking change that no operation valid on the old schema touches
/// becomes dangerous, saying so. Returns how many were downgraded. With no such operation at all
/// (wrong folder, operations of another API) nothing is downgraded: "unused by 0 operations" would
/// wave every breaking change through.
pub fn consider_usage(
    changes: &mut [Change],
    verdicts: &[Verdict],
    new: &crate::schema::Schema,
) -> usize {
    let known: Vec<_> = verdicts.iter().filter_map(|v| v.uses.as_ref()).collect();
    if known.is_empty() {
        return 0;
    }
    let mut downgraded = 0;
    for change in changes.iter_mut().filter(|c| c.level == Level::Breaking) {
        if !known.iter().any(|uses| uses.touches(change, new)) {
            change.level = Level::Dangerous;
            change.unused = true;
            change.note = Some(format!("breaking, unused by the {} known operations", known.len()));
            downgraded += 1;
        }
    }
    downgraded
}

impl Report<'_> {
    fn failing_change(&self, change: &Change) -> bool {
        match self.fail_on {
            FailOn::Breaking => change.level == Level::Breaking,
            FailOn::Dangerous => change.level <= Level::Dangerous,
        }
    }

    /// Whether the report fails the gate: a change at or above `--fail-on`, or a broken operation.
    pub fn failing(&self) -> bool {
        self.changes.iter().any(|c| self.failing_change(c))
            || self.clients.as_ref().is_some_and(|c| c.broken().next().is_some())
    }

    pub fn render(&self, format: DiffFormat, colour: bool) -> String {
        match format {
            DiffFormat::Text => self.text(colour),
            DiffFormat::Json => self.json(),
            DiffFormat::Markdown => self.markdown(),
            DiffFormat::Sarif => self.sarif(),
            DiffFormat::Gitlab => self.gitlab(),
            DiffFormat::Junit => self.junit(),
            DiffFormat::Github => self.github(),
        }
    }

    fn text(&self, colour: bool) -> String {
        let mut out = diff::render_text(&self.changes, colour);
        let Some(clients) = &self.clients else { return out };
        let (red, yellow, reset) =
            if colour { ("\x1b[31m", "\x1b[33m", "\x1b[0m") } else { ("", "", "") };
        let broken = clients.broken().count();
        let invalid = clients.invalid().count();
        let _ = write!(
            out,
            "\n\nOperations: {} in {} file(s): {broken} broken, {} ok, {invalid} invalid on the old schema",
            clients.verdicts.len(),
            clients.files,
            clients.verdicts.len() - broken - invalid,
        );
        for v in clients.broken() {
            let _ = write!(
                out,
                "\n  {red}✖{reset} {} {} ({})",
                v.operation.kind.name(),
                v.operation.display_name(),
                v.operation.place
            );
            for p in problems(v) {
                let _ = write!(out, "\n      {}: {}", p.place, p.message);
            }
        }
        for v in clients.invalid() {
            let first = problems(v).first().map(|p| p.message.as_str()).unwrap_or_default();
            let _ = write!(
                out,
                "\n  {yellow}?{reset} {} {} ({}): not valid on the old schema either: {first}",
                v.operation.kind.name(),
                v.operation.display_name(),
                v.operation.place
            );
        }
        if clients.consider_usage {
            let unused = self.changes.iter().filter(|c| c.unused).count();
            let _ = write!(
                out,
                "\n{unused} breaking change(s) unused by the {} known operations, reported as dangerous",
                clients.known()
            );
        }
        out
    }

    fn json(&self) -> String {
        let mut value = json!({"changes": self.changes, "counts": Counts::of(&self.changes)});
        if let Some(clients) = &self.clients {
            let entry = |v: &Verdict| {
                json!({
                    "name": v.operation.name.as_ref().map(ToString::to_string),
                    "type": v.operation.kind.name(),
                    "file": &*v.operation.place.file,
                    "line": v.operation.place.line,
                    "errors": problems(v).iter().map(|p| json!({
                        "file": &*p.place.file, "line": p.place.line, "message": p.message,
                    })).collect::<Vec<_>>(),
                })
            };
            let broken: Vec<Value> = clients.broken().map(entry).collect();
            let invalid: Vec<Value> = clients.invalid().map(entry).collect();
            let mut ops = json!({
                "files": clients.files,
                "checked": clients.verdicts.len(),
                "ok": clients.verdicts.len() - broken.len() - invalid.len(),
                "broken": broken,
                "invalid_on_old": invalid,
            });
            if clients.consider_usage {
                ops["known"] = json!(clients.known());
                ops["unused_breaking_changes"] =
                    json!(self.changes.iter().filter(|c| c.unused).count());
            }
            value["operations"] = ops;
        }
        serde_json::to_string_pretty(&value).unwrap_or_else(|_| String::from("{}"))
    }

    fn markdown(&self) -> String {
        let mut out = diff::render_markdown(&self.changes);
        let Some(clients) = &self.clients else { return out };
        let broken: Vec<&Verdict> = clients.broken().collect();
        let _ = writeln!(
            out,
            "### {} Client operations: {} broken of {} in {} file(s)\n",
            if broken.is_empty() { "✔" } else { "✖" },
            broken.len(),
            clients.verdicts.len(),
            clients.files
        );
        for v in &broken {
            let errors: Vec<String> =
                problems(v).iter().map(|p| format!("{} ({})", p.message, p.place)).collect();
            let _ = writeln!(
                out,
                "- `{}` {} at `{}`: {}",
                v.operation.display_name(),
                v.operation.kind.name(),
                v.operation.place,
                errors.join("; ").replace(['\n', '\r'], " ").replace('<', "&lt;")
            );
        }
        let invalid: Vec<&Verdict> = clients.invalid().collect();
        if !invalid.is_empty() {
            let _ = writeln!(
                out,
                "\n<details>\n<summary>{} operation(s) not valid on the old schema either (not judged)</summary>\n",
                invalid.len()
            );
            for v in invalid {
                let _ =
                    writeln!(out, "- `{}` at `{}`", v.operation.display_name(), v.operation.place);
            }
            out.push_str("\n</details>\n");
        }
        out
    }

    /// Where a schema change is: its element's line in the new schema file, or its nearest ancestor
    /// there; for an element gone with all its ancestors, its line in the old file.
    fn change_place(&self, change: &Change) -> Option<(String, Option<usize>)> {
        let path = change.path.as_deref()?;
        for schema in [&self.new, &self.old] {
            let Some(file) = schema.file else { continue };
            let mut at = path;
            loop {
                if let Some(line) = line_of_coordinate(schema.compiled, at) {
                    return Some((file.to_owned(), Some(line)));
                }
                let parent = diff::parent_path(at);
                if parent == at {
                    break;
                }
                at = parent;
            }
        }
        self.new.file.map(|f| (f.to_owned(), None))
    }

    fn change_title(change: &Change) -> String {
        let mut text = format!("{}: {}", change.kind, change.message.replace("\\'", "'"));
        if let Some(note) = &change.note {
            let _ = write!(text, " ({note})");
        }
        text
    }

    fn broken_message(v: &Verdict) -> String {
        let errors: Vec<String> = problems(v).iter().map(|p| p.message.clone()).collect();
        format!(
            "{} {} is broken by the new schema: {}",
            v.operation.kind.name(),
            v.operation.display_name(),
            errors.join("; ")
        )
    }

    /// The findings CI formats list: broken operations, then breaking and dangerous changes.
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        if let Some(clients) = &self.clients {
            for v in clients.broken() {
                let place = problems(v).first().map_or(&v.operation.place, |p| &p.place).clone();
                out.push(Finding {
                    rule: "broken-operation".to_owned(),
                    severity: Severity::Error,
                    message: Self::broken_message(v),
                    file: Some(place.file.to_string()),
                    line: Some(place.line),
                    key: format!("broken-operation {} {}", v.operation.display_name(), place.file),
                    logical: Some(v.operation.display_name()),
                });
            }
        }
        for change in self.changes.iter().filter(|c| c.level != Level::Safe) {
            let (file, line) = self.change_place(change).unzip();
            out.push(Finding {
                rule: change.kind.as_str().to_owned(),
                severity: if self.failing_change(change) {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                message: Self::change_title(change),
                file,
                line: line.flatten(),
                key: format!(
                    "{} {} {}",
                    change.kind,
                    change.path.as_deref().unwrap_or(""),
                    change.message
                ),
                logical: change.path.clone(),
            });
        }
        out
    }

    fn sarif(&self) -> String {
        let findings = self.findings();
        let mut rules: Vec<&str> = findings.iter().map(|f| f.rule.as_str()).collect();
        rules.sort_unstable();
        rules.dedup();
        let rule_objects: Vec<Value> = rules
            .iter()
            .map(|r| {
                let text = if *r == "broken-operation" {
                    "A client operation valid on the old schema is invalid on the new one"
                        .to_owned()
                } else {
                    format!("GraphQL schema change {r}")
                };
                json!({"id": r, "shortDescription": {"text": text}})
            })
            .collect();
        let results: Vec<Value> = findings
            .iter()
            .map(|f| {
                let mut result = json!({
                    "ruleId": f.rule,
                    "ruleIndex": rules.iter().position(|r| *r == f.rule).unwrap_or(0),
                    "level": match f.severity { Severity::Error => "error", Severity::Warning => "warning" },
                    "message": {"text": f.message},
                    "partialFingerprints": {"schemaver/v1": sha256_hex(&f.key)},
                });
                let mut location = json!({});
                if let Some(file) = &f.file {
                    let mut physical = json!({"artifactLocation": {"uri": file_uri(file)}});
                    if let Some(line) = f.line {
                        physical["region"] = json!({"startLine": line});
                    }
                    location["physicalLocation"] = physical;
                }
                if let Some(name) = &f.logical {
                    location["logicalLocations"] = json!([{"fullyQualifiedName": name}]);
                }
                if location.as_object().is_some_and(|o| !o.is_empty()) {
                    result["locations"] = json!([location]);
                }
                result
            })
            .collect();
        let sarif = json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {
                    "name": "schemaver",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rule_objects,
                }},
                "results": results,
            }],
        });
        serde_json::to_string_pretty(&sarif).unwrap_or_else(|_| String::from("{}"))
    }

    fn gitlab(&self) -> String {
        let issues: Vec<Value> = self
            .findings()
            .iter()
            .map(|f| {
                json!({
                    "description": f.message,
                    "check_name": f.rule,
                    "fingerprint": sha256_hex(&f.key),
                    "severity": match (f.severity, f.rule.as_str()) {
                        (Severity::Error, "broken-operation") => "blocker",
                        (Severity::Error, _) => "critical",
                        (Severity::Warning, _) => "minor",
                    },
                    "location": {
                        "path": f.file.clone().unwrap_or_else(|| self.new.name.to_owned()),
                        "lines": {"begin": f.line.unwrap_or(1)},
                    },
                })
            })
            .collect();
        serde_json::to_string_pretty(&issues).unwrap_or_else(|_| String::from("[]"))
    }

    fn junit(&self) -> String {
        let mut suites = String::new();
        let (mut total, mut total_failures, mut total_skipped) = (0, 0, 0);
        // The schema: one case per breaking or dangerous change, failing when it fails the gate; a
        // passing case when there is none, so the suite always says what was checked.
        let mut cases = String::new();
        let (mut tests, mut failures) = (0, 0);
        for change in self.changes.iter().filter(|c| c.level != Level::Safe) {
            tests += 1;
            let name = format!("{} {}", change.kind, change.path.as_deref().unwrap_or("(schema)"));
            let class = format!("schema.{}", change.level);
            if self.failing_change(change) {
                failures += 1;
                let _ = write!(
                    cases,
                    "    <testcase name=\"{}\" classname=\"{}\">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>\n",
                    xml(&name),
                    xml(&class),
                    xml(&Self::change_title(change)),
                    xml(change.kind.as_str()),
                    xml(&self.change_place(change).map(|(f, l)| l.map_or(f.clone(), |l| format!("{f}:{l}"))).unwrap_or_default()),
                );
            } else {
                let _ = writeln!(
                    cases,
                    "    <testcase name=\"{}\" classname=\"{}\"/>",
                    xml(&name),
                    xml(&class)
                );
            }
        }
        if tests == 0 {
            tests = 1;
            cases.push_str(
                "    <testcase name=\"no breaking or dangerous change\" classname=\"schema\"/>\n",
            );
        }
        let _ = write!(
            suites,
            "  <testsuite name=\"schema changes: {}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">\n{cases}  </testsuite>\n",
            xml(&format!("{} → {}", self.old.name, self.new.name)),
        );
        total += tests;
        total_failures += failures;
        if let Some(clients) = &self.clients {
            let mut cases = String::new();
            let (mut failures, mut skipped) = (0, 0);
            for v in &clients.verdicts {
                let name = xml(&v.operation.display_name());
                let class = xml(&format!("operations.{}", v.operation.place));
                match &v.status {
                    Status::Ok => {
                        let _ = writeln!(
                            cases,
                            "    <testcase name=\"{name}\" classname=\"{class}\"/>"
                        );
                    }
                    Status::Broken(problems) => {
                        failures += 1;
                        let detail: Vec<String> = problems
                            .iter()
                            .map(|p| format!("{}: {}", p.place, p.message))
                            .collect();
                        let _ = write!(
                            cases,
                            "    <testcase name=\"{name}\" classname=\"{class}\">\n      <failure message=\"{}\" type=\"broken-operation\">{}</failure>\n    </testcase>\n",
                            xml(&Self::broken_message(v)),
                            xml(&detail.join("\n")),
                        );
                    }
                    Status::InvalidOnOld(problems) => {
                        skipped += 1;
                        let first =
                            problems.first().map(|p| p.message.as_str()).unwrap_or_default();
                        let _ = write!(
                            cases,
                            "    <testcase name=\"{name}\" classname=\"{class}\">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                            xml(&format!("not valid on the old schema either: {first}")),
                        );
                    }
                }
            }
            let tests = clients.verdicts.len();
            let _ = write!(
                suites,
                "  <testsuite name=\"client operations\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n{cases}  </testsuite>\n",
            );
            total += tests;
            total_failures += failures;
            total_skipped += skipped;
        }
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"schemaver\" tests=\"{total}\" failures=\"{total_failures}\" errors=\"0\" skipped=\"{total_skipped}\">\n{suites}</testsuites>"
        )
    }

    fn github(&self) -> String {
        let findings = self.findings();
        let mut lines: Vec<String> = findings
            .iter()
            .map(|f| {
                let command = match f.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                let mut props = Vec::new();
                if let Some(file) = &f.file {
                    props.push(format!("file={}", github_property(file)));
                }
                if let Some(line) = f.line {
                    props.push(format!("line={line}"));
                }
                props.push(format!("title={}", github_property(&f.rule)));
                format!("::{command} {}::{}", props.join(","), github_data(&f.message))
            })
            .collect();
        let counts = Counts::of(&self.changes);
        let mut summary = format!(
            "schemaver: {} breaking, {} dangerous, {} safe change(s)",
            counts.breaking, counts.dangerous, counts.safe
        );
        if let Some(clients) = &self.clients {
            let _ = write!(
                summary,
                "; {} of {} operation(s) broken",
                clients.broken().count(),
                clients.verdicts.len()
            );
        }
        lines.push(summary);
        lines.join("\n")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    Error,
    Warning,
}

/// One finding of the CI formats.
struct Finding {
    rule: String,
    severity: Severity,
    message: String,
    file: Option<String>,
    line: Option<usize>,
    /// What identifies the finding across runs, for fingerprints.
    key: String,
    /// The schema coordinate or operation name.
    logical: Option<String>,
}

fn problems(v: &Verdict) -> &[crate::operations::Problem] {
    match &v.status {
        Status::Ok => &[],
        Status::Broken(p) | Status::InvalidOnOld(p) => p,
    }
}

/// The line of a schema coordinate (`Type`, `Type.field`, `Type.field.arg`, `Enum.VALUE`,
/// `Input.field`, `@directive`, `@directive.arg`) in the schema's SDL.
pub fn line_of_coordinate(schema: &Valid<apollo_compiler::Schema>, path: &str) -> Option<usize> {
    let line = |span: Option<apollo_compiler::parser::SourceSpan>| {
        span.and_then(|s| s.line_column(&schema.sources)).map(|lc| lc.line)
    };
    if let Some(directive) = path.strip_prefix('@') {
        let (name, arg) =
            directive.split_once('.').map_or((directive, None), |(n, a)| (n, Some(a)));
        let def = schema.directive_definitions.get(name)?;
        return match arg {
            None => line(def.location()),
            Some(arg) => line(def.argument_by_name(arg)?.location()),
        };
    }
    // A directive usage's path ends in `.@name`: the element it is on.
    if path.contains(".@") {
        return None;
    }
    let mut parts = path.splitn(3, '.');
    let ty = schema.types.get(parts.next()?)?;
    let Some(member) = parts.next() else { return line(ty.location()) };
    let arg = parts.next();
    let field = match ty {
        ExtendedType::Object(t) => t.fields.get(member).map(|f| f.node.clone()),
        ExtendedType::Interface(t) => t.fields.get(member).map(|f| f.node.clone()),
        ExtendedType::Enum(t) => {
            return if arg.is_none() { line(t.values.get(member)?.location()) } else { None };
        }
        ExtendedType::InputObject(t) => {
            return if arg.is_none() { line(t.fields.get(member)?.location()) } else { None };
        }
        _ => None,
    }?;
    match arg {
        None => line(field.location()),
        Some(arg) => line(field.argument_by_name(arg)?.location()),
    }
}

/// A file path as a SARIF URI: relative paths stay relative (GitHub resolves them against the
/// repository), absolute ones become `file://` URIs; characters URIs reserve are escaped.
fn file_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for c in path.chars() {
        match c {
            '\\' => out.push('/'),
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' | '_' | '~' | '/' | ':' | '@' | '+' => {
                out.push(c);
            }
            c => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        }
    }
    out
}

/// Text for XML attributes and content: the five special characters escaped, and characters XML 1.0
/// does not allow at all dropped.
pub fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// A workflow command's message: `%`, CR and LF escaped as GitHub's runner expects.
fn github_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// A workflow command's property value: as a message, plus `:` and `,`.
fn github_property(text: &str) -> String {
    github_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(xml("a<b & \"c\"\n\u{1}"), "a&lt;b &amp; &quot;c&quot;&#10;");
        assert_eq!(github_data("50% done\nnext"), "50%25 done%0Anext");
        assert_eq!(github_property("a,b:c"), "a%2Cb%3Ac");
        assert_eq!(file_uri("src/my file.graphql"), "src/my%20file.graphql");
        assert_eq!(file_uri("/tmp/x#1.graphql"), "file:///tmp/x%231.graphql");
    }

    #[test]
    fn coordinates_have_lines() {
        let schema = apollo_compiler::Schema::parse_and_validate(
            "type Query {\n  a(x: Int): E\n}\nenum E {\n  ONE\n}\ninput I {\n  f: Int\n}\ndirective @d(r: Int) on FIELD\n",
            "s.graphql",
        )
        .unwrap();
        let at = |p| line_of_coordinate(&schema, p);
        assert_eq!(
            [
                at("Query"),
                at("Query.a"),
                at("Query.a.x"),
                at("E.ONE"),
                at("I.f"),
                at("@d"),
                at("@d.r")
            ],
            [Some(1), Some(2), Some(2), Some(5), Some(8), Some(10), Some(10)]
        );
        assert_eq!([at("Query.b"), at("Nope"), at("Query.a.@deprecated")], [None, None, None]);
    }
}
