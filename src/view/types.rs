//! The FHIR type of a column whose ViewDefinition gives none, decided from its path and the FHIR R4
//! element definitions alone, so the schema is fixed before any data is read.

use super::fhirpath::{type_argument, Expr, Op, PRIMITIVE_TYPES};
use crate::fhir::elements::element;

/// Where static typing stands while walking a path: the element definition path whose children
/// come next (`Patient`, `CodeableConcept`, `Patient.contact`), or a known primitive.
#[derive(Debug, Clone, PartialEq)]
enum Static {
    /// Children are looked up under this definition path.
    Complex(String),
    /// A choice element (`value[x]`) before `ofType()` picks one of these types.
    Choice(Vec<String>),
    Primitive(String),
    Unknown,
}

/// The column type for a path evaluated on `resource`: the primitive the path ends at, `boolean`
/// for tests, `integer` for counts, else `string`.
pub fn infer(expr: &Expr, resource: &str) -> String {
    match walk(expr, Static::Complex(resource.to_owned())) {
        Static::Primitive(name) => name,
        _ => "string".to_owned(),
    }
}

/// The type name an element type code stands for, with `@Path` (content references) resolved to
/// the path whose children it shares.
fn from_type_code(code: &str, path: &str) -> Static {
    if let Some(shared) = code.strip_prefix('@') {
        return Static::Complex(shared.to_owned());
    }
    if PRIMITIVE_TYPES.contains(&code) {
        return Static::Primitive(code.to_owned());
    }
    match code {
        "BackboneElement" | "Element" => Static::Complex(path.to_owned()),
        _ => Static::Complex(code.to_owned()),
    }
}

fn member(context: &Static, name: &str) -> Static {
    let Static::Complex(base) = context else {
        return Static::Unknown;
    };
    if name == base {
        return context.clone();
    }
    let path = format!("{base}.{name}");
    if let Some(definition) = element(&path) {
        return from_type_code(definition.types, &path);
    }
    let choice = format!("{path}[x]");
    match element(&choice) {
        Some(definition) => Static::Choice(definition.types.split(',').map(str::to_owned).collect()),
        None => Static::Unknown,
    }
}

fn walk(expr: &Expr, context: Static) -> Static {
    let primitive = |name: &str| Static::Primitive(name.to_owned());
    match expr {
        Expr::Boolean(_) => primitive("boolean"),
        Expr::Integer(_) => primitive("integer"),
        Expr::Decimal(_) => primitive("decimal"),
        Expr::String(_) => primitive("string"),
        Expr::This => context,
        Expr::Variable(name) if name == "rowIndex" => primitive("integer"),
        Expr::Member(name) => member(&context, name),
        Expr::Invoke(base, next) => walk(next, walk(base, context)),
        Expr::Index(base, _) => walk(base, context),
        Expr::Negate(operand) => walk(operand, context),
        Expr::TypeTest(true, _, _) => primitive("boolean"),
        Expr::TypeTest(false, _, type_name) => from_type_code(type_name, type_name),
        Expr::Function(name, arguments) => match name.as_str() {
            "exists" | "empty" | "not" | "all" | "hasValue" => primitive("boolean"),
            "count" => primitive("integer"),
            "join" | "toString" | "getResourceKey" | "getReferenceKey" => primitive("string"),
            "extension" => Static::Complex("Extension".to_owned()),
            "first" | "last" | "tail" | "skip" | "take" | "single" | "distinct" | "where" | "lowBoundary"
            | "highBoundary" => context,
            "select" => arguments.first().map_or(Static::Unknown, |a| walk(a, context)),
            "iif" => arguments.get(1).map_or(Static::Unknown, |a| walk(a, context)),
            "ofType" => {
                let wanted = arguments.first().and_then(type_argument).unwrap_or_default();
                let wanted = wanted.rsplit('.').next().unwrap_or_default().to_owned();
                match context {
                    Static::Choice(options) if !options.contains(&wanted) => Static::Unknown,
                    _ => from_type_code(&wanted, &wanted),
                }
            }
            _ => Static::Unknown,
        },
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
            | Op::GreaterOrEqual => primitive("boolean"),
            Op::Concatenate => primitive("string"),
            Op::Divide => primitive("decimal"),
            Op::Union => walk(left, context),
            Op::Add | Op::Subtract | Op::Multiply | Op::Modulo | Op::IntegerDivide => {
                let integer = |s: &Static| matches!(s, Static::Primitive(p) if p == "integer");
                let (a, b) = (walk(left, context.clone()), walk(right, context));
                if integer(&a) && integer(&b) {
                    primitive("integer")
                } else if *op == Op::Add && (a == primitive("string") || b == primitive("string")) {
                    primitive("string")
                } else {
                    primitive("decimal")
                }
            }
        },
        _ => Static::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::fhirpath::parse;

    fn type_of(path: &str, resource: &str) -> String {
        infer(&parse(path).unwrap(), resource)
    }

    #[test]
    fn element_types_follow_the_fhir_definitions() {
        assert_eq!(type_of("active", "Patient"), "boolean");
        assert_eq!(type_of("birthDate", "Patient"), "date");
        assert_eq!(type_of("name.family", "Patient"), "string");
        assert_eq!(type_of("Patient.gender", "Patient"), "code");
        assert_eq!(type_of("code.coding.first().code", "Condition"), "code");
        assert_eq!(type_of("numberOfSeries", "ImagingStudy"), "unsignedInt");
        assert_eq!(type_of("contact.name.family", "Patient"), "string");
        assert_eq!(type_of("item.item.linkId", "Questionnaire"), "string");
    }

    #[test]
    fn choice_elements_need_of_type() {
        assert_eq!(type_of("value.ofType(Quantity).value", "Observation"), "decimal");
        assert_eq!(type_of("value.ofType(integer)", "Observation"), "integer");
        assert_eq!(type_of("deceased.ofType(boolean)", "Patient"), "boolean");
        assert_eq!(type_of("value", "Observation"), "string");
    }

    #[test]
    fn functions_and_operators_have_their_own_types() {
        assert_eq!(type_of("name.exists()", "Patient"), "boolean");
        assert_eq!(type_of("name.count()", "Patient"), "integer");
        assert_eq!(type_of("%rowIndex", "Patient"), "integer");
        assert_eq!(type_of("name.given.join(' ')", "Patient"), "string");
        assert_eq!(type_of("gender = 'male'", "Patient"), "boolean");
        assert_eq!(type_of("1 + 2", "Patient"), "integer");
        assert_eq!(type_of("subject.getReferenceKey()", "Observation"), "string");
        assert_eq!(type_of("unknownElement", "Patient"), "string");
    }
}
