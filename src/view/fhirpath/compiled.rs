//! Compiled paths: the shapes views use most (`code.coding.code.first()`,
//! `subject.getReferenceKey(Patient)`, `value.ofType(Quantity).value`,
//! `telecom.where(system = 'phone').value.first()`, `iif(x.exists(), x.first(), y)`) evaluated
//! depth-first, one item at a time, straight into the result: no collection per step, no function
//! looked up by name per call, and `first()` / `exists()` stop at the first item that reaches them.
//! Every other expression goes to the general evaluator. Both give the same results and the same
//! errors: the steps call the general evaluator's own helpers, and stopping early is only done
//! where no step before it could fail on a later item.

use super::eval::{
    child_items, evaluate, has_type, reference_key, resource_key, truth, type_argument, Context, EvalError,
    Item,
};
use super::parse::Expr;

/// A parsed FHIRPath expression with its compiled plan, when it has one.
#[derive(Debug, Clone)]
pub struct Path {
    pub expr: Expr,
    plan: Option<Plan>,
}

impl Path {
    /// Compiles `expr`; shapes without a plan are evaluated by the general evaluator.
    pub fn new(expr: Expr) -> Path {
        let plan = Plan::of(&expr);
        Path { expr, plan }
    }

    /// Whether the path runs compiled (for tests and the benchmark's notes).
    pub fn is_compiled(&self) -> bool {
        self.plan.is_some()
    }

    /// The path's collection for `input`, as [`evaluate`] gives it.
    pub fn evaluate<'v>(
        &self,
        input: &[Item<'v>],
        context: &Context<'v>,
    ) -> Result<Vec<Item<'v>>, EvalError> {
        match &self.plan {
            Some(plan) => {
                let mut found = Vec::new();
                plan.run(input, context, &mut found)?;
                Ok(found)
            }
            None => evaluate(&self.expr, input, context),
        }
    }

    /// [`Self::evaluate`], appended to `out` (on an error, `out` may hold part of the result).
    pub fn evaluate_into<'v>(
        &self,
        input: &[Item<'v>],
        context: &Context<'v>,
        out: &mut Vec<Item<'v>>,
    ) -> Result<(), EvalError> {
        match &self.plan {
            Some(plan) => plan.run(input, context, out),
            None => {
                out.extend(evaluate(&self.expr, input, context)?);
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Plan {
    Chain(Chain),
    /// `iif(condition, then[, otherwise])` over the whole input, as the function is defined.
    Iif(Box<Plan>, Box<Plan>, Option<Box<Plan>>),
}

/// Steps applied in turn to each item; at most 64 (a bit of state per step).
#[derive(Debug, Clone)]
struct Chain {
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    Member(String),
    OfType(String),
    /// `where(criterion)`: the criterion goes to the general evaluator, item by item.
    Where(Expr),
    ReferenceKey(Option<String>),
    /// `first()`: the first item to arrive goes on; `stops` when nothing before it can fail,
    /// so once it has gone through, the rest of the input need not be walked.
    First {
        stops: bool,
    },
    /// `getResourceKey()`: the key of the collection's first item.
    ResourceKey {
        stops: bool,
    },
    /// `exists()`, always last: whether any item arrives.
    Exists {
        stops: bool,
    },
}

impl Step {
    /// Whether the step can fail on some item (then an early stop before it would hide an error).
    fn can_fail(&self) -> bool {
        matches!(self, Step::Where(_))
    }
}

/// Whether to go on walking the input.
#[derive(PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

const MAX_STEPS: usize = 64;

impl Plan {
    fn of(expr: &Expr) -> Option<Plan> {
        if let Expr::Function(name, arguments) = expr {
            if name == "iif" && (2..=3).contains(&arguments.len()) {
                let branch = |i: usize| arguments.get(i).map(|e| Plan::of(e).map(Box::new));
                return Some(Plan::Iif(
                    branch(0)??,
                    branch(1)??,
                    match branch(2) {
                        None => None,
                        Some(plan) => Some(plan?),
                    },
                ));
            }
        }
        let mut segments = Vec::new();
        flatten(expr, &mut segments);
        let mut steps = Vec::with_capacity(segments.len());
        let mut fallible = false;
        for (at, segment) in segments.iter().enumerate() {
            let last = at + 1 == segments.len();
            let step = match segment {
                Expr::Member(name) => Step::Member(name.clone()),
                Expr::Function(name, arguments) => match (name.as_str(), arguments.as_slice()) {
                    ("first", []) => Step::First { stops: !fallible },
                    ("exists", []) if last => Step::Exists { stops: !fallible },
                    ("getResourceKey", []) => Step::ResourceKey { stops: !fallible },
                    ("ofType", [type_name]) => Step::OfType(type_argument(type_name)?),
                    ("getReferenceKey", []) => Step::ReferenceKey(None),
                    ("getReferenceKey", [type_name]) => Step::ReferenceKey(Some(type_argument(type_name)?)),
                    ("where", [criterion]) => Step::Where(criterion.clone()),
                    _ => return None,
                },
                _ => return None,
            };
            fallible |= step.can_fail();
            steps.push(step);
        }
        // One fallible step at most: with two, the general evaluator's breadth-first order could
        // report a different error first.
        let fallible_steps = steps.iter().filter(|s| s.can_fail()).count();
        (!steps.is_empty() && steps.len() <= MAX_STEPS && fallible_steps <= 1)
            .then_some(Plan::Chain(Chain { steps }))
    }

    fn run<'v>(
        &self,
        input: &[Item<'v>],
        context: &Context<'v>,
        out: &mut Vec<Item<'v>>,
    ) -> Result<(), EvalError> {
        match self {
            Plan::Chain(chain) => chain.run(input, context, out),
            Plan::Iif(condition, then, otherwise) => {
                // The condition's items go after `out`'s and are taken off again.
                let mark = out.len();
                condition.run(input, context, out)?;
                let verdict = truth(&out[mark..]);
                out.truncate(mark);
                match (verdict?, otherwise) {
                    (Some(true), _) => then.run(input, context, out),
                    (_, Some(otherwise)) => otherwise.run(input, context, out),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// `a.b.c()` as its segments in order: `a`, `b`, `c()`.
fn flatten<'e>(expr: &'e Expr, segments: &mut Vec<&'e Expr>) {
    match expr {
        Expr::Invoke(base, next) => {
            flatten(base, segments);
            flatten(next, segments);
        }
        other => segments.push(other),
    }
}

/// One walk of a chain over an input.
struct Walk<'c, 'v> {
    steps: &'c [Step],
    context: &'c Context<'v>,
    /// A bit per step: whether a first()/getResourceKey()/exists() step has taken its item.
    taken: u64,
    out: &'c mut Vec<Item<'v>>,
}

impl Chain {
    fn run<'v>(
        &self,
        input: &[Item<'v>],
        context: &Context<'v>,
        out: &mut Vec<Item<'v>>,
    ) -> Result<(), EvalError> {
        let mut walk = Walk {
            steps: &self.steps,
            context,
            taken: 0,
            out,
        };
        for item in input {
            if walk.feed(0, item.clone())? == Flow::Stop {
                break;
            }
        }
        if let Some(Step::Exists { .. }) = self.steps.last() {
            let found = walk.taken & (1 << (self.steps.len() - 1)) != 0;
            walk.out.push(Item::Boolean(found));
        }
        Ok(())
    }
}

impl<'v> Walk<'_, 'v> {
    /// Sends `item` through the steps from `at` on.
    fn feed(&mut self, at: usize, item: Item<'v>) -> Result<Flow, EvalError> {
        let Some(step) = self.steps.get(at) else {
            self.out.push(item);
            return Ok(Flow::Go);
        };
        match step {
            Step::Member(name) => {
                for child in child_items(&item, name) {
                    if self.feed(at + 1, child)? == Flow::Stop {
                        return Ok(Flow::Stop);
                    }
                }
                Ok(Flow::Go)
            }
            Step::OfType(type_name) if has_type(&item, type_name) => self.feed(at + 1, item),
            Step::OfType(_) => Ok(Flow::Go),
            Step::Where(criterion) => {
                let verdict = evaluate(criterion, std::slice::from_ref(&item), self.context)?;
                if truth(&verdict)? == Some(true) {
                    self.feed(at + 1, item)
                } else {
                    Ok(Flow::Go)
                }
            }
            Step::ReferenceKey(wanted) => match reference_key(&item, wanted.as_deref(), self.context) {
                Some(key) => self.feed(at + 1, key),
                None => Ok(Flow::Go),
            },
            Step::First { stops } | Step::ResourceKey { stops } | Step::Exists { stops } => {
                let bit = 1 << at;
                if self.taken & bit != 0 {
                    return Ok(Flow::Go);
                }
                self.taken |= bit;
                let flow = match step {
                    Step::First { .. } => self.feed(at + 1, item)?,
                    Step::ResourceKey { .. } => match resource_key(std::slice::from_ref(&item)) {
                        Some(key) => self.feed(at + 1, key)?,
                        None => Flow::Go,
                    },
                    _ => Flow::Go,
                };
                Ok(if *stops { Flow::Stop } else { flow })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::tree::{self, Node};
    use crate::view::fhirpath::{parse, Constants};

    /// Tricky shapes: a where() that fails on a later item than first() takes, choice elements,
    /// several resource keys, exists() after a fallible step, iif() with and without otherwise.
    const PATIENT: &str = r#"{
        "resourceType": "Patient", "id": "p1",
        "name": [{"family": "A", "given": ["x"]}, {"family": "B", "given": ["a", "b"]}, null],
        "telecom": [{"system": "email", "value": "e"}, {"system": "phone", "value": "1"},
                    {"system": "phone", "value": "2"}],
        "contained": [{"resourceType": "Patient", "id": "c1"}, {"resourceType": "Patient", "id": "c2"}],
        "link": [{"other": {"reference": "Patient/p2"}}, {"other": {"reference": "Group/g", "type": "Group"}},
                 {"other": {"reference": "Patient?identifier=s|v"}}],
        "deceasedBoolean": false, "multipleBirthInteger": 3,
        "extension": [{"url": "u", "valueQuantity": {"value": 1.50, "unit": "mg"}},
                      {"url": "v", "valueString": "s"}]
    }"#;

    const PATHS: &[&str] = &[
        "id",
        "name.family",
        "name.family.first()",
        "name.given.first()",
        "name.first().given",
        "name.where(given).family.first()",
        "name.where(given = 'x').family",
        "name.where(given).exists()",
        "name.given.exists()",
        "name.suffix.exists()",
        "telecom.where(system = 'phone').value.first()",
        "telecom.where(system = 'phone').value",
        "telecom.where(system = 'fax').value.first()",
        "getResourceKey()",
        "contained.getResourceKey()",
        "name.getResourceKey()",
        "link.other.getReferenceKey()",
        "link.other.getReferenceKey(Patient)",
        "link.other.getReferenceKey(Patient).first()",
        "link.other.getReferenceKey(Group)",
        "deceased.ofType(boolean)",
        "deceased.ofType(dateTime)",
        "multipleBirth.ofType(integer)",
        "extension.value.ofType(Quantity).value",
        "extension.value.ofType(Quantity).unit.first()",
        "extension.value.ofType(string)",
        "extension.value.ofType(FHIR.string)",
        "Patient.name.family",
        "iif(name.family.exists(), name.family.first(), id)",
        "iif(name.prefix.exists(), name.prefix.first(), id)",
        "iif(name.prefix.exists(), name.prefix.first())",
        "name.where(given.first() = 'a').family",
        "first().id",
        "exists()",
    ];

    /// Shapes left to the general evaluator (compared all the same).
    const GENERAL: &[&str] = &[
        "iif(name.family, 'yes', 'no')",
        "name.given.join(',')",
        "name[0].family",
        "%resource.id",
        "name.family | id",
        "name.where(given).where(family).first()",
    ];

    fn outcome(result: Result<Vec<Item<'_>>, EvalError>) -> String {
        format!("{result:?}")
    }

    fn same_as_general(text: &str, resource: &Node<'_>) {
        let expr = parse(text).unwrap();
        let path = Path::new(expr.clone());
        let constants = Constants::new();
        let context = Context {
            resource,
            constants: &constants,
            row_index: 0,
            bundle: None,
        };
        let input = [Item::Node(resource, None)];
        assert_eq!(
            outcome(path.evaluate(&input, &context)),
            outcome(evaluate(&expr, &input, &context)),
            "{text}"
        );
    }

    #[test]
    fn compiled_paths_give_what_the_general_evaluator_gives() {
        let resource = tree::parse(PATIENT).unwrap();
        for text in PATHS.iter().chain(GENERAL) {
            same_as_general(text, &resource);
        }
        // The fallible where() before first() still reports the later item's error.
        let path = Path::new(parse("name.where(given).family.first()").unwrap());
        assert!(path.is_compiled());
        let constants = Constants::new();
        let context = Context {
            resource: &resource,
            constants: &constants,
            row_index: 0,
            bundle: None,
        };
        assert!(path.evaluate(&[Item::Node(&resource, None)], &context).is_err());
    }

    #[test]
    fn the_shapes_views_use_are_compiled_and_the_rest_is_not() {
        for text in PATHS {
            assert!(Path::new(parse(text).unwrap()).is_compiled(), "{text}");
        }
        for text in GENERAL {
            assert!(!Path::new(parse(text).unwrap()).is_compiled(), "{text}");
        }
    }

    /// Every path of every shipped view, on every resource of the fixtures' Bundles and NDJSON.
    #[test]
    fn default_view_paths_agree_on_the_fixtures() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(root.join("views")).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            collect_paths(&serde_json::from_str(&text).unwrap(), &mut paths);
        }
        assert!(paths.len() > 200, "{}", paths.len());
        let documents = crate::view::fixture_documents();
        let mut resources = 0;
        for document in &documents {
            let Ok(tree) = tree::parse(document) else { continue };
            let mut found = Vec::new();
            gather_resources(&tree, &mut found);
            for resource in found {
                resources += 1;
                for text in &paths {
                    same_as_general(text, resource);
                }
            }
        }
        assert!(resources > 1000, "{resources}");
    }

    fn collect_paths(value: &serde_json::Value, paths: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("path" | "forEach" | "forEachOrNull", serde_json::Value::String(text)) => {
                            paths.push(text.clone())
                        }
                        _ => collect_paths(value, paths),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| collect_paths(item, paths)),
            _ => {}
        }
    }

    /// The resource itself, or each entry's resource for a Bundle (nested ones too).
    fn gather_resources<'t>(node: &'t Node<'t>, found: &mut Vec<&'t Node<'t>>) {
        if node.get("resourceType").and_then(Node::as_str) == Some("Bundle") {
            if let Some(Node::Array(entries)) = node.get("entry") {
                for resource in entries.iter().filter_map(|entry| entry.get("resource")) {
                    gather_resources(resource, found);
                }
            }
        } else if node.is_object() {
            found.push(node);
        }
    }
}
