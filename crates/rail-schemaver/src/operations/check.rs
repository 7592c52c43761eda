//! Each operation validated against the old and the new schema with apollo-compiler's validation.
//!
//! An operation valid on the old schema and invalid on the new one is **broken**; one that was not
//! valid on the old schema either (it targets another schema, or uses client-only fields) is reported
//! apart and does not count. The coordinates each operation uses are collected from its validated
//! form on the old schema, which is where the changed elements still exist.

use apollo_compiler::diagnostic::ToCliReport as _;
use apollo_compiler::validation::{DiagnosticList, Valid};
use apollo_compiler::Schema;

use super::{Catalog, Operation, Place, Uses};

/// One validation error of an operation, where it points (in an operation file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub place: Place,
    pub message: String,
}

/// What became of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Valid on both schemas.
    Ok,
    /// Valid on the old schema, invalid on the new one: the change breaks this client.
    Broken(Vec<Problem>),
    /// Already invalid on the old schema; not judged.
    InvalidOnOld(Vec<Problem>),
}

/// The verdict on one operation.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub operation: Operation,
    pub status: Status,
    /// The coordinates it uses, when it is valid on the old schema.
    pub uses: Option<Uses>,
}

/// Validate every operation against both schemas (the two in parallel) and give each its verdict,
/// in the catalog's order.
pub fn check(catalog: &Catalog, old: &Valid<Schema>, new: &Valid<Schema>) -> Vec<Verdict> {
    let documents: Vec<_> = catalog.operations.iter().map(|op| catalog.document_for(op)).collect();
    let (on_old, on_new) = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            documents
                .iter()
                .zip(&catalog.operations)
                .map(|(doc, op)| match doc.to_executable_validate(new) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(problems(catalog, op, &e.errors)),
                })
                .collect::<Vec<_>>()
        });
        let on_old: Vec<Result<Uses, Vec<Problem>>> = documents
            .iter()
            .zip(&catalog.operations)
            .map(|(doc, op)| match doc.to_executable_validate(old) {
                Ok(valid) => Ok(Uses::of(&valid, old)),
                Err(e) => Err(problems(catalog, op, &e.errors)),
            })
            .collect();
        let on_new = worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (on_old, on_new)
    });
    catalog
        .operations
        .iter()
        .zip(on_old.into_iter().zip(on_new))
        .map(|(op, (old, new))| {
            let (status, uses) = match (old, new) {
                (Err(problems), _) => (Status::InvalidOnOld(problems), None),
                (Ok(uses), Ok(())) => (Status::Ok, Some(uses)),
                (Ok(uses), Err(problems)) => (Status::Broken(problems), Some(uses)),
            };
            Verdict { operation: op.clone(), status, uses }
        })
        .collect()
}

/// Validation errors with the place each points at (the operation's own place when one points
/// nowhere in an operation file).
///
/// A selection that does not build (an unknown field) is left out of the document apollo-compiler
/// validates, so the field holding it may look empty, the fragments spread under it unused and the
/// variables it took unread. Those follow from the other errors: empty selections and unused
/// fragments are left out when there are others, unused variables listed last.
fn problems(catalog: &Catalog, op: &Operation, errors: &DiagnosticList) -> Vec<Problem> {
    let consequence = |name: Option<&str>| {
        matches!(name, Some("UnusedFragment" | "UnusedVariable" | "MissingSubselection"))
    };
    let all_consequences = errors.iter().all(|d| consequence(d.error.unstable_error_name()));
    let mut out: Vec<(bool, Problem)> = errors
        .iter()
        .filter(|d| {
            all_consequences
                || !matches!(
                    d.error.unstable_error_name(),
                    Some("UnusedFragment" | "MissingSubselection")
                )
        })
        .map(|d| {
            let problem = Problem {
                place: catalog
                    .place_of_span(d.error.location())
                    .unwrap_or_else(|| op.place.clone()),
                message: d.error.to_string(),
            };
            (consequence(d.error.unstable_error_name()), problem)
        })
        .collect();
    out.sort_by_key(|(later, _)| *later);
    out.into_iter().map(|(_, p)| p).collect()
}
