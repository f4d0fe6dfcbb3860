//! Reading only the columns of a Parquet file that hold something. A lossless resource table has
//! thousands of leaf columns and a file of Synthea data fills a few hundred of them; reading the
//! rest costs a column reader, page headers and a null buffer each, per batch, and that fixed
//! cost was most of `export`'s time. Which leaves hold something is in the footer: every column
//! chunk written with statistics has a histogram of its definition levels.
//!
//! A leaf is read when some row reaches its value (its highest definition level), or when it is
//! the one leaf read under a group that some row reaches without reaching any value below it: a
//! `{}`, a `[]` or a list item that is an empty object. The group's structure is the same in all
//! its leaves' levels, so one is enough to bring it back; every other leaf under it is null in
//! every row and is left out (an absent column reads as an absent member). A file without the
//! histograms (written without statistics), or with one that does not add up to its column
//! chunk's level count, is read whole.

use std::collections::HashSet;

use parquet::arrow::ProjectionMask;
use parquet::basic::Repetition;
use parquet::file::metadata::ParquetMetaData;
use parquet::schema::types::Type;

/// The leaves of the file to read (see the module's doc); `None` to read every column.
pub fn reached_projection(metadata: &ParquetMetaData) -> Option<ProjectionMask> {
    let schema = metadata.file_metadata().schema_descr();
    let mut leaves = Vec::with_capacity(schema.num_columns());
    let mut path = Vec::new();
    let mut next_group = 0;
    collect_leaves(schema.root_schema(), &mut path, &mut next_group, &mut leaves);
    if leaves.len() != schema.num_columns() {
        return None;
    }

    // The deepest level each leaf reaches in some row of some row group.
    let mut reached = Vec::with_capacity(leaves.len());
    for (index, leaf) in leaves.iter().enumerate() {
        let mut deepest: Option<usize> = None;
        for row_group in metadata.row_groups() {
            if row_group.num_rows() == 0 {
                continue;
            }
            if leaf.max_level == 0 {
                deepest = Some(0);
                break;
            }
            let chunk = row_group.column(index);
            let histogram = chunk.definition_level_histogram()?;
            // A histogram that does not count every level of the chunk is not trusted (a
            // writer's bug would silently drop a column): the file is read whole.
            if histogram.values().iter().sum::<i64>() != chunk.num_values() {
                return None;
            }
            let level = histogram.values().iter().rposition(|count| *count > 0);
            deepest = deepest.max(level);
        }
        reached.push(deepest);
    }

    let mut keep = vec![false; leaves.len()];
    let mut covered: HashSet<usize> = HashSet::new();
    for (index, leaf) in leaves.iter().enumerate() {
        if leaf.max_level == 0 || reached[index] == Some(leaf.max_level) {
            keep[index] = true;
            covered.extend(leaf.groups.iter().map(|(_, group)| *group));
        }
    }
    for (index, leaf) in leaves.iter().enumerate() {
        let Some(level) = reached[index].filter(|level| *level > 0 && !keep[index]) else {
            continue;
        };
        // The group this leaf's levels stop at: some row has it, with nothing below it.
        let group = leaf
            .groups
            .iter()
            .rev()
            .find(|(group_level, _)| *group_level <= level)
            .map(|(_, group)| *group);
        if group.is_some_and(|group| !covered.contains(&group)) {
            keep[index] = true;
            covered.extend(leaf.groups.iter().map(|(_, group)| *group));
        }
    }
    let indices = keep
        .iter()
        .enumerate()
        .filter(|(_, keep)| **keep)
        .map(|(index, _)| index);
    Some(ProjectionMask::leaves(schema, indices))
}

/// A leaf column and the groups above it that add a definition level.
struct Leaf {
    /// (the definition level a row has when the group is there, the group's number), root first.
    groups: Vec<(usize, usize)>,
    /// The definition level of a value (0: a required column, always there).
    max_level: usize,
}

/// Walks the schema depth first, in column order, numbering the groups.
fn collect_leaves(
    node: &Type,
    path: &mut Vec<(usize, usize)>,
    next_group: &mut usize,
    leaves: &mut Vec<Leaf>,
) {
    let level = path.last().map_or(0, |(level, _)| *level);
    let adds_level =
        node.get_basic_info().has_repetition() && node.get_basic_info().repetition() != Repetition::REQUIRED;
    let own_level = level + usize::from(adds_level);
    match node {
        Type::PrimitiveType { .. } => leaves.push(Leaf {
            groups: path.clone(),
            max_level: own_level,
        }),
        Type::GroupType { fields, .. } => {
            if adds_level {
                path.push((own_level, *next_group));
                *next_group += 1;
            }
            for field in fields {
                collect_leaves(field, path, next_group, leaves);
            }
            if adds_level {
                path.pop();
            }
        }
    }
}

/// `batch` written as a wide table's Parquet file is (the run's writer and settings) and read
/// back with only its reached columns: what the exporter's unit round trips go through. The
/// file is also checked against the same batch written by the plain Arrow writer: the run's
/// writer makes the chunks of unreached leaves itself (`absent.rs`), and they must come out as
/// the Arrow writer's would (values, levels and their histograms, null counts).
#[cfg(test)]
pub(crate) fn through_parquet(batch: &arrow_array::RecordBatch) -> Vec<arrow_array::RecordBatch> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;

    use super::store::TableWriter;

    let options = super::WriteOptions {
        compression: super::Compression::Zstd,
        threads: 2,
    };
    let folder = tempfile::tempdir().unwrap();
    let mut writer =
        super::parquet::DatasetWriter::create(folder.path(), "part.parquet", batch.schema(), &options)
            .unwrap();
    writer.write(batch).unwrap();
    Box::new(writer).finish().unwrap();
    let written = std::fs::File::open(folder.path().join("part.parquet")).unwrap();

    let properties = options.properties_for(&batch.schema(), Some(batch));
    let mut plain = tempfile::tempfile().unwrap();
    let mut arrow_writer = ArrowWriter::try_new(&mut plain, batch.schema(), Some(properties)).unwrap();
    arrow_writer.write(batch).unwrap();
    arrow_writer.close().unwrap();
    let plain = ParquetRecordBatchReaderBuilder::try_new(plain).unwrap();

    let builder = ParquetRecordBatchReaderBuilder::try_new(written.try_clone().unwrap()).unwrap();
    same_chunks(builder.metadata(), plain.metadata());
    let whole: Vec<_> = builder.build().unwrap().map(Result::unwrap).collect();
    let want: Vec<_> = plain.build().unwrap().map(Result::unwrap).collect();
    assert_eq!(
        whole, want,
        "the run's writer and the Arrow writer wrote different values"
    );

    let builder = ParquetRecordBatchReaderBuilder::try_new(written).unwrap();
    let projection = reached_projection(builder.metadata()).expect("histograms are written");
    let reader = builder.with_projection(projection).build().unwrap();
    reader.map(Result::unwrap).collect()
}

/// Asserts two files have the same row groups and, chunk by chunk, the same levels: value
/// counts, null counts and level histograms.
#[cfg(test)]
pub(super) fn same_chunks(got: &ParquetMetaData, want: &ParquetMetaData) {
    assert_eq!(got.num_row_groups(), want.num_row_groups());
    for (got, want) in got.row_groups().iter().zip(want.row_groups()) {
        assert_eq!(got.num_rows(), want.num_rows());
        assert_eq!(got.num_columns(), want.num_columns());
        for (got, want) in got.columns().iter().zip(want.columns()) {
            let path = want.column_path().string();
            assert_eq!(got.column_descr(), want.column_descr(), "{path}");
            assert_eq!(got.num_values(), want.num_values(), "{path}: values");
            let nulls = |chunk: &parquet::file::metadata::ColumnChunkMetaData| {
                chunk
                    .statistics()
                    .and_then(|statistics| statistics.null_count_opt())
            };
            assert_eq!(nulls(got), nulls(want), "{path}: nulls");
            assert_eq!(
                got.definition_level_histogram(),
                want.definition_level_histogram(),
                "{path}: definition levels"
            );
            assert_eq!(
                got.repetition_level_histogram(),
                want.repetition_level_histogram(),
                "{path}: repetition levels"
            );
        }
    }
}
