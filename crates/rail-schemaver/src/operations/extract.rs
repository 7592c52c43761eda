//! Finding GraphQL documents inside JavaScript/TypeScript and Python sources, and in persisted-query
//! JSON maps.
//!
//! Each language gets a small lexer that knows its strings, comments and template literals, so a
//! backtick inside a string, a `gql` inside a comment or a `"""` inside a `'…'` string is never taken
//! for a document. The lexers are forgiving: anything they do not understand (JSX text, a regular
//! expression they misread) ends at the end of its line, and the scan goes on.
//!
//! A found document keeps its place: it carries the line it starts on, its text starts with as many
//! spaces as precede it on that line, and interpolations and escapes are replaced by spaces (keeping
//! line breaks), so a line the parser reports plus the starting line is the line in the source file.

use std::ops::Range;

/// A GraphQL document found inside a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    /// The document, its first line padded with spaces to its column in the source file.
    pub text: String,
    /// The 1-based line of the source file where the document starts: line `n` of the text is line
    /// `line + n - 1` of the file.
    pub line: usize,
}

/// Why a source file could not be scanned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error(
        "template literals nested more than {MAX_TEMPLATE_NESTING} levels deep at line {line}"
    )]
    TooDeep { line: usize },
    #[error("line {line}: {message}")]
    NotAMap { line: usize, message: String },
}

/// Template literals inside `${…}` inside template literals nest at most this deep; real code nests
/// two or three levels, and the limit keeps the scanner's stack small whatever the input.
pub const MAX_TEMPLATE_NESTING: usize = 64;

/// Where each line of a source starts, to turn offsets into lines in logarithmic time: a file may
/// hold many thousands of documents.
struct Lines(Vec<usize>);

impl Lines {
    fn new(source: &str) -> Lines {
        let starts = std::iter::once(0).chain(source.match_indices('\n').map(|(i, _)| i + 1));
        Lines(starts.collect())
    }

    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }

    /// Byte offset where the line holding `offset` starts.
    fn start(&self, offset: usize) -> usize {
        self.0[self.line(offset) - 1]
    }
}

/// A document at `range` of `source`, with the bytes in `masks` blanked out (line breaks kept), its
/// first line padded to its column.
fn embed(source: &str, lines: &Lines, range: Range<usize>, masks: &[Range<usize>]) -> Embedded {
    let line_start = lines.start(range.start);
    let line = lines.line(range.start);
    let mut text = String::with_capacity((range.start - line_start) + range.len());
    text.extend(std::iter::repeat_n(' ', source[line_start..range.start].chars().count()));
    let mut at = range.start;
    for mask in masks.iter().filter(|m| m.start >= range.start && m.end <= range.end) {
        if mask.start < at {
            continue;
        }
        text.push_str(&source[at..mask.start]);
        for c in source[mask.clone()].chars() {
            text.push(if c == '\n' { '\n' } else { ' ' });
        }
        at = mask.end;
    }
    text.push_str(&source[at..range.end]);
    Embedded { text, line }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

/// Length in bytes of the UTF-8 character starting with `b`.
fn char_len(b: u8) -> usize {
    match b {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

/// The previous significant JavaScript token, which decides whether `/` starts a regular expression
/// and whether a template literal is tagged with `gql`/`graphql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prev {
    /// Start of input, or an operator or opening punctuation: `/` starts a regular expression.
    Operator,
    /// A value (number, string, `)`, `]`, `}`): `/` divides.
    Value,
    /// An identifier or keyword, as a range of the source.
    Word(usize, usize),
    /// `(` right after `gql` or `graphql`: `gql(`…`)` is as good as a tag.
    TagCall,
}

/// Keywords after which `/` starts a regular expression.
const REGEX_KEYWORDS: [&str; 13] = [
    "return",
    "typeof",
    "case",
    "do",
    "else",
    "in",
    "of",
    "new",
    "delete",
    "void",
    "throw",
    "instanceof",
    "yield",
];

const TAGS: [&str; 2] = ["gql", "graphql"];

/// One template literal being read.
struct Template {
    /// Where its text starts (after the backtick), when it is a GraphQL document.
    capture: Option<usize>,
    /// Interpolations and escapes inside it, blanked out in the document.
    masks: Vec<Range<usize>>,
}

enum Frame {
    /// Code; `braces` counts the `{` opened in this frame, so the `}` closing an interpolation is
    /// told from one closing a block.
    Code {
        braces: usize,
        interpolation_start: usize,
    },
    Template(Template),
}

/// GraphQL documents in JavaScript or TypeScript (JSX included): template literals tagged `gql` or
/// `graphql` (also called as `gql(`…`)`) or preceded by a `/* GraphQL */` comment.
pub fn javascript(source: &str) -> Result<Vec<Embedded>, ExtractError> {
    let b = source.as_bytes();
    let lines = Lines::new(source);
    let mut found = Vec::new();
    let mut stack: Vec<Frame> = vec![Frame::Code { braces: 0, interpolation_start: 0 }];
    let mut prev = Prev::Operator;
    let mut magic_comment = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if let Some(Frame::Template(t)) = stack.last_mut() {
            match c {
                b'\\' => {
                    let end = (i + 1 + b.get(i + 1).map_or(0, |&n| char_len(n))).min(b.len());
                    t.masks.push(i..end);
                    i = end;
                }
                b'`' => {
                    let Some(Frame::Template(t)) = stack.pop() else { unreachable!() };
                    if let Some(start) = t.capture {
                        found.push(embed(source, &lines, start..i, &t.masks));
                    }
                    prev = Prev::Value;
                    i += 1;
                }
                b'$' if b.get(i + 1) == Some(&b'{') => {
                    if stack.len() > 2 * MAX_TEMPLATE_NESTING {
                        return Err(ExtractError::TooDeep { line: lines.line(i) });
                    }
                    stack.push(Frame::Code { braces: 0, interpolation_start: i });
                    prev = Prev::Operator;
                    i += 2;
                }
                _ => i += 1,
            }
            continue;
        }
        let nested = stack.len() > 1;
        let Some(Frame::Code { braces, interpolation_start }) = stack.last_mut() else {
            unreachable!("the top frame is code here")
        };
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = source[i..].find('\n').map_or(b.len(), |n| i + n);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // An unclosed comment runs to the end of the file.
                let (body_end, end) = source[i + 2..]
                    .find("*/")
                    .map_or((b.len(), b.len()), |n| (i + 2 + n, i + 4 + n));
                let body = source[i + 2..body_end].trim();
                magic_comment = body.eq_ignore_ascii_case("graphql");
                i = end;
                continue;
            }
            b'/' => {
                let regex = match prev {
                    Prev::Operator | Prev::TagCall => true,
                    Prev::Value => false,
                    Prev::Word(start, end) => REGEX_KEYWORDS.contains(&&source[start..end]),
                };
                i = if regex { skip_regex(b, i) } else { i + 1 };
                prev = if regex { Prev::Value } else { Prev::Operator };
            }
            b'\'' | b'"' => {
                i = skip_quoted(b, i, c);
                prev = Prev::Value;
            }
            b'`' => {
                let tagged = match prev {
                    Prev::Word(start, end) => TAGS.contains(&&source[start..end]),
                    Prev::TagCall => true,
                    _ => false,
                };
                let capture = (tagged || magic_comment).then_some(i + 1);
                if nested && stack.len() > 2 * MAX_TEMPLATE_NESTING {
                    return Err(ExtractError::TooDeep { line: lines.line(i) });
                }
                stack.push(Frame::Template(Template { capture, masks: Vec::new() }));
                i += 1;
            }
            b'{' => {
                *braces += 1;
                prev = Prev::Operator;
                i += 1;
            }
            b'}' if *braces == 0 && nested => {
                // The end of an interpolation: blank it out of the template that holds it.
                let start = *interpolation_start;
                stack.pop();
                if let Some(Frame::Template(t)) = stack.last_mut() {
                    t.masks.push(start..i + 1);
                }
                i += 1;
            }
            b'}' => {
                *braces = braces.saturating_sub(1);
                prev = Prev::Value;
                i += 1;
            }
            b'(' => {
                prev = match prev {
                    Prev::Word(start, end) if TAGS.contains(&&source[start..end]) => Prev::TagCall,
                    _ => Prev::Operator,
                };
                i += 1;
            }
            b')' | b']' => {
                prev = Prev::Value;
                i += 1;
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < b.len() && is_ident_char(b[i]) {
                    i += 1;
                }
                prev = Prev::Word(start, i);
            }
            c if c.is_ascii_digit() => {
                while i < b.len() && (is_ident_char(b[i]) || b[i] == b'.') {
                    i += 1;
                }
                prev = Prev::Value;
            }
            _ => {
                prev = Prev::Operator;
                i += 1;
            }
        }
        // A `/* GraphQL */` comment marks only the token right after it.
        if !matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            magic_comment = false;
        }
    }
    Ok(found)
}

/// Skip a `'…'` or `"…"` string; one left open ends at the end of its line (JSX text such as
/// `<p>Don't</p>` has lone quotes).
fn skip_quoted(b: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'\n' => return i,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Skip a regular expression literal; `/` inside a class (`[/]`) does not end it. One that does not
/// end on its line was not a regular expression: only the slash is skipped.
fn skip_regex(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    let mut class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'\n' => return start + 1,
            b'[' => {
                class = true;
                i += 1;
            }
            b']' => {
                class = false;
                i += 1;
            }
            b'/' if !class => {
                i += 1;
                while i < b.len() && is_ident_char(b[i]) {
                    i += 1;
                }
                return i;
            }
            _ => i += 1,
        }
    }
    start + 1
}

/// Whether text starts like a GraphQL executable document: `{`, `query`/`mutation`/`subscription`
/// followed by a name, `(`, `@` or `{`, or `fragment Name on`. Python docstrings and SQL do not.
pub fn looks_like_graphql(text: &str) -> bool {
    let mut rest = text.trim_start();
    while let Some(comment) = rest.strip_prefix('#') {
        rest = comment.find('\n').map_or("", |n| &comment[n..]).trim_start();
    }
    if rest.starts_with('{') {
        return true;
    }
    let word = |s: &str| -> (String, usize) {
        let len = s.bytes().take_while(|&b| b.is_ascii_alphanumeric() || b == b'_').count();
        (s[..len].to_owned(), len)
    };
    let (first, len) = word(rest);
    let after = rest[len..].trim_start();
    match first.as_str() {
        "query" | "mutation" | "subscription" => {
            if after.starts_with(['{', '(', '@']) {
                return true;
            }
            let (name, len) = word(after);
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && after[len..].trim_start().starts_with(['{', '(', '@'])
        }
        "fragment" => {
            let (name, len) = word(after);
            !name.is_empty() && word(after[len..].trim_start()).0 == "on"
        }
        _ => false,
    }
}

/// GraphQL documents in Python: triple-quoted strings (not bytes, not f-strings) whose text starts
/// like an operation or fragment.
pub fn python(source: &str) -> Vec<Embedded> {
    let b = source.as_bytes();
    let lines = Lines::new(source);
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'#' => i = source[i..].find('\n').map_or(b.len(), |n| i + n),
            b'\'' | b'"' => i = python_string(source, &lines, i, "", &mut found),
            c if is_ident_start(c) => {
                let start = i;
                while i < b.len() && is_ident_char(b[i]) {
                    i += 1;
                }
                let word = &source[start..i];
                let is_prefix = word.len() <= 2
                    && word
                        .chars()
                        .all(|c| matches!(c.to_ascii_lowercase(), 'r' | 'b' | 'u' | 'f'));
                if is_prefix && matches!(b.get(i), Some(b'\'' | b'"')) {
                    i = python_string(source, &lines, i, word, &mut found);
                }
            }
            _ => i += 1,
        }
    }
    found
}

/// Skip a Python string starting at its quote; keep it when it is a triple-quoted GraphQL document.
fn python_string(
    source: &str,
    lines: &Lines,
    start: usize,
    prefix: &str,
    found: &mut Vec<Embedded>,
) -> usize {
    let b = source.as_bytes();
    let quote = b[start];
    let raw = prefix.to_ascii_lowercase().contains('r');
    let triple = b.get(start + 1) == Some(&quote) && b.get(start + 2) == Some(&quote);
    if !triple {
        // A one-line string (`''` is an empty one): the same rules as JavaScript's quotes.
        return skip_quoted(b, start, quote);
    }
    let body = start + 3;
    let mut i = body;
    let mut masks = Vec::new();
    while i < b.len() {
        match b[i] {
            b'\\' => {
                // A backslash before a line break joins lines: blank it so the document keeps its
                // lines. Other escapes are GraphQL's too (`\n`, `\"`, `\u…`) and stay.
                if !raw && b.get(i + 1) == Some(&b'\n') {
                    masks.push(i..i + 1);
                }
                i += 2;
            }
            c if c == quote && b.get(i + 1) == Some(&quote) && b.get(i + 2) == Some(&quote) => {
                let lower = prefix.to_ascii_lowercase();
                if !lower.contains('b')
                    && !lower.contains('f')
                    && looks_like_graphql(&source[body..i])
                {
                    found.push(embed(source, lines, body..i, &masks));
                }
                return i + 3;
            }
            _ => i += 1,
        }
    }
    b.len()
}

/// One entry of a persisted-query map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persisted {
    /// The key (usually the document's hash).
    pub key: String,
    /// The document.
    pub text: String,
    /// The 1-based line of the key in the JSON file.
    pub line: usize,
}

/// The entries of a persisted-query map, `{"<hash>": "query …", …}`, each with the line of its key.
/// Anything else (an array, a value that is not a string) is an error saying where.
pub fn persisted_map(source: &str) -> Result<Vec<Persisted>, ExtractError> {
    let b = source.as_bytes();
    let lines = Lines::new(source);
    let not_a_map = |at: usize, message: &str| ExtractError::NotAMap {
        line: lines.line(at.min(b.len())),
        message: message.to_owned(),
    };
    let skip_ws = |mut i: usize| {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        i
    };
    // A JSON string from its opening quote: the decoded text and the offset after it.
    let string = |i: usize| -> Result<(String, usize), ExtractError> {
        if b.get(i) != Some(&b'"') {
            return Err(not_a_map(i, "expected a string"));
        }
        let mut j = i + 1;
        while j < b.len() && b[j] != b'"' {
            j += if b[j] == b'\\' { 2 } else { 1 };
        }
        if j >= b.len() {
            return Err(not_a_map(i, "unterminated string"));
        }
        let decoded: String = serde_json::from_str(&source[i..=j])
            .map_err(|e| not_a_map(i, &format!("invalid string: {e}")))?;
        Ok((decoded, j + 1))
    };
    let mut i = skip_ws(0);
    if b.get(i) != Some(&b'{') {
        return Err(not_a_map(
            i,
            "a persisted-query map is a JSON object of {\"hash\": \"query …\"}",
        ));
    }
    i = skip_ws(i + 1);
    let mut entries = Vec::new();
    if b.get(i) == Some(&b'}') {
        return Ok(entries);
    }
    loop {
        let key_at = i;
        let (key, next) = string(i)?;
        i = skip_ws(next);
        if b.get(i) != Some(&b':') {
            return Err(not_a_map(i, "expected `:`"));
        }
        i = skip_ws(i + 1);
        if b.get(i) != Some(&b'"') {
            return Err(not_a_map(i, &format!("the value of \"{key}\" is not a string")));
        }
        let (text, next) = string(i)?;
        entries.push(Persisted { key, text, line: lines.line(key_at) });
        i = skip_ws(next);
        match b.get(i) {
            Some(b',') => i = skip_ws(i + 1),
            Some(b'}') => break,
            _ => return Err(not_a_map(i, "expected `,` or `}`")),
        }
    }
    if skip_ws(i + 1) != b.len() {
        return Err(not_a_map(i + 1, "text after the JSON object"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(found: &[Embedded]) -> Vec<(usize, String)> {
        found.iter().map(|e| (e.line, e.text.trim().to_owned())).collect()
    }

    #[test]
    fn javascript_finds_tagged_templates_only() {
        let source = r#"// gql`query InComment { a }`
const s = "gql`query InString { a }`";
const t = 'it\'s `not` a doc';
const re = /`[/]`/g;
const Q = gql`
  query One($id: ID!) { node(id: $id) { ...F } }
  ${FRAGMENT}
`;
const x = a / b / c; const y = graphql(`{ two }`);
const plain = `query NotTagged { a }`;
const nested = gql`query Three { a(x: "${`inner ${deep} text`}") }`;
/* GraphQL */ `fragment Four on T { b }`
"#;
        let found = javascript(source).unwrap();
        assert_eq!(
            docs(&found),
            [
                (5, "query One($id: ID!) { node(id: $id) { ...F } }".to_owned()),
                (9, "{ two }".to_owned()),
                (
                    11,
                    format!(
                        "query Three {{ a(x: \"{}\") }}",
                        " ".repeat("${`inner ${deep} text`}".len())
                    )
                ),
                (12, "fragment Four on T { b }".to_owned()),
            ]
        );
        // Line n of a document is line `line + n - 1` of the source, at the same column.
        let first = &found[0].text;
        assert_eq!(
            first.lines().nth(1).unwrap(),
            "  query One($id: ID!) { node(id: $id) { ...F } }"
        );
        assert_eq!(
            source.lines().nth(5).unwrap(),
            "  query One($id: ID!) { node(id: $id) { ...F } }"
        );
        assert_eq!(found[1].text.find('{'), source.lines().nth(8).unwrap().find("{ two"));
    }

    #[test]
    fn jsx_text_and_regexes_do_not_derail_the_scan() {
        let source = "const A = () => <p>Don't stop</p>;\nconst r = x.replace(/'/g, '');\nconst Q = gql`{ a }`;\n";
        assert_eq!(docs(&javascript(source).unwrap()), [(3, "{ a }".to_owned())]);
    }

    /// Found by the fuzzer: an unclosed block comment ending in a multi-byte character.
    #[test]
    fn an_unclosed_comment_before_a_multibyte_character_ends_the_scan() {
        let source = "i \n/]: /* )Gr{\n  \"aa\u{524} ";
        assert_eq!(javascript(source).unwrap(), []);
        assert_eq!(javascript("/* GraphQL */").unwrap(), []);
        assert_eq!(
            docs(&javascript("/* GraphQL */ `{ a }` /* é").unwrap()),
            [(1, "{ a }".to_owned())]
        );
    }

    #[test]
    fn hostile_template_nesting_is_an_error() {
        let source = format!("gql`{}{}`", "${`".repeat(10_000), "`}".repeat(10_000));
        assert!(matches!(javascript(&source), Err(ExtractError::TooDeep { line: 1 })));
    }

    #[test]
    fn python_finds_graphql_triple_quoted_strings() {
        let source = "def f():\n    \"\"\"Query the database for users.\"\"\"\n    q = gql('''\n        query Users { users { id } }\n    ''')\n    s = \"not '''a string'''\"\n    b = b\"\"\"query Bytes { a }\"\"\"\n    return r\"\"\"\nfragment U on User { id }\n\"\"\"\n# \"\"\"query InComment { a }\"\"\"\n";
        assert_eq!(
            docs(&python(source)),
            [
                (3, "query Users { users { id } }".to_owned()),
                (8, "fragment U on User { id }".to_owned())
            ]
        );
    }

    #[test]
    fn lines_of_offsets() {
        let lines = Lines::new("ab\ncd\n\ne");
        let at = |o| (lines.line(o), lines.start(o));
        assert_eq!([at(0), at(2), at(3), at(6), at(7)], [(1, 0), (1, 0), (2, 3), (3, 6), (4, 7)]);
    }

    #[test]
    fn looks_like_graphql_accepts_documents_and_rejects_prose() {
        for yes in [
            "{ a }",
            "query { a }",
            "query Q($a: Int) { a }",
            "mutation M @x { a }",
            "# c\nfragment F on T { a }",
            "subscription S { a }",
        ] {
            assert!(looks_like_graphql(yes), "{yes}");
        }
        for no in
            ["Query the database", "query the database { x", "fragment of text", "SELECT 1", ""]
        {
            assert!(!looks_like_graphql(no), "{no}");
        }
    }

    #[test]
    fn persisted_maps_give_each_entry_its_line() {
        let source = "{\n  \"abc\": \"query A { a }\",\n\n  \"def\": \"query B {\\n  b\\n}\"\n}\n";
        let entries = persisted_map(source).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].key.as_str(), entries[0].line), ("abc", 2));
        assert_eq!((entries[1].text.as_str(), entries[1].line), ("query B {\n  b\n}", 4));
        assert!(matches!(persisted_map("[1]"), Err(ExtractError::NotAMap { line: 1, .. })));
        let err = persisted_map("{\"a\": \"x\",\n \"b\": 3}").unwrap_err();
        assert_eq!(err.to_string(), "line 2: the value of \"b\" is not a string");
    }
}
