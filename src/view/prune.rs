//! What of a resource its views can read: every element path their FHIRPath can reach, worked out
//! once from the definitions, so the resource's tree is built only along those paths
//! ([`Keep`]). Reading only the elements a few columns name is what makes a large
//! ExplanationOfBenefit cheap. Wherever a path's reach is not plain member navigation (repeat,
//! a value whose whole content matters), everything below that point is kept.

use super::definition::{Iteration, Node, View};
use super::fhirpath::{Expr, Op, Path};
use crate::resource::tree::Keep;

/// What the views (all of one resource type) read of their resources.
pub fn keep_for<'v>(views: impl IntoIterator<Item = &'v View>) -> Keep {
    let mut reach = Reach::default();
    let root = reach.add_node();
    // Messages name the resource by its id.
    let id = reach.child(root, "id");
    reach.everything_below(&[id]);
    for view in views {
        for (_, filter) in &view.filters {
            let found = reach.expr(&filter.expr, &[root], root);
            reach.everything_below(&found);
        }
        reach.select(&view.root, &[root], root);
    }
    reach.keep(root)
}

/// The paths reached so far: a tree of element names.
#[derive(Default)]
struct Reach {
    nodes: Vec<Place>,
}

#[derive(Default)]
struct Place {
    /// Everything below is read (a value used whole, or navigation this analysis does not follow).
    whole: bool,
    children: Vec<(String, usize)>,
}

impl Reach {
    fn add_node(&mut self) -> usize {
        self.nodes.push(Place::default());
        self.nodes.len() - 1
    }

    fn child(&mut self, node: usize, name: &str) -> usize {
        if let Some(&(_, child)) = self.nodes[node].children.iter().find(|(n, _)| n == name) {
            return child;
        }
        let child = self.add_node();
        self.nodes[node].children.push((name.to_owned(), child));
        child
    }

    fn everything_below(&mut self, nodes: &[usize]) {
        for &node in nodes {
            self.nodes[node].whole = true;
        }
    }

    fn keep(&self, node: usize) -> Keep {
        let place = &self.nodes[node];
        if place.whole {
            return Keep::All;
        }
        Keep::Members(
            place
                .children
                .iter()
                .map(|(name, child)| (name.clone(), self.keep(*child)))
                .collect(),
        )
    }

    fn select(&mut self, select: &Node, focus: &[usize], root: usize) {
        let focus = match &select.iteration {
            Iteration::Once => focus.to_vec(),
            Iteration::ForEach(path) | Iteration::ForEachOrNull(path) => self.path(path, focus, root),
            Iteration::Repeat(paths) => {
                // Any depth of the repeated paths: all of it, and whatever else the paths read
                // (`%resource`, a where() looking elsewhere).
                self.everything_below(focus);
                for path in paths {
                    let found = self.path(path, focus, root);
                    self.everything_below(&found);
                }
                focus.to_vec()
            }
        };
        for (_, column) in &select.columns {
            let found = self.path(column, &focus, root);
            self.everything_below(&found);
        }
        for nested in select.selects.iter().chain(&select.union) {
            self.select(nested, &focus, root);
        }
    }

    fn path(&mut self, path: &Path, focus: &[usize], root: usize) -> Vec<usize> {
        self.expr(&path.expr, focus, root)
    }

    /// Marks what `expr` reads from `focus` and returns the places its result items come from
    /// (empty when its results are not elements: literals, booleans, counts, keys).
    fn expr(&mut self, expr: &Expr, focus: &[usize], root: usize) -> Vec<usize> {
        match expr {
            Expr::Empty
            | Expr::Boolean(_)
            | Expr::Integer(_)
            | Expr::Decimal(_)
            | Expr::String(_)
            | Expr::DateTime(_) => Vec::new(),
            Expr::This => focus.to_vec(),
            Expr::Variable(name) => match name.as_str() {
                "resource" | "rootResource" | "context" => vec![root],
                _ => Vec::new(),
            },
            Expr::Member(name) => {
                let mut found: Vec<usize> = focus.iter().map(|&f| self.child(f, name)).collect();
                // `Patient.name`: a type name stands for the resource itself.
                if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                    found.extend_from_slice(focus);
                }
                found
            }
            Expr::Invoke(base, next) => {
                let focus = self.expr(base, focus, root);
                self.expr(next, &focus, root)
            }
            Expr::Index(base, index) => {
                let used = self.expr(index, focus, root);
                self.everything_below(&used);
                self.expr(base, focus, root)
            }
            Expr::Negate(operand) => self.used_whole(operand, focus, root),
            Expr::TypeTest(false, operand, _) => self.expr(operand, focus, root),
            Expr::TypeTest(true, operand, _) => self.used_whole(operand, focus, root),
            Expr::Binary(Op::Union, left, right) => {
                // A union drops duplicates, comparing items whole: all of each is read.
                let mut found = self.expr(left, focus, root);
                found.extend(self.expr(right, focus, root));
                self.everything_below(&found);
                found
            }
            Expr::Binary(_, left, right) => {
                self.used_whole(left, focus, root);
                self.used_whole(right, focus, root)
            }
            Expr::Function(name, arguments) => self.function(name, arguments, focus, root),
        }
    }

    /// `expr`'s result items are used as values: all of each is read. Returns no places.
    fn used_whole(&mut self, expr: &Expr, focus: &[usize], root: usize) -> Vec<usize> {
        let found = self.expr(expr, focus, root);
        self.everything_below(&found);
        Vec::new()
    }

    fn function(&mut self, name: &str, arguments: &[Expr], focus: &[usize], root: usize) -> Vec<usize> {
        let arguments_whole = |reach: &mut Reach| {
            for argument in arguments {
                reach.used_whole(argument, focus, root);
            }
        };
        match name {
            // Items pass through, some filtered or counted off by their arguments.
            "where" | "first" | "last" | "tail" | "skip" | "take" | "single" | "ofType" => {
                if name != "ofType" {
                    arguments_whole(self);
                }
                focus.to_vec()
            }
            "select" => match arguments {
                [argument] => self.expr(argument, focus, root),
                _ => Vec::new(),
            },
            "iif" => {
                let mut found = Vec::new();
                for (i, argument) in arguments.iter().enumerate() {
                    if i == 0 {
                        self.used_whole(argument, focus, root);
                    } else {
                        found.extend(self.expr(argument, focus, root));
                    }
                }
                found
            }
            // Only whether items are there, or whether one is a primitive (never pruned).
            "exists" | "all" | "empty" | "count" | "not" | "hasValue" => {
                arguments_whole(self);
                Vec::new()
            }
            "extension" => {
                arguments_whole(self);
                let extensions: Vec<usize> = focus.iter().map(|&f| self.child(f, "extension")).collect();
                let urls: Vec<usize> = extensions.iter().map(|&e| self.child(e, "url")).collect();
                self.everything_below(&urls);
                extensions
            }
            "getResourceKey" => {
                let ids: Vec<usize> = focus.iter().map(|&f| self.child(f, "id")).collect();
                self.everything_below(&ids);
                Vec::new()
            }
            "getReferenceKey" => {
                for &f in focus {
                    for member in ["reference", "type"] {
                        let place = self.child(f, member);
                        self.everything_below(&[place]);
                    }
                }
                Vec::new()
            }
            // join, toString, distinct, boundaries and anything else: the items' whole content.
            _ => {
                arguments_whole(self);
                self.everything_below(focus);
                focus.to_vec()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::definition::compile;
    use crate::view::View;

    fn keep_of(select: serde_json::Value) -> Keep {
        let definition = serde_json::json!({
            "resourceType": "ViewDefinition", "name": "v", "resource": "Claim", "status": "active",
            "select": select
        });
        let view = compile(&definition, "test").unwrap();
        keep_for([&view])
    }

    fn all(name: &str) -> (String, Keep) {
        (name.to_owned(), Keep::All)
    }

    fn members(name: &str, below: Vec<(String, Keep)>) -> (String, Keep) {
        (name.to_owned(), Keep::Members(below))
    }

    /// A view's rows over the resource's whole tree and over the tree pruned for it, as text.
    fn rows_both_ways(view: &View, resource: &str) -> (String, String) {
        let show = |keep: &Keep| {
            let tree = crate::resource::tree::parse_keeping(resource, keep).unwrap();
            match view.rows(&tree, None) {
                Ok(rows) => format!(
                    "{:?}",
                    rows.rows
                        .iter()
                        .map(|row| row
                            .iter()
                            .map(|span| format!("{:?}", rows.values(*span)))
                            .collect::<Vec<_>>())
                        .collect::<Vec<_>>()
                ),
                Err(error) => format!("error: {error:?}"),
            }
        };
        (show(&Keep::All), show(&keep_for([view])))
    }

    fn view(resource: &str, select: serde_json::Value) -> View {
        let definition = serde_json::json!({
            "resourceType": "ViewDefinition", "name": "v", "resource": resource, "status": "active",
            "select": select
        });
        compile(&definition, "test").unwrap()
    }

    /// Shapes where a pruned tree once gave other rows than the whole one (found in review).
    #[test]
    fn pruned_trees_give_the_rows_whole_trees_give() {
        let cases = [
            // A union drops duplicates comparing whole items.
            (
                view(
                    "Patient",
                    serde_json::json!([{"forEach": "name | contact.name", "column": [{"name": "f", "path": "family"}]}]),
                ),
                r#"{"resourceType":"Patient","id":"p","name":[{"family":"Smith","given":["Ann"]}],"contact":[{"name":{"family":"Smith","given":["Bob"]}}]}"#,
            ),
            // `classHistory` is itself and, by the choice rule, `class`: what both keep.
            (
                view(
                    "Encounter",
                    serde_json::json!([
                        {"column": [{"name": "c", "path": "class.code"}]},
                        {"forEach": "classHistory", "column": [{"name": "s", "path": "period.start"}]}
                    ]),
                ),
                r#"{"resourceType":"Encounter","id":"e","class":{"code":"AMB"},"classHistory":[{"class":{"code":"IMP"},"period":{"start":"2020-01-01"}}]}"#,
            ),
            (
                view(
                    "Encounter",
                    serde_json::json!([
                        {"forEach": "classHistory", "column": [{"name": "s", "path": "period.start"}]},
                        {"column": [{"name": "c", "path": "class.code"}]}
                    ]),
                ),
                r#"{"resourceType":"Encounter","id":"e","classHistory":[{"class":{"code":"IMP"},"period":{"start":"2020-01-01"}}]}"#,
            ),
            // Repeat paths reading outside their focus.
            (
                view(
                    "QuestionnaireResponse",
                    serde_json::json!([{"forEach": "item", "select": [
                        {"repeat": ["item.where(%resource.status = 'completed')"], "column": [{"name": "l", "path": "linkId"}]}
                    ]}]),
                ),
                r#"{"resourceType":"QuestionnaireResponse","id":"q","status":"completed","item":[{"linkId":"1","item":[{"linkId":"1.1"}]}]}"#,
            ),
            (
                view(
                    "Patient",
                    serde_json::json!([{"repeat": ["%resource.contained"], "column": [{"name": "i", "path": "id"}]}]),
                ),
                r#"{"resourceType":"Patient","id":"p","contained":[{"resourceType":"Patient","id":"c"}]}"#,
            ),
        ];
        for (view, resource) in &cases {
            let (whole, pruned) = rows_both_ways(view, resource);
            assert_eq!(pruned, whole, "{resource}");
        }
    }

    /// Every shipped view over every fixture resource: the same rows from a pruned tree.
    #[test]
    fn default_views_give_the_same_rows_from_pruned_trees_on_the_fixtures() {
        let views = crate::view::load(&[std::path::PathBuf::from(crate::view::DEFAULT_VIEWS)]).unwrap();
        let mut compared = 0;
        for document in crate::view::fixture_documents() {
            let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&document)
            else {
                continue;
            };
            let entries: Vec<serde_json::Value> = match map.get("entry") {
                Some(serde_json::Value::Array(entries)) => entries
                    .iter()
                    .filter_map(|e| e.get("resource").cloned())
                    .collect(),
                _ => vec![serde_json::Value::Object(map.clone())],
            };
            for resource in entries {
                let resource_type = resource["resourceType"].as_str().unwrap_or_default();
                let text = resource.to_string();
                for view in views.iter().filter(|v| v.resource == resource_type) {
                    let (whole, pruned) = rows_both_ways(view, &text);
                    assert_eq!(pruned, whole, "{} on {text}", view.name);
                    compared += 1;
                }
            }
        }
        assert!(compared > 500, "{compared}");
    }

    #[test]
    fn paths_keep_what_they_navigate_and_all_of_what_they_return() {
        let keep = keep_of(serde_json::json!([{"column": [
            {"name": "id", "path": "getResourceKey()"},
            {"name": "patient", "path": "patient.getReferenceKey(Patient)"},
            {"name": "encounter", "path": "item.encounter.getReferenceKey(Encounter).first()"},
            {"name": "items", "path": "item.count()", "type": "integer"},
            {"name": "code", "path": "type.coding.where(system = 'x').code.first()"},
            {"name": "amount", "path": "total.value"}
        ]}]));
        let reference = || vec![all("reference"), all("type")];
        assert_eq!(
            keep,
            Keep::Members(vec![
                all("id"),
                members("patient", reference()),
                members("item", vec![members("encounter", reference())]),
                members("type", vec![members("coding", vec![all("system"), all("code")])]),
                members("total", vec![all("value")]),
            ])
        );
    }

    #[test]
    fn for_each_nests_and_repeat_or_a_whole_value_keeps_everything_below() {
        let keep = keep_of(serde_json::json!([
            {"forEach": "item", "column": [{"name": "seq", "path": "sequence"}],
             "select": [{"forEachOrNull": "adjudication", "column": [{"name": "a", "path": "amount"}]}]},
            {"column": [{"name": "j", "path": "diagnosis.join(',')"}]},
            {"repeat": ["contained"], "column": [{"name": "c", "path": "id"}]}
        ]));
        assert_eq!(keep, Keep::All);
        let keep = keep_of(serde_json::json!([
            {"forEach": "item", "column": [{"name": "seq", "path": "sequence"}],
             "select": [{"forEachOrNull": "adjudication", "column": [{"name": "a", "path": "amount"}]}]},
            {"column": [{"name": "j", "path": "diagnosis.join(',')"}]}
        ]));
        assert_eq!(
            keep,
            Keep::Members(vec![
                all("id"),
                members(
                    "item",
                    vec![all("sequence"), members("adjudication", vec![all("amount")])]
                ),
                all("diagnosis"),
            ])
        );
    }
}
