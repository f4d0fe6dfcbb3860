//! The FHIR type of a column whose ViewDefinition gives none, decided from its path alone so the
//! schema is fixed before any data is read.

use super::fhirpath::{Expr, Op};

/// The type a path's values have: booleans for tests and comparisons, integers for counts and
/// `%rowIndex`, the named type for `ofType()`, else `string`.
pub fn infer(expr: &Expr) -> &'static str {
    match expr {
        Expr::Boolean(_) => "boolean",
        Expr::Integer(_) => "integer",
        Expr::Decimal(_) => "decimal",
        Expr::Variable(name) if name == "rowIndex" => "integer",
        Expr::Function(name, arguments) => match name.as_str() {
            "exists" | "empty" | "not" | "all" | "hasValue" => "boolean",
            "count" => "integer",
            "ofType" => match arguments.first() {
                Some(Expr::Member(kind)) if kind == "boolean" => "boolean",
                Some(Expr::Member(kind)) if kind == "integer" => "integer",
                Some(Expr::Member(kind)) if kind == "decimal" => "decimal",
                _ => "string",
            },
            _ => "string",
        },
        Expr::Invoke(_, last) => infer(last),
        Expr::TypeTest(true, _, _) => "boolean",
        Expr::Binary(op, left, right) => match op {
            Op::And
            | Op::Or
            | Op::Xor
            | Op::Implies
            | Op::In
            | Op::Contains
            | Op::Equal
            | Op::NotEqual
            | Op::Equivalent
            | Op::NotEquivalent
            | Op::Less
            | Op::Greater
            | Op::LessOrEqual
            | Op::GreaterOrEqual => "boolean",
            Op::Concatenate => "string",
            Op::Divide => "decimal",
            Op::Add | Op::Subtract | Op::Multiply | Op::Modulo | Op::IntegerDivide => {
                match (infer(left), infer(right)) {
                    ("integer", "integer") => "integer",
                    ("string", _) | (_, "string") if *op == Op::Add => "string",
                    _ => "decimal",
                }
            }
            Op::Union => infer(left),
        },
        _ => "string",
    }
}
