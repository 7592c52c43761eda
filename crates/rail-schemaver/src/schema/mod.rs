//! Reading schemas: SDL or introspection JSON, from bytes with a size limit, into the diff model.

pub mod introspection;
pub mod model;
pub mod print;
pub mod sdl;
pub mod value;

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
    /// Problems that did not stop the read (duplicate definitions, skipped unknown kinds).
    pub warnings: Vec<String>,
}

/// Read a schema from bytes. JSON is recognised by its first character (`{`), so a `.graphql` file
/// holding introspection JSON works too.
pub fn load(bytes: &[u8], name: &str) -> Result<Loaded, SchemaError> {
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
        return Ok(Loaded {
            model: converted.schema,
            sdl: printed.sdl,
            from_introspection: true,
            warnings,
        });
    }
    let parsed = sdl::parse(text, name)
        .map_err(|errors| SchemaError::Syntax { name: name.to_owned(), errors })?;
    Ok(Loaded {
        model: sdl::to_model(&parsed.schema),
        sdl: text.to_owned(),
        from_introspection: false,
        warnings: parsed.build_errors,
    })
}

/// Parse and fully validate SDL, returning every problem (syntax, build and validation errors).
pub fn validate_sdl(text: &str, name: &str) -> Vec<String> {
    match sdl::parse(text, name) {
        Err(errors) => errors,
        Ok(parsed) => {
            let mut problems = parsed.build_errors;
            problems.extend(sdl::validate(parsed.schema));
            problems
        }
    }
}
