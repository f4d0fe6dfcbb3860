//! Settings for a run: a TOML config file, overridden by command-line flags, over defaults.
//! Relative paths in a config file are relative to that file's folder.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::fhir::definitions::{definitions, TreeOptions};
use crate::sink::{Compression, Format};
use crate::source::{InputFilter, Limits, Shard};
use crate::UsageError;

/// Default rows per Arrow RecordBatch (and per batch handed to the Parquet writer).
pub const DEFAULT_BATCH_SIZE: usize = 5000;

/// Levels for the log file (`log_level`). The flag (clap) and the config key (serde) take the
/// same lowercase names; a test checks that they agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

/// What a run does with tables that already exist in the output folder (`--mode`, `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Replace each table as a whole, once the new one is complete.
    #[default]
    Overwrite,
    /// Add the new rows as new Parquet files beside the existing ones (same schema required).
    Append,
    /// Refuse to run if a table folder exists and is not empty.
    Error,
}

/// A size in bytes, given as a number of bytes or with a binary unit: `65536`, `512KiB`,
/// `256MiB`, `2GiB` (in a config file also a TOML integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let shift = match unit.trim() {
            "" | "B" => 0,
            "KiB" => 10,
            "MiB" => 20,
            "GiB" => 30,
            "TiB" => 40,
            _ => {
                return Err(format!(
                    "'{text}' is not a size (use bytes, or KiB, MiB, GiB: 256MiB)"
                ))
            }
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1 << shift))
            .map(ByteSize)
            .ok_or_else(|| format!("'{text}' is not a size (use bytes, or KiB, MiB, GiB: 256MiB)"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Bytes(u64),
            Text(String),
        }
        match Given::deserialize(deserializer)? {
            Given::Bytes(bytes) => Ok(ByteSize(bytes)),
            Given::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Every key a config file may hold (see config.example.toml); all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(rename = "in")]
    pub input: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub batch_size: Option<usize>,
    pub compression: Option<Compression>,
    pub format: Option<Format>,
    pub threads: Option<usize>,
    pub log_file: Option<PathBuf>,
    pub log_level: Option<LogLevel>,
    /// ViewDefinition files or folders, or `default` for the shipped views.
    pub views: Option<Vec<PathBuf>>,
    /// Whether to write the built-in patient and encounter tables (default true).
    pub builtin_tables: Option<bool>,
    pub mode: Option<WriteMode>,
    /// Folder for copies of failed inputs and bad NDJSON lines, with `.error.txt` files.
    pub errors_to: Option<PathBuf>,
    /// Folder to move cleanly converted inputs to, after the commit.
    pub archive: Option<PathBuf>,
    /// Delete cleanly converted inputs after the commit.
    pub delete_processed: Option<bool>,
    /// Convert only inputs that are new or changed since the last run, and append their rows.
    pub incremental: Option<bool>,
    /// Largest JSON document read into memory (after gzip decompression).
    pub max_json_bytes: Option<ByteSize>,
    /// Longest NDJSON line.
    pub max_line_bytes: Option<ByteSize>,
    /// Globs of the paths under `in` to read; none means all (see `source::InputFilter`).
    pub include: Option<Vec<String>>,
    /// Globs of the paths under `in` to leave out; excluded folders are not entered.
    pub exclude: Option<Vec<String>>,
    /// Resource types to write lossless `resource_<type>` tables of, or `all`.
    pub resources: Option<Vec<String>>,
    /// How deep the resource tables type recursive elements (see `TreeOptions`); default 2.
    pub resources_typed_depth: Option<usize>,
}

impl Options {
    /// Reads a config file; paths in it are made relative to its folder.
    pub fn from_file(path: &Path) -> Result<Options, UsageError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read config file {}: {e}", path.display())))?;
        let mut options: Options = toml::from_str(&text).map_err(|e| {
            UsageError(format!(
                "config file {}: {}",
                path.display(),
                e.to_string().trim_end()
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let paths = [
            &mut options.input,
            &mut options.out,
            &mut options.log_file,
            &mut options.errors_to,
            &mut options.archive,
        ];
        for field in paths {
            // A URL (`s3://bucket/prefix`) is not a path relative to anything.
            if let Some(relative) = field
                .as_mut()
                .filter(|p| p.is_relative() && !crate::remote::is_url(p))
            {
                *relative = base.join(&*relative);
            }
        }
        for view in options.views.iter_mut().flatten() {
            if view.is_relative() && view.as_os_str() != crate::view::DEFAULT_VIEWS {
                *view = base.join(&*view);
            }
        }
        Ok(options)
    }

    /// These options with `overrides`' values taking precedence where given.
    pub fn overridden_by(self, overrides: Options) -> Options {
        Options {
            input: overrides.input.or(self.input),
            out: overrides.out.or(self.out),
            batch_size: overrides.batch_size.or(self.batch_size),
            compression: overrides.compression.or(self.compression),
            format: overrides.format.or(self.format),
            threads: overrides.threads.or(self.threads),
            log_file: overrides.log_file.or(self.log_file),
            log_level: overrides.log_level.or(self.log_level),
            views: overrides.views.or(self.views),
            builtin_tables: overrides.builtin_tables.or(self.builtin_tables),
            mode: overrides.mode.or(self.mode),
            errors_to: overrides.errors_to.or(self.errors_to),
            archive: overrides.archive.or(self.archive),
            delete_processed: overrides.delete_processed.or(self.delete_processed),
            incremental: overrides.incremental.or(self.incremental),
            max_json_bytes: overrides.max_json_bytes.or(self.max_json_bytes),
            max_line_bytes: overrides.max_line_bytes.or(self.max_line_bytes),
            include: overrides.include.or(self.include),
            exclude: overrides.exclude.or(self.exclude),
            resources: overrides.resources.or(self.resources),
            resources_typed_depth: overrides.resources_typed_depth.or(self.resources_typed_depth),
        }
    }
}

/// The deepest `resources_typed_depth` accepted: the columns grow about tenfold per level
/// (Contract has 10,492 leaves at depth 2), and deeper members are kept as JSON text anyway.
pub const MAX_TYPED_DEPTH: usize = 3;

/// Complete settings for a run, after precedence and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub input: PathBuf,
    pub output: PathBuf,
    pub batch_size: usize,
    pub compression: Compression,
    pub format: Format,
    pub threads: usize,
    pub log_file: Option<PathBuf>,
    pub log_level: LogLevel,
    pub views: Vec<PathBuf>,
    pub builtin_tables: bool,
    pub mode: WriteMode,
    pub errors_to: Option<PathBuf>,
    pub archive: Option<PathBuf>,
    pub delete_processed: bool,
    pub incremental: bool,
    pub max_json_bytes: u64,
    pub max_line_bytes: u64,
    /// The `include` / `exclude` globs, compiled.
    pub input_filter: InputFilter,
    /// The resource types that get a lossless table (`resources`).
    pub resources: ResourceSelection,
    /// The typed depth of those tables (`resources_typed_depth`).
    pub resource_options: TreeOptions,
    /// This process's share of a sharded run (`--shard`, or a Kubernetes Indexed Job's
    /// variables); not a config key, as each process of the run has its own.
    pub shard: Option<Shard>,
}

impl Settings {
    /// Fills defaults and checks required keys and ranges. `source` names where the options came
    /// from, for messages.
    pub fn from_options(options: Options, source: &str) -> Result<Settings, UsageError> {
        let missing = |key: &str, flag: &str| {
            UsageError(format!("missing `{key}`: pass {flag} or set `{key}` in {source}"))
        };
        let batch_size = options.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if batch_size == 0 {
            return Err(UsageError(format!("`batch_size` in {source} must be at least 1")));
        }
        if options.archive.is_some() && options.delete_processed == Some(true) {
            return Err(UsageError(format!(
                "`archive` and `delete_processed` in {source} exclude each other: move or delete, not both"
            )));
        }
        let threads = options.threads.unwrap_or_else(default_threads);
        if threads == 0 {
            return Err(UsageError(format!("`threads` in {source} must be at least 1")));
        }
        let limits = Limits::default();
        let max_json_bytes = options
            .max_json_bytes
            .map_or(limits.max_json_bytes, |size| size.0);
        let max_line_bytes = options
            .max_line_bytes
            .map_or(limits.max_line_bytes, |size| size.0);
        for (key, value) in [
            ("max_json_bytes", max_json_bytes),
            ("max_line_bytes", max_line_bytes),
        ] {
            if value == 0 {
                return Err(UsageError(format!("`{key}` in {source} must be at least 1 byte")));
            }
        }
        let input_filter = InputFilter::new(
            options.include.as_deref().unwrap_or_default(),
            options.exclude.as_deref().unwrap_or_default(),
        )
        .map_err(|problem| UsageError(format!("{problem} (--include/--exclude or {source})")))?;
        let resources = ResourceSelection::parse(options.resources.as_deref().unwrap_or_default())
            .map_err(|problem| UsageError(format!("{problem} (--resources or `resources` in {source})")))?;
        let typed_depth = options
            .resources_typed_depth
            .unwrap_or(TreeOptions::default().typed_depth);
        if !(1..=MAX_TYPED_DEPTH).contains(&typed_depth) {
            return Err(UsageError(format!(
                "--resources-typed-depth (`resources_typed_depth` in {source}) must be 1 to \
                 {MAX_TYPED_DEPTH}: {typed_depth}"
            )));
        }
        Ok(Settings {
            input: options.input.ok_or_else(|| missing("in", "--in"))?,
            output: options.out.ok_or_else(|| missing("out", "--out"))?,
            batch_size,
            compression: options.compression.unwrap_or_default(),
            format: options.format.unwrap_or_default(),
            threads,
            log_file: options.log_file,
            log_level: options.log_level.unwrap_or_default(),
            views: options.views.unwrap_or_default(),
            builtin_tables: options.builtin_tables.unwrap_or(true),
            mode: options.mode.unwrap_or_default(),
            errors_to: options.errors_to,
            archive: options.archive,
            delete_processed: options.delete_processed.unwrap_or(false),
            incremental: options.incremental.unwrap_or(false),
            max_json_bytes,
            max_line_bytes,
            input_filter,
            resources,
            resource_options: TreeOptions { typed_depth },
            shard: None,
        })
    }
}

impl Settings {
    /// How much input a worker may hold at once.
    pub fn input_limits(&self) -> Limits {
        Limits {
            max_json_bytes: self.max_json_bytes,
            max_line_bytes: self.max_line_bytes,
        }
    }

    /// The write mode in force: incremental runs always append.
    pub fn effective_mode(&self) -> WriteMode {
        if self.incremental {
            WriteMode::Append
        } else {
            self.mode
        }
    }
}

/// The value of `resources` (and `--resources`) that selects every R4 resource type.
pub const ALL_RESOURCES: &str = "all";

/// Which resource types get a lossless resource table: every one (`all`), or the ones named.
/// Named types always get their table, empty if no resource of the type was read; with `all`,
/// only the types that had rows do (see `written_when_empty`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceSelection {
    /// `all` was given: every R4 resource type.
    pub all: bool,
    /// The types named, in the order given, each once.
    pub named: Vec<String>,
}

impl ResourceSelection {
    /// Reads the list of `resources` / `--resources`: `all` or R4 resource type names. An unknown
    /// name is refused, with the right spelling when only its case (or underscores) differ.
    pub fn parse(items: &[String]) -> Result<ResourceSelection, String> {
        let mut selection = ResourceSelection::default();
        let known = definitions().resource_types();
        for item in items.iter().map(|item| item.trim()) {
            if item == ALL_RESOURCES {
                selection.all = true;
            } else if known.contains(&item) {
                if !selection.named.iter().any(|named| named == item) {
                    selection.named.push(item.to_owned());
                }
            } else if item.is_empty() {
                return Err("an empty resource type in the list".to_owned());
            } else {
                let folded = |name: &str| name.replace('_', "").to_ascii_lowercase();
                let hint = match known.iter().find(|name| folded(name) == folded(item)) {
                    Some(spelling) => format!("; did you mean {spelling}?"),
                    None if folded(item) == ALL_RESOURCES => format!("; did you mean {ALL_RESOURCES}?"),
                    None => String::new(),
                };
                return Err(format!(
                    "{item:?} is not an R4 resource type (give type names such as Observation, or `all`){hint}"
                ));
            }
        }
        Ok(selection)
    }

    /// Whether no resource table is asked for.
    pub fn is_empty(&self) -> bool {
        !self.all && self.named.is_empty()
    }

    /// The selected types: every R4 resource type with `all`, else the named ones.
    pub fn types(&self) -> Vec<&str> {
        match self.all {
            true => definitions().resource_types().to_vec(),
            false => self.named.iter().map(String::as_str).collect(),
        }
    }

    /// Whether the type's table is written even when the run read no resource of the type: a
    /// type named explicitly is (the user asked for that table); one only `all` selects is not,
    /// so `all` does not leave 146 folders, most of them empty.
    pub fn written_when_empty(&self, resource_type: &str) -> bool {
        self.named.iter().any(|named| named == resource_type)
    }
}

/// All cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fhir2table.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let (dir, path) = write_config("in = \"data\"\nout = \"/abs/out\"\n");
        let options = Options::from_file(&path).unwrap();
        assert_eq!(options.input.unwrap(), dir.path().join("data"));
        assert_eq!(options.out.unwrap(), PathBuf::from("/abs/out"));
    }

    #[test]
    fn views_errors_to_and_archive_are_relative_to_the_config_file() {
        let text = "views = [\"default\", \"my-views\"]\nerrors_to = \"q\"\narchive = \"/abs/a\"\nincremental = true\n";
        let (dir, path) = write_config(text);
        let options = Options::from_file(&path).unwrap();
        assert_eq!(
            options.views.unwrap(),
            [PathBuf::from("default"), dir.path().join("my-views")]
        );
        assert_eq!(options.errors_to.unwrap(), dir.path().join("q"));
        assert_eq!(options.archive.unwrap(), PathBuf::from("/abs/a"));
        assert_eq!(options.incremental, Some(true));
        let (_dir, path) =
            write_config("archive = \"a\"\ndelete_processed = true\nin = \"i\"\nout = \"o\"\n");
        let error = Settings::from_options(Options::from_file(&path).unwrap(), "cfg")
            .unwrap_err()
            .0;
        assert!(error.contains("exclude each other"), "{error}");
    }

    #[test]
    fn urls_in_the_config_file_stay_urls() {
        let (_dir, path) =
            write_config("in = \"s3://landing/export\"\nout = \"gs://lake/fhir\"\nerrors_to = \"q\"\n");
        let options = Options::from_file(&path).unwrap();
        assert_eq!(options.input.unwrap(), PathBuf::from("s3://landing/export"));
        assert_eq!(options.out.unwrap(), PathBuf::from("gs://lake/fhir"));
        assert!(
            options.errors_to.unwrap().is_absolute(),
            "a path is still made absolute"
        );
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let (_dir, path) =
            write_config("in = \"/a\"\nout = \"/b\"\nbatch_size = 10\ncompression = \"snappy\"\n");
        let flags = Options {
            batch_size: Some(20),
            ..Options::default()
        };
        let options = Options::from_file(&path).unwrap().overridden_by(flags);
        let settings = Settings::from_options(options, "test").unwrap();
        assert_eq!(settings.batch_size, 20);
        assert_eq!(settings.compression, Compression::Snappy);
        assert_eq!(settings.log_level, LogLevel::Info);
        assert!(settings.threads >= 1);
    }

    #[test]
    fn include_and_exclude_lists_come_from_the_file_and_a_flag_list_replaces_them() {
        let text =
            "in = \"/a\"\nout = \"/b\"\ninclude = [\"*.ndjson\"]\nexclude = [\"log.ndjson\", \"old/\"]\n";
        let (_dir, path) = write_config(text);
        let from_file = Options::from_file(&path).unwrap();
        assert_eq!(from_file.include.as_deref(), Some(&["*.ndjson".to_string()][..]));
        let settings = Settings::from_options(from_file, "cfg").unwrap();
        assert!(settings.input_filter.reads_file("Patient.ndjson"));
        assert!(!settings.input_filter.reads_file("sub/log.ndjson"));
        assert!(!settings.input_filter.enters_folder("old"));
        assert!(!settings.input_filter.reads_file("Bundle.json"));
        // A flag's list replaces the file's list of the same key, like --view and `views`.
        let flags = Options {
            exclude: Some(vec!["Patient.ndjson".to_string()]),
            ..Options::default()
        };
        let options = Options::from_file(&path).unwrap().overridden_by(flags);
        let settings = Settings::from_options(options, "cfg").unwrap();
        assert!(
            settings.input_filter.reads_file("log.ndjson"),
            "the file's exclude is replaced"
        );
        assert!(!settings.input_filter.reads_file("Patient.ndjson"));
        assert!(
            !settings.input_filter.reads_file("Bundle.json"),
            "the file's include stays"
        );
        let (_dir, path) = write_config("in = \"/a\"\nout = \"/b\"\nexclude = [\"[x\"]\n");
        let error = Settings::from_options(Options::from_file(&path).unwrap(), "config file f.toml")
            .unwrap_err()
            .0;
        assert!(
            error.contains("exclude glob '[x'") && error.contains("f.toml"),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key_and_file() {
        let (_dir, path) = write_config("in = \"/a\"\nbatchsize = 10\n");
        let error = Options::from_file(&path).unwrap_err().0;
        assert!(
            error.contains("batchsize") && error.contains("fhir2table.toml"),
            "{error}"
        );
        let (_dir, path) = write_config("batch_size = \"many\"\n");
        let error = Options::from_file(&path).unwrap_err().0;
        assert!(
            error.contains("batch_size") && error.contains("fhir2table.toml"),
            "{error}"
        );
    }

    #[test]
    fn the_example_config_is_valid_and_documents_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let options = Options::from_file(&path).unwrap();
        let settings = Settings::from_options(options, "config.example.toml").unwrap();
        assert_eq!(settings.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(settings.compression, Compression::Zstd);
        assert_eq!(settings.format, Format::Parquet);
        assert_eq!(settings.log_level, LogLevel::Info);
        assert!(settings.builtin_tables);
        assert!(settings.views.is_empty());
        assert!(settings.resources.is_empty());
        assert_eq!(settings.resource_options, TreeOptions::default());
        assert!(!settings.input_filter.is_active());
        assert_eq!(settings.input_limits(), Limits::default());
    }

    #[test]
    fn sizes_take_bytes_or_binary_units() {
        assert_eq!("65536".parse(), Ok(ByteSize(65536)));
        assert_eq!("512KiB".parse(), Ok(ByteSize(512 << 10)));
        assert_eq!("256 MiB".parse(), Ok(ByteSize(256 << 20)));
        assert_eq!("2GiB".parse(), Ok(ByteSize(2 << 30)));
        for bad in ["", "2GB", "-1", "1.5MiB", "99999999999TiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
        let (_dir, path) = write_config("max_line_bytes = 1024\nmax_json_bytes = \"1GiB\"\n");
        let options = Options::from_file(&path).unwrap();
        assert_eq!(options.max_line_bytes, Some(ByteSize(1024)));
        assert_eq!(options.max_json_bytes, Some(ByteSize(1 << 30)));
        let (_dir, path) = write_config("max_line_bytes = \"lots\"\n");
        let error = Options::from_file(&path).unwrap_err().0;
        assert!(
            error.contains("max_line_bytes") && error.contains("not a size"),
            "{error}"
        );
    }

    /// A value of `T` read from a config file by the name its flag takes.
    fn from_config_name<T: serde::de::DeserializeOwned>(name: &str) -> Result<T, String> {
        let text = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(name);
        T::deserialize(text).map_err(|error| error.to_string())
    }

    fn flag_names_are_config_names<T>()
    where
        T: clap::ValueEnum + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        for value in T::value_variants() {
            let flag = value.to_possible_value().expect("no value is hidden");
            assert_eq!(from_config_name::<T>(flag.get_name()).as_ref(), Ok(value));
        }
        let error = from_config_name::<T>("lz4").unwrap_err();
        assert!(error.contains("`lz4`"), "{error}");
    }

    #[test]
    fn enum_flags_and_config_keys_take_the_same_names() {
        flag_names_are_config_names::<LogLevel>();
        flag_names_are_config_names::<WriteMode>();
        flag_names_are_config_names::<Compression>();
        flag_names_are_config_names::<Format>();
    }

    #[test]
    fn resources_take_all_or_type_names_and_refuse_unknown_ones() {
        let list = |items: &[&str]| items.iter().map(|item| item.to_string()).collect::<Vec<_>>();
        let selection =
            ResourceSelection::parse(&list(&["Observation", "Condition", "Observation"])).unwrap();
        assert_eq!(selection.types(), ["Observation", "Condition"]);
        assert!(selection.written_when_empty("Condition"));
        let all = ResourceSelection::parse(&list(&["all"])).unwrap();
        assert_eq!(all.types().len(), 146);
        assert!(!all.written_when_empty("Observation"), "all alone names no type");
        let both = ResourceSelection::parse(&list(&["all", "Condition"])).unwrap();
        assert_eq!(both.types().len(), 146);
        assert!(both.written_when_empty("Condition") && !both.written_when_empty("Patient"));
        assert!(ResourceSelection::parse(&[]).unwrap().is_empty());
        let error = ResourceSelection::parse(&list(&["Observation", "observation"])).unwrap_err();
        assert!(
            error.contains("\"observation\"") && error.contains("did you mean Observation?"),
            "{error}"
        );
        let error = ResourceSelection::parse(&list(&["medication_request"])).unwrap_err();
        assert!(error.contains("did you mean MedicationRequest?"), "{error}");
        let error = ResourceSelection::parse(&list(&["Quantity"])).unwrap_err();
        assert!(
            error.contains("\"Quantity\" is not an R4 resource type"),
            "{error}"
        );
        assert!(!error.contains("did you mean"), "{error}");
        let error = ResourceSelection::parse(&list(&["ALL"])).unwrap_err();
        assert!(error.contains("did you mean all?"), "{error}");
        assert!(ResourceSelection::parse(&list(&["Patient", ""])).is_err());
    }

    #[test]
    fn resources_and_their_depth_come_from_the_file_and_a_flag_list_replaces_them() {
        let text = "in = \"/a\"\nout = \"/b\"\nresources = [\"Patient\"]\nresources_typed_depth = 3\n";
        let (_dir, path) = write_config(text);
        let settings = Settings::from_options(Options::from_file(&path).unwrap(), "cfg").unwrap();
        assert_eq!(settings.resources.types(), ["Patient"]);
        assert_eq!(settings.resource_options, TreeOptions { typed_depth: 3 });
        let flags = Options {
            resources: Some(vec!["Encounter".into()]),
            ..Options::default()
        };
        let options = Options::from_file(&path).unwrap().overridden_by(flags);
        let settings = Settings::from_options(options, "cfg").unwrap();
        assert_eq!(settings.resources.types(), ["Encounter"]);
        assert_eq!(settings.resource_options.typed_depth, 3, "the file's depth stays");

        let (_dir, path) = write_config("in = \"/a\"\nout = \"/b\"\nresources_typed_depth = 0\n");
        let error = Settings::from_options(Options::from_file(&path).unwrap(), "config file f.toml")
            .unwrap_err()
            .0;
        assert!(
            error.contains("resources_typed_depth") && error.contains("f.toml"),
            "{error}"
        );
        let (_dir, path) = write_config("in = \"/a\"\nout = \"/b\"\nresources = [\"Patiens\"]\n");
        let error = Settings::from_options(Options::from_file(&path).unwrap(), "config file f.toml")
            .unwrap_err()
            .0;
        assert!(error.contains("Patiens") && error.contains("f.toml"), "{error}");
        let (_dir, path) = write_config("resources = \"all\"\n");
        let error = Options::from_file(&path).unwrap_err().0;
        assert!(error.contains("resources"), "a list, not a string: {error}");
    }

    #[test]
    fn missing_in_or_out_is_named() {
        let error = Settings::from_options(Options::default(), "cfg.toml")
            .unwrap_err()
            .0;
        assert!(error.contains("`in`") && error.contains("cfg.toml"), "{error}");
    }
}
