//! Reading schemas: SDL or introspection JSON, from bytes with a size limit, into the diff model.

pub mod introspection;
pub mod model;
pub mod print;
pub mod sdl;
pub mod value;

use apollo_compiler::validation::Valid;
pub use model::Schema;

/// The largest schema accepted, SDL or JSON. The largest public schemas (GitHub, Shopify Admin) are
/// 1 to 3 MB; anything this big is a mistake or hostile, and refusing it keeps memory bounded.
pub const MAX_SCHEMA_BYTES: usize = 16 * 1024 * 1024;

/// Why a schema could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{name} is larger than {} MiB", MAX_SCHEMA_BYTES / (1024 * 1024))]
    TooLarge { name: String },
    #[error("{name} is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { name: String, offset: usize },
    #[error("{name} is empty")]
    Empty { name: String },
    #[error("{name} is not valid GraphQL SDL:\n  {}", .errors.join("\n  "))]
    Syntax { name: String, errors: Vec<String> },
    #[error("{name}: {source}")]
    Introspection {
        name: String,
        #[source]
        source: introspection::IntrospectionError,
    },
}

/// A schema read from SDL or introspection JSON.
pub struct Loaded {
    pub model: Schema,
    /// The SDL to store: the text itself, or the introspection result printed as SDL.
    pub sdl: String,
    /// Whether the input was introspection JSON.
    pub from_introspection: bool,
    /// What the introspection reader skipped or kept without understanding (unknown kinds or
    /// locations); empty for SDL.
    pub warnings: Vec<String>,
    /// Why the schema is not a valid GraphQL schema: duplicate definitions, unknown types, missing
    /// interface fields… Each names the element, with `line:column` in SDL. Empty when valid.
    pub problems: Vec<String>,
    /// The schema as apollo-compiler built it, to validate operations and find definitions' lines.
    /// When `problems` is not empty this is the part that could be built, assumed valid.
    pub compiled: Valid<apollo_compiler::Schema>,
}

impl Loaded {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Read a schema from bytes and validate it. JSON is recognised by its first character (`{`), so a
/// `.graphql` file holding introspection JSON works too.
pub fn load(bytes: &[u8], name: &str) -> Result<Loaded, SchemaError> {
    Ok(read(bytes, name)?.validate())
}

/// A schema read into the model but not validated yet, so a diff can start while validation runs.
pub struct Unvalidated {
    pub read: Read,
    pub pending: Pending,
}

/// What reading a schema gives before validation.
pub struct Read {
    pub model: Schema,
    pub sdl: String,
    pub from_introspection: bool,
    pub warnings: Vec<String>,
}

/// The validation still to do.
pub struct Pending {
    parsed: Result<sdl::ParsedSdl, Vec<String>>,
    /// Whether problems keep their `line:column` (SDL) or not (SDL printed from introspection).
    positions: bool,
}

impl Pending {
    /// The schema apollo-compiler built (assumed valid when it is not) and every problem.
    pub fn validate(self) -> (Valid<apollo_compiler::Schema>, Vec<String>) {
        match self.parsed {
            Ok(parsed) => sdl::validate(parsed, self.positions),
            Err(errors) => {
                let problems = errors.iter().map(|e| strip_position(e).to_owned()).collect();
                (Valid::assume_valid(apollo_compiler::Schema::new()), problems)
            }
        }
    }
}

impl Unvalidated {
    pub fn validate(self) -> Loaded {
        let (compiled, problems) = self.pending.validate();
        self.read.with(compiled, problems)
    }
}

impl Read {
    /// The loaded schema, given what [`Pending::validate`] returned.
    pub fn with(self, compiled: Valid<apollo_compiler::Schema>, problems: Vec<String>) -> Loaded {
        Loaded {
            model: self.model,
            sdl: self.sdl,
            from_introspection: self.from_introspection,
            warnings: self.warnings,
            problems,
            compiled,
        }
    }
}

/// Read a schema from bytes into the model, leaving validation for later. Syntax errors, size and
/// encoding problems are errors here.
pub fn read(bytes: &[u8], name: &str) -> Result<Unvalidated, SchemaError> {
    if bytes.len() > MAX_SCHEMA_BYTES {
        return Err(SchemaError::TooLarge { name: name.to_owned() });
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| SchemaError::NotUtf8 { name: name.to_owned(), offset: e.valid_up_to() })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(SchemaError::Empty { name: name.to_owned() });
    }
    if trimmed.starts_with('{') {
        let converted = introspection::from_json(trimmed.as_bytes())
            .map_err(|source| SchemaError::Introspection { name: name.to_owned(), source })?;
        let printed = print::print_schema(&converted.schema);
        let mut warnings = converted.warnings;
        warnings.extend(printed.warnings);
        // The printed SDL is built and validated like a file, so an introspection result with an
        // unknown type or a missing interface field is as invalid as the same SDL. Its problems carry
        // no line: the lines would be those of SDL nobody has seen.
        let parsed = sdl::parse(&printed.sdl, name);
        return Ok(Unvalidated {
            read: Read {
                model: converted.schema,
                sdl: printed.sdl,
                from_introspection: true,
                warnings,
            },
            pending: Pending { parsed, positions: false },
        });
    }
    let parsed = sdl::parse(text, name)
        .map_err(|errors| SchemaError::Syntax { name: name.to_owned(), errors })?;
    Ok(Unvalidated {
        read: Read {
            model: sdl::to_model(&parsed.schema),
            sdl: text.to_owned(),
            from_introspection: false,
            warnings: Vec::new(),
        },
        pending: Pending { parsed: Ok(parsed), positions: true },
    })
}

/// `12:5: message` without its `12:5: `.
fn strip_position(problem: &str) -> &str {
    problem
        .split_once(": ")
        .filter(|(at, _)| at.bytes().all(|b| b.is_ascii_digit() || b == b':') && !at.is_empty())
        .map_or(problem, |(_, rest)| rest)
}

/// Parse and fully validate SDL, returning every problem (syntax, build and validation errors).
pub fn validate_sdl(text: &str, name: &str) -> Vec<String> {
    match sdl::parse(text, name) {
        Err(errors) => errors,
        Ok(parsed) => sdl::validate(parsed, true).1,
    }
}
