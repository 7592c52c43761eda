//! Repository rules checked as ordinary tests: they fail `cargo xtask test` the moment a rule is broken.

use std::path::{Path, PathBuf};

use fs_err as fs;

use crate::util::project_root;

/// Every package's manifest: `crates/*/Cargo.toml` and xtask's.
fn manifests(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path().join("Cargo.toml"))
        .filter(|path| path.is_file())
        .collect();
    found.push(root.join("xtask").join("Cargo.toml"));
    found.sort();
    found
}

#[test]
fn every_crate_inherits_the_workspace_lints() {
    let root = project_root();
    let manifests = manifests(&root);
    assert!(manifests.len() >= 2, "found no crates under {}", root.display());
    let offenders: Vec<String> = manifests
        .iter()
        .filter(|path| {
            let manifest: toml::Table = toml::from_str(&fs::read_to_string(path).unwrap())
                .unwrap_or_else(|err| panic!("{} does not parse: {err}", path.display()));
            let inherits = manifest
                .get("lints")
                .and_then(|lints| lints.get("workspace"))
                .and_then(toml::Value::as_bool)
                .unwrap_or(false);
            !inherits
        })
        .map(|path| path.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(offenders.is_empty(), "these manifests lack `[lints] workspace = true`: {offenders:?}");
}

#[test]
fn the_ci_script_runs_exactly_cargo_xtask_ci() {
    let script = fs::read_to_string(project_root().join(".ci").join("run")).unwrap();
    let runs: Vec<&str> =
        script.lines().map(str::trim).filter(|line| line.starts_with("cargo xtask ci")).collect();
    assert_eq!(
        runs,
        ["cargo xtask ci"],
        "the CI script must run the README's test command as it is"
    );
}

/// A `run:` step of a workflow and the shell GitHub runs it with.
struct RunStep {
    file: String,
    name: String,
    script: String,
    /// `bash -e {0}` (GitHub's default) or, for `shell: bash`, `bash --noprofile --norc -eo pipefail {0}`.
    pipefail: bool,
}

fn workflow_run_steps(root: &Path) -> Vec<RunStep> {
    use yaml_rust2::{Yaml, YamlLoader};
    let shell_of = |node: &Yaml| node["defaults"]["run"]["shell"].as_str().map(str::to_owned);
    let mut out = Vec::new();
    let dir = root.join(".github/workflows");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        let docs = YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        let workflow = &docs[0];
        let top = shell_of(workflow);
        let Some(jobs) = workflow["jobs"].as_hash() else { continue };
        for job in jobs.values() {
            let job_shell = shell_of(job).or_else(|| top.clone());
            for step in job["steps"].as_vec().into_iter().flatten() {
                let Some(script) = step["run"].as_str() else { continue };
                let shell = step["shell"].as_str().map(str::to_owned).or_else(|| job_shell.clone());
                out.push(RunStep {
                    file: path.file_name().unwrap().to_string_lossy().into_owned(),
                    name: step["name"].as_str().unwrap_or(script).to_owned(),
                    script: script.to_owned(),
                    pipefail: shell.as_deref() == Some("bash"),
                });
            }
        }
    }
    out
}

/// Every `run:` step that calls a rail tool, run as GitHub runs it, with the tools replaced by stand-ins
/// that fail with exit 4 (rolled back): the step must fail too, or the next step would act on a deploy
/// that did not happen.
#[test]
fn a_failing_tool_fails_its_workflow_step() {
    use std::os::unix::fs::PermissionsExt;
    let root = project_root();
    let tmp = std::env::temp_dir().join(format!("rail-workflow-{}", std::process::id()));
    let bin = tmp.join("bin");
    fs::create_dir_all(&bin).unwrap();
    for tool in ["deploy", "rollback", "healthcheck", "schemaver"] {
        let path = bin.join(tool);
        fs::write(&path, "#!/bin/sh\necho '{\"outcome\":\"rolled back\"}'\nexit 4\n").unwrap();
        fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let steps = workflow_run_steps(&root);
    let tool_steps: Vec<&RunStep> = steps
        .iter()
        .filter(|s| {
            s.script
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                .any(|w| ["deploy", "rollback", "healthcheck", "schemaver"].contains(&w))
                // Tools run by cargo, or inside a container, are not the step's own commands.
                && !s.script.contains("cargo ")
                && !s.script.contains("docker ")
        })
        .collect();
    assert!(tool_steps.len() >= 4, "found {} steps calling the tools", tool_steps.len());
    let mut survived = Vec::new();
    for step in tool_steps {
        // `${{ … }}` expressions are GitHub's, filled before the shell sees the script.
        let mut script = step.script.clone();
        while let Some(start) = script.find("${{") {
            let end = script[start..].find("}}").map_or(script.len(), |e| start + e + 2);
            script.replace_range(start..end, "x");
        }
        let mut bash = crate::util::command("bash");
        if step.pipefail {
            bash.args(["--noprofile", "--norc", "-eo", "pipefail", "-c"]);
        } else {
            bash.args(["-e", "-c"]);
        }
        let status = bash
            .arg(&script)
            .current_dir(&tmp)
            .env("PATH", &path)
            .env("GITHUB_STEP_SUMMARY", tmp.join("summary.md"))
            .env("GITHUB_OUTPUT", tmp.join("output"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        if status.code() != Some(4) {
            survived.push(format!("{}: `{}` exited {:?}", step.file, step.name, status.code()));
        }
    }
    let _ = fs::remove_dir_all(&tmp);
    assert!(survived.is_empty(), "steps that hide a tool's failure:\n{}", survived.join("\n"));
}

/// The licences the manifests name are in the repository (and so in the release tarball), and no
/// manifest points at a placeholder address.
#[test]
fn the_licence_files_match_the_manifests() {
    let root = project_root();
    let workspace: toml::Table =
        toml::from_str(&fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    let package = &workspace["workspace"]["package"];
    assert_eq!(package["license"].as_str(), Some("MIT OR Apache-2.0"));
    let mit = fs::read_to_string(root.join("LICENSE-MIT")).unwrap();
    assert!(
        mit.starts_with("MIT License") && mit.contains("Permission is hereby granted"),
        "LICENSE-MIT"
    );
    let apache = fs::read_to_string(root.join("LICENSE-APACHE")).unwrap();
    assert!(
        apache.contains("Apache License") && apache.contains("Version 2.0, January 2004"),
        "LICENSE-APACHE"
    );
    let mut manifests = manifests(&root);
    manifests.push(root.join("Cargo.toml"));
    for path in manifests {
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("example.invalid"),
            "{} names a placeholder address",
            path.display()
        );
    }
}
