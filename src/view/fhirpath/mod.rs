//! The FHIRPath subset SQL on FHIR v2 requires, plus what its conformance suite uses: parsed once
//! per view into a syntax tree, evaluated per resource over its JSON.

mod boundary;
mod compiled;
mod eval;
mod parse;

pub use compiled::Path;
pub use eval::{
    evaluate, lexical, lexical_text, type_argument, Constants, Context, EvalError, Item, Primitive,
    FUNCTIONS, PRIMITIVE_TYPES,
};
pub use parse::{parse, Expr, Op, ParseError};
