//! Client operations: read from `.graphql` files, from GraphQL documents embedded in
//! JavaScript/TypeScript and Python sources, and from persisted-query JSON maps, so `check` and
//! `compare` can tell which operations a schema change breaks.
//!
//! [`Catalog::read`] walks the given files and folders, finds the documents ([`extract`]), parses them
//! (syntax only: each is validated later against each schema) and indexes operations and fragments by
//! name, so a fragment defined in one file resolves for an operation in another. Every limit below is
//! checked before the work it bounds, so a hostile folder or document ends in a clear error naming the
//! file rather than in unbounded time or memory.

pub mod check;
pub mod extract;
mod usage;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apollo_compiler::ast::{self, Definition, Selection};
use apollo_compiler::collections::IndexMap;
use apollo_compiler::diagnostic::Diagnostic;
use apollo_compiler::parser::{FileId, Parser, SourceFile, SourceMap};
use apollo_compiler::{Name, Node};

pub use check::{check, Problem, Status, Verdict};
pub use usage::Uses;

/// Files read from `--operations` folders and files, at most. A client repository has hundreds to a
/// few thousand; a folder with more is almost certainly the wrong one (a home directory, a
/// `node_modules`).
pub const MAX_OPERATION_FILES: usize = 50_000;
/// Bytes of one operation file, at most: a bundled JavaScript file is a few MB.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Bytes of all operation files together, at most.
pub const MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;
/// How deep selections (and values) may nest in a document. Real operations nest ten to twenty
/// levels; the parser stops here instead of recursing without bound.
pub const MAX_DEPTH: usize = 128;
/// Tokens of one document, at most (the largest real operations have a few thousand).
pub const MAX_DOCUMENT_TOKENS: usize = 500_000;
/// Operations and fragments in all, at most. Each operation is validated twice; a large client has
/// a few thousand.
pub const MAX_DEFINITIONS: usize = 100_000;

/// Folders never entered while walking: dependencies and version control, not the client's code.
const SKIPPED_DIRS: [&str; 3] = ["node_modules", "__pycache__", "site-packages"];

/// Why operations could not be read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum OperationsError {
    #[error(
        "{path}: more than {MAX_OPERATION_FILES} operation files; point --operations at the client's \
         source folder"
    )]
    TooManyFiles { path: String },
    #[error("{path} is larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024))]
    TooLarge { path: String },
    #[error(
        "the operation files add up to more than {} MiB (at {path})",
        MAX_TOTAL_BYTES / (1024 * 1024)
    )]
    TooMuch { path: String },
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { path: String, offset: usize },
    #[error(
        "{path}: not a file of operations (expected .graphql, .gql, .js, .jsx, .mjs, .cjs, .ts, .tsx, \
         .mts, .cts, .py, or a persisted-query .json map)"
    )]
    UnknownKind { path: String },
    #[error("{path}: {source}")]
    Extract {
        path: String,
        #[source]
        source: extract::ExtractError,
    },
    #[error("{path}: not a persisted-query map: {source}")]
    NotAMap {
        path: String,
        #[source]
        source: extract::ExtractError,
    },
    #[error("{path}:{line}: invalid GraphQL: {message}")]
    Syntax { path: String, line: usize, message: String },
    #[error("fragment cycle: {chain}")]
    FragmentCycle { chain: String },
    #[error("{path}: more than {MAX_DEFINITIONS} operations and fragments in all")]
    TooManyDefinitions { path: String },
}

/// What kind of file holds operations, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Graphql,
    Script,
    Python,
    PersistedMap,
}

fn kind_of(path: &Path) -> Option<Kind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "graphql" | "gql" | "graphqls" => Kind::Graphql,
        "js" | "jsx" | "mjs" | "cjs" | "ts" | "tsx" | "mts" | "cts" => Kind::Script,
        "py" => Kind::Python,
        "json" => Kind::PersistedMap,
        _ => return None,
    })
}

/// Where an operation or fragment is: its file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    pub file: Arc<str>,
    pub line: usize,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One operation of a client.
#[derive(Debug, Clone)]
pub struct Operation {
    pub name: Option<Name>,
    pub kind: ast::OperationType,
    pub place: Place,
    def: Node<ast::OperationDefinition>,
    file_id: FileId,
}

impl Operation {
    /// The name to show: the operation's, or `(anonymous query)`.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.to_string(),
            None => format!("(anonymous {})", self.kind.name()),
        }
    }
}

#[derive(Debug, Clone)]
struct Fragment {
    def: Node<ast::FragmentDefinition>,
    place: Place,
    file_id: FileId,
}

/// How the lines of a parsed document map to lines of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lines {
    /// Line `n` of the document is line `n + offset` of the file (a document embedded in a source).
    Offset(usize),
    /// Every position is this line (a persisted-query document, one JSON string).
    Fixed(usize),
}

impl Lines {
    fn map(self, line: usize) -> usize {
        match self {
            Lines::Offset(offset) => line + offset,
            Lines::Fixed(line) => line,
        }
    }
}

/// Where each parsed source came from.
#[derive(Debug, Clone)]
struct SourceInfo {
    file: Arc<str>,
    lines: Lines,
    source: Arc<SourceFile>,
}

/// Every operation and fragment read, with where each came from.
#[derive(Debug, Default)]
pub struct Catalog {
    pub operations: Vec<Operation>,
    fragments: HashMap<Name, Fragment>,
    sources: HashMap<FileId, SourceInfo>,
    /// Documents that held no operation or fragment are not errors; these say what was skipped.
    pub warnings: Vec<String>,
    /// How many files were read.
    pub files: usize,
}

impl Catalog {
    /// Read operations from files and folders (walked recursively, skipping hidden folders and
    /// dependencies). A named file of an unknown kind is an error; in a folder it is skipped, and so is
    /// a `.json` file that is not a persisted-query map.
    pub fn read(paths: &[PathBuf]) -> Result<Catalog, OperationsError> {
        let files = list_files(paths)?;
        let mut catalog = Catalog { files: files.len(), ..Catalog::default() };
        let mut total: u64 = 0;
        for (path, kind, named) in files {
            let name = path.display().to_string();
            let meta = fs_err::metadata(&path)
                .map_err(|source| OperationsError::Read { path: name.clone(), source })?;
            if meta.len() > MAX_FILE_BYTES {
                return Err(OperationsError::TooLarge { path: name });
            }
            total += meta.len();
            if total > MAX_TOTAL_BYTES {
                return Err(OperationsError::TooMuch { path: name });
            }
            let bytes = fs_err::read(&path)
                .map_err(|source| OperationsError::Read { path: name.clone(), source })?;
            // A file that grew between the two looks.
            if bytes.len() as u64 > MAX_FILE_BYTES {
                return Err(OperationsError::TooLarge { path: name });
            }
            let text = String::from_utf8(bytes).map_err(|e| OperationsError::NotUtf8 {
                path: name.clone(),
                offset: e.utf8_error().valid_up_to(),
            })?;
            catalog.add_file(&name, kind, named, text)?;
        }
        catalog.check_fragment_cycles()?;
        catalog.operations.sort_by(|a, b| a.place.cmp(&b.place));
        Ok(catalog)
    }

    fn add_file(
        &mut self,
        name: &str,
        kind: Kind,
        named: bool,
        text: String,
    ) -> Result<(), OperationsError> {
        let file: Arc<str> = Arc::from(name);
        let extract_err = |source| OperationsError::Extract { path: name.to_owned(), source };
        match kind {
            Kind::Graphql => self.add_document(&file, text, Lines::Offset(0)),
            Kind::Script => {
                for doc in extract::javascript(&text).map_err(extract_err)? {
                    self.add_document(&file, doc.text, Lines::Offset(doc.line - 1))?;
                }
                Ok(())
            }
            Kind::Python => {
                for doc in extract::python(&text) {
                    self.add_document(&file, doc.text, Lines::Offset(doc.line - 1))?;
                }
                Ok(())
            }
            Kind::PersistedMap => match extract::persisted_map(&text) {
                Ok(entries) => {
                    for entry in entries {
                        self.add_document(&file, entry.text, Lines::Fixed(entry.line))?;
                    }
                    Ok(())
                }
                Err(source) if named => {
                    Err(OperationsError::NotAMap { path: name.to_owned(), source })
                }
                Err(_) => {
                    self.warnings.push(format!("{name}: skipped, not a persisted-query map"));
                    Ok(())
                }
            },
        }
    }

    fn add_document(
        &mut self,
        file: &Arc<str>,
        text: String,
        lines: Lines,
    ) -> Result<(), OperationsError> {
        let parsed = Parser::new()
            .recursion_limit(MAX_DEPTH)
            .token_limit(MAX_DOCUMENT_TOKENS)
            .parse_ast(text, &**file);
        let document = match parsed {
            Ok(d) => d,
            Err(with_errors) => {
                let first = with_errors.errors.iter().next();
                let line = lines.map(
                    first
                        .as_ref()
                        .and_then(Diagnostic::line_column_range)
                        .map_or(1, |r| r.start.line),
                );
                let message = with_errors
                    .errors
                    .iter()
                    .take(3)
                    .map(|d| d.error.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(OperationsError::Syntax { path: file.to_string(), line, message });
            }
        };
        let Some((&file_id, source)) = document.sources.iter().next() else {
            return Ok(());
        };
        self.sources
            .insert(file_id, SourceInfo { file: file.clone(), lines, source: source.clone() });
        if self.operations.len() + self.fragments.len() + document.definitions.len()
            > MAX_DEFINITIONS
        {
            return Err(OperationsError::TooManyDefinitions { path: file.to_string() });
        }
        let mut other = 0;
        for def in &document.definitions {
            match def {
                Definition::OperationDefinition(op) => {
                    let place = self.place(op.location(), file_id);
                    self.operations.push(Operation {
                        name: op.name.clone(),
                        kind: op.operation_type,
                        place,
                        def: op.clone(),
                        file_id,
                    });
                }
                Definition::FragmentDefinition(f) => {
                    let place = self.place(f.location(), file_id);
                    match self.fragments.get(&f.name) {
                        Some(first) if first.def != *f => self.warnings.push(format!(
                            "fragment {} is defined at {} and at {place}; the first is used",
                            f.name, first.place
                        )),
                        Some(_) => {}
                        None => {
                            self.fragments.insert(
                                f.name.clone(),
                                Fragment { def: f.clone(), place, file_id },
                            );
                        }
                    }
                }
                _ => other += 1,
            }
        }
        if other > 0 {
            self.warnings.push(format!(
                "{file}: {other} type system definition(s) ignored; only operations and fragments are read"
            ));
        }
        Ok(())
    }

    fn place(
        &self,
        location: Option<apollo_compiler::parser::SourceSpan>,
        file_id: FileId,
    ) -> Place {
        let info = &self.sources[&file_id];
        let line =
            location.and_then(|l| info.source.get_line_column(l.offset())).map_or(1, |lc| lc.line);
        Place { file: info.file.clone(), line: info.lines.map(line) }
    }

    /// Where a diagnostic's position is, when it lies in an operation file.
    fn place_of_span(&self, span: Option<apollo_compiler::parser::SourceSpan>) -> Option<Place> {
        let span = span?;
        let info = self.sources.get(&span.file_id())?;
        let line = info.source.get_line_column(span.offset())?.line;
        Some(Place { file: info.file.clone(), line: info.lines.map(line) })
    }

    /// Fragments spread directly in a selection set (fragments included in inline fragments and
    /// fields, at any depth).
    fn spreads(selections: &[Selection], out: &mut Vec<Name>) {
        for s in selections {
            match s {
                Selection::Field(f) => Self::spreads(&f.selection_set, out),
                Selection::InlineFragment(i) => Self::spreads(&i.selection_set, out),
                Selection::FragmentSpread(s) => out.push(s.fragment_name.clone()),
            }
        }
    }

    /// A fragment that spreads itself, directly or through others, makes every document using it
    /// invalid; it is an error naming the chain, found without recursion however long the chain.
    fn check_fragment_cycles(&self) -> Result<(), OperationsError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Open,
            Done,
        }
        let mut direct: HashMap<&Name, Vec<Name>> = HashMap::with_capacity(self.fragments.len());
        for (name, f) in &self.fragments {
            let mut out = Vec::new();
            Self::spreads(&f.def.selection_set, &mut out);
            direct.insert(name, out);
        }
        let mut marks: HashMap<&Name, Mark> = HashMap::new();
        let mut names: Vec<&Name> = self.fragments.keys().collect();
        names.sort();
        for root in names {
            if marks.contains_key(root) {
                continue;
            }
            // (fragment, index of the next spread to follow)
            let mut stack: Vec<(&Name, usize)> = vec![(root, 0)];
            marks.insert(root, Mark::Open);
            while let Some((name, next)) = stack.last_mut() {
                let spreads = &direct[*name];
                if let Some(target) = spreads.get(*next) {
                    *next += 1;
                    let Some((target, _)) = self.fragments.get_key_value(target) else {
                        continue;
                    };
                    match marks.get(target) {
                        Some(Mark::Done) => {}
                        Some(Mark::Open) => {
                            let at = stack.iter().position(|(n, _)| *n == target).unwrap_or(0);
                            let chain: Vec<String> = stack[at..]
                                .iter()
                                .map(|(n, _)| format!("{n} ({})", self.fragments[*n].place))
                                .chain(std::iter::once(target.to_string()))
                                .collect();
                            return Err(OperationsError::FragmentCycle {
                                chain: chain.join(" → "),
                            });
                        }
                        None => {
                            marks.insert(target, Mark::Open);
                            stack.push((target, 0));
                        }
                    }
                } else {
                    marks.insert(name, Mark::Done);
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    /// The document to validate one operation with: the operation and every fragment it uses,
    /// transitively, from whichever files define them.
    fn document_for(&self, op: &Operation) -> ast::Document {
        let mut sources: IndexMap<FileId, Arc<SourceFile>> = IndexMap::default();
        sources.insert(op.file_id, self.sources[&op.file_id].source.clone());
        let mut definitions = vec![Definition::OperationDefinition(op.def.clone())];
        let mut queue = Vec::new();
        Self::spreads(&op.def.selection_set, &mut queue);
        let mut seen: HashSet<Name> = HashSet::new();
        while let Some(name) = queue.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(f) = self.fragments.get(&name) {
                sources.entry(f.file_id).or_insert_with(|| self.sources[&f.file_id].source.clone());
                definitions.push(Definition::FragmentDefinition(f.def.clone()));
                Self::spreads(&f.def.selection_set, &mut queue);
            }
        }
        let sources: SourceMap = Arc::new(sources);
        let mut document = ast::Document::new();
        document.sources = sources;
        document.definitions = definitions;
        document
    }
}

/// The files to read: named files as they are, folders walked (sorted, so reports are stable),
/// with whether each was named.
fn list_files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Kind, bool)>, OperationsError> {
    let mut files = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        let meta = fs_err::metadata(path)
            .map_err(|source| OperationsError::Read { path: name.clone(), source })?;
        if meta.is_dir() {
            walk(path, &mut files)?;
        } else {
            let kind = kind_of(path).ok_or(OperationsError::UnknownKind { path: name.clone() })?;
            files.push((path.clone(), kind, true));
        }
        if files.len() > MAX_OPERATION_FILES {
            return Err(OperationsError::TooManyFiles { path: name });
        }
    }
    // A file named twice, or named and inside a named folder, is read once.
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|a, b| a.0 == b.0);
    Ok(files)
}

/// Walk a folder without recursion (a deep tree cannot exhaust the stack) and without following
/// symbolic links (a link cannot make it loop), stopping as soon as there are too many files.
fn walk(root: &Path, files: &mut Vec<(PathBuf, Kind, bool)>) -> Result<(), OperationsError> {
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let read = |source| OperationsError::Read { path: dir.display().to_string(), source };
        let mut entries: Vec<(PathBuf, std::fs::FileType)> = Vec::new();
        for entry in fs_err::read_dir(&dir).map_err(read)? {
            let entry = entry.map_err(read)?;
            let ty = entry.file_type().map_err(read)?;
            entries.push((entry.path(), ty));
        }
        entries.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, ty) in entries {
            let hidden =
                path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
            if ty.is_dir() {
                let skipped = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| SKIPPED_DIRS.contains(&n));
                if !hidden && !skipped {
                    dirs.push(path);
                }
            } else if ty.is_file() && !hidden {
                if let Some(kind) = kind_of(&path) {
                    files.push((path, kind, false));
                    if files.len() > MAX_OPERATION_FILES {
                        return Err(OperationsError::TooManyFiles {
                            path: root.display().to_string(),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}
