//! Turning one resource into a view's rows: filters, then selects with forEach / forEachOrNull /
//! repeat, nested selects (cross product) and unionAll (concatenation).

use super::definition::{Iteration, Node, View};
use super::fhirpath::{Context, EvalError, Item, Primitive};
use crate::fhir::reference::FullUrlLookup;

/// Where one column's values are in [`Rows::items`]: `start..end`.
pub type Span = (usize, usize);

/// One row: for each view column, where its path's collection is (`None`: not reached).
pub type Row = Vec<Option<Span>>;

/// A resource's rows. Every column's values go to one store, so a row costs one allocation
/// however many columns it has, and joining rows copies spans, not values.
pub struct Rows<'v> {
    pub items: Vec<Item<'v>>,
    pub rows: Vec<Row>,
}

impl Rows<'_> {
    /// The values of one cell.
    pub fn values(&self, span: Option<Span>) -> &[Item<'_>] {
        span.map_or(&[], |(start, end)| &self.items[start..end])
    }
}

impl View {
    /// The rows of `resource` (its JSON tree), or the data error that stops it.
    pub fn rows<'v>(
        &'v self,
        resource: &'v crate::resource::tree::Node<'v>,
        bundle: Option<&'v dyn FullUrlLookup>,
    ) -> Result<Rows<'v>, EvalError> {
        let context = Context {
            resource,
            constants: &self.constants,
            row_index: 0,
            bundle,
        };
        let focus = Item::Node(resource, None);
        let mut items = Vec::new();
        for (text, filter) in &self.filters {
            let verdict = filter.evaluate(std::slice::from_ref(&focus), &context)?;
            match verdict.as_slice() {
                [] => {
                    return Ok(Rows {
                        items,
                        rows: Vec::new(),
                    })
                }
                [item] => match item.primitive() {
                    Some(Primitive::Boolean(true)) => {}
                    Some(Primitive::Boolean(false)) => {
                        return Ok(Rows {
                            items,
                            rows: Vec::new(),
                        })
                    }
                    _ => return Err(EvalError(format!("where path '{text}' did not give a boolean"))),
                },
                _ => {
                    return Err(EvalError(format!(
                        "where path '{text}' gave {} values, not one boolean",
                        verdict.len()
                    )))
                }
            }
        }
        let rows = node_rows(&self.root, &focus, &context, self.columns.len(), &mut items)?;
        Ok(Rows { items, rows })
    }
}

fn node_rows<'v>(
    node: &'v Node,
    input: &Item<'v>,
    context: &Context<'v>,
    width: usize,
    items: &mut Vec<Item<'v>>,
) -> Result<Vec<Row>, EvalError> {
    let foci: Vec<(Item<'v>, i64)> = match &node.iteration {
        Iteration::Once => vec![(input.clone(), context.row_index)],
        Iteration::ForEach(path) | Iteration::ForEachOrNull(path) => path
            .evaluate(std::slice::from_ref(input), context)?
            .into_iter()
            .zip(0..)
            .collect(),
        Iteration::Repeat(paths) => {
            let mut found = Vec::new();
            descend(input, paths, context, &mut found, 0)?;
            found.into_iter().zip(0..).collect()
        }
    };
    if foci.is_empty() {
        if matches!(node.iteration, Iteration::ForEachOrNull(_)) {
            // One row of nulls; the node's own columns still see %rowIndex (0) and literals.
            let mut row: Row = vec![None; width];
            for &index in &node.covered {
                row[index] = Some((items.len(), items.len()));
            }
            let context = Context {
                row_index: 0,
                ..*context
            };
            for (index, path) in &node.columns {
                let start = items.len();
                if path.evaluate_into(&[], &context, items).is_err() {
                    items.truncate(start);
                }
                row[*index] = Some((start, items.len()));
            }
            return Ok(vec![row]);
        }
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    for (focus, row_index) in foci {
        let context = Context {
            row_index,
            ..*context
        };
        let here = std::slice::from_ref(&focus);
        let mut base: Row = vec![None; width];
        for (index, path) in &node.columns {
            let start = items.len();
            path.evaluate_into(here, &context, items)?;
            base[*index] = Some((start, items.len()));
        }
        let mut product = vec![base];
        for select in &node.selects {
            let nested = node_rows(select, &focus, &context, width, items)?;
            product = combine(product, nested)?;
        }
        if !node.union.is_empty() {
            let mut branches = Vec::new();
            for branch in &node.union {
                branches.extend(node_rows(branch, &focus, &context, width, items)?);
            }
            product = combine(product, branches)?;
        }
        rows.extend(product);
        if rows.len() > MAX_ROWS_PER_RESOURCE {
            return Err(too_many_rows());
        }
    }
    Ok(rows)
}

/// How many levels `repeat` may descend. A resource's JSON nests at most 128 levels (serde_json's
/// limit), so only a path that does not lead to children (`$this`, `%resource`) goes deeper,
/// and it would never stop.
const MAX_REPEAT_DEPTH: usize = 128;

/// Depth-first, in document order: every node reachable through the repeat paths.
fn descend<'v>(
    item: &Item<'v>,
    paths: &[super::fhirpath::Path],
    context: &Context<'v>,
    found: &mut Vec<Item<'v>>,
    depth: usize,
) -> Result<(), EvalError> {
    if depth >= MAX_REPEAT_DEPTH {
        return Err(EvalError(format!(
            "repeat went more than {MAX_REPEAT_DEPTH} levels deep: its paths must lead to child elements"
        )));
    }
    for path in paths {
        for child in path.evaluate(std::slice::from_ref(item), context)? {
            found.push(child.clone());
            descend(&child, paths, context, found, depth + 1)?;
        }
    }
    Ok(())
}

/// Most rows one resource may give a view: sibling `forEach`es multiply their rows, so a view and
/// a resource with long arrays could otherwise exhaust memory before any limit on bytes applies.
const MAX_ROWS_PER_RESOURCE: usize = 1_000_000;

fn too_many_rows() -> EvalError {
    EvalError(format!(
        "the resource gives more than {MAX_ROWS_PER_RESOURCE} rows (sibling forEach multiply their rows)"
    ))
}

/// Every left row joined with every right row (a row's cells come from one side or the other).
fn combine(mut left: Vec<Row>, right: Vec<Row>) -> Result<Vec<Row>, EvalError> {
    if left.len() == 1 {
        return Ok(extend_each(left.pop().expect("one row"), right));
    }
    cross(left, right)
}

fn cross(left: Vec<Row>, right: Vec<Row>) -> Result<Vec<Row>, EvalError> {
    if left.len().saturating_mul(right.len()) > MAX_ROWS_PER_RESOURCE {
        return Err(too_many_rows());
    }
    let mut combined = Vec::with_capacity(left.len() * right.len());
    for row in &left {
        for other in &right {
            let merged = row.iter().zip(other).map(|(a, b)| a.or(*b)).collect();
            combined.push(merged);
        }
    }
    Ok(combined)
}

/// [`cross`] of one row with `right`, the usual case (a select without forEach around its nested
/// selects): the right rows' cells are moved, not copied.
fn extend_each(left: Row, mut right: Vec<Row>) -> Vec<Row> {
    for other in &mut right {
        for (cell, mine) in other.iter_mut().zip(&left) {
            if mine.is_some() {
                *cell = *mine;
            }
        }
    }
    right
}
