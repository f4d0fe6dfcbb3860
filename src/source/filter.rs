//! `--include` / `--exclude`: which paths under `--in` a run looks at, by globs in the syntax fd
//! and ripgrep users know (the `globset` crate, from ripgrep).
//!
//! Globs are matched against the path relative to `--in`, with `/` separators:
//!
//! - A glob without a `/` matches a file or folder name at any depth: `log.ndjson`, `*.log`,
//!   `deleted`.
//! - A glob with a `/` is matched from `--in`: `deleted/*.ndjson`, `2024-*/Patient.*`; a leading
//!   `/` only anchors (`/log.ndjson` is the top-level one alone).
//! - A trailing `/` matches folders only (`tmp/`).
//! - `*` and `?` stop at `/`; `**` spans folders; `[a-z]`, `{a,b}` as usual; `\` escapes.
//!
//! An excluded folder is not entered. With include globs, a file is read only if one of them
//! matches it or a folder it lies in. Exclude wins over include, whatever their order.

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

/// The compiled `--include` and `--exclude` globs. The default filter lets everything through.
#[derive(Debug, Clone, Default)]
pub struct InputFilter {
    include: Option<GlobRules>,
    exclude: GlobRules,
}

/// One side's globs, split by whether they match any path or folders only (trailing `/`).
#[derive(Debug, Clone, Default)]
struct GlobRules {
    any: GlobSet,
    folders_only: GlobSet,
}

impl GlobRules {
    /// Compiles `globs`; `side` (include, exclude) names them in error messages.
    fn compile(globs: &[String], side: &str) -> Result<GlobRules, String> {
        let mut any = GlobSetBuilder::new();
        let mut folders_only = GlobSetBuilder::new();
        for glob in globs {
            let (pattern, folder_only) =
                normalise(glob).ok_or_else(|| format!("{side} glob '{glob}' matches nothing"))?;
            let compiled = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("{side} glob '{glob}' is not valid: {}", e.kind()))?;
            if folder_only {
                folders_only.add(compiled);
            } else {
                any.add(compiled);
            }
        }
        let build = |set: GlobSetBuilder| set.build().map_err(|e| format!("{side} globs: {e}"));
        Ok(GlobRules {
            any: build(any)?,
            folders_only: build(folders_only)?,
        })
    }

    fn matches(&self, path: &Candidate<'_>, is_folder: bool) -> bool {
        self.any.is_match_candidate(path) || (is_folder && self.folders_only.is_match_candidate(path))
    }
}

/// A glob as given, rewritten to match paths relative to `--in`: a name without `/` gets `**/` in
/// front (any depth), a leading `/` is dropped (anchored), a trailing `/` means folders only.
/// `None` for a glob with nothing left to match.
fn normalise(glob: &str) -> Option<(String, bool)> {
    let (glob, folder_only) = match glob.strip_suffix('/') {
        Some(rest) => (rest, true),
        None => (glob, false),
    };
    let (glob, anchored) = match glob.strip_prefix('/') {
        Some(rest) => (rest, true),
        None => (glob, false),
    };
    if glob.is_empty() {
        return None;
    }
    let pattern = if anchored || glob.contains('/') || glob == "**" {
        glob.to_owned()
    } else {
        format!("**/{glob}")
    };
    Some((pattern, folder_only))
}

impl InputFilter {
    /// Compiles the globs of `--include` and `--exclude`; an invalid glob is described in the
    /// error. No include globs means every file not excluded is read.
    pub fn new(include: &[String], exclude: &[String]) -> Result<InputFilter, String> {
        let include = match include {
            [] => None,
            globs => Some(GlobRules::compile(globs, "include")?),
        };
        Ok(InputFilter {
            include,
            exclude: GlobRules::compile(exclude, "exclude")?,
        })
    }

    /// Whether the walk enters the folder at `relative` (a path under `--in`): not when an
    /// exclude glob matches it.
    pub fn enters_folder(&self, relative: &str) -> bool {
        !self.exclude.matches(&Candidate::new(relative), true)
    }

    /// Whether the file at `relative` is read: not when an exclude glob matches it; when there
    /// are include globs, only when one matches it or one of the folders it lies in. (Excluded
    /// folders are never entered, so their files do not get here.)
    pub fn reads_file(&self, relative: &str) -> bool {
        if self.exclude.matches(&Candidate::new(relative), false) {
            return false;
        }
        let Some(include) = &self.include else {
            return true;
        };
        include.matches(&Candidate::new(relative), false)
            || folders_of(relative).any(|folder| include.matches(&Candidate::new(folder), true))
    }

    /// Whether any glob was given: without, nothing is ever left out.
    pub fn is_active(&self) -> bool {
        self.include.is_some() || !self.exclude.any.is_empty() || !self.exclude.folders_only.is_empty()
    }
}

/// The folders a relative path lies in, outermost first: `a/b/c.json` gives `a`, `a/b`.
fn folders_of(relative: &str) -> impl Iterator<Item = &str> {
    relative.match_indices('/').map(|(end, _)| &relative[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> InputFilter {
        let owned = |globs: &[&str]| globs.iter().map(|g| g.to_string()).collect::<Vec<_>>();
        InputFilter::new(&owned(include), &owned(exclude)).unwrap()
    }

    #[test]
    fn a_name_without_a_slash_matches_at_any_depth() {
        let rules = filter(&[], &["log.ndjson"]);
        assert!(!rules.reads_file("log.ndjson"));
        assert!(!rules.reads_file("2024/01/log.ndjson"));
        assert!(rules.reads_file("Patient.ndjson"));
        assert!(rules.reads_file("log.ndjson.gz"));
        assert!(rules.reads_file("catalog.ndjson"));
        let rules = filter(&[], &["*.log.ndjson"]);
        assert!(!rules.reads_file("a/b/error.log.ndjson"));
        assert!(rules.reads_file("a/b/error.ndjson"));
    }

    #[test]
    fn a_glob_with_a_slash_is_matched_from_the_input_folder() {
        let rules = filter(&[], &["deleted/*.ndjson"]);
        assert!(!rules.reads_file("deleted/Patient.ndjson"));
        assert!(rules.reads_file("x/deleted/Patient.ndjson"));
        assert!(rules.reads_file("deleted/sub/Patient.ndjson"), "* stops at /");
        let rules = filter(&[], &["deleted/**"]);
        assert!(!rules.reads_file("deleted/sub/Patient.ndjson"));
        let rules = filter(&[], &["/log.ndjson"]);
        assert!(!rules.reads_file("log.ndjson"));
        assert!(rules.reads_file("sub/log.ndjson"), "a leading / anchors");
    }

    #[test]
    fn excluded_folders_are_not_entered_and_a_trailing_slash_means_folders_only() {
        let rules = filter(&[], &["deleted"]);
        assert!(!rules.enters_folder("deleted"));
        assert!(!rules.enters_folder("2024/deleted"));
        assert!(rules.enters_folder("2024"));
        let rules = filter(&[], &["tmp/"]);
        assert!(!rules.enters_folder("a/tmp"));
        assert!(rules.reads_file("a/tmp"), "a file named tmp is not a folder");
    }

    #[test]
    fn include_globs_keep_only_matching_files_or_files_in_matching_folders() {
        let rules = filter(&["*.ndjson"], &[]);
        assert!(rules.reads_file("a/Patient.ndjson"));
        assert!(!rules.reads_file("a/Bundle.json"));
        assert!(rules.enters_folder("a"), "include globs never stop the walk");
        let rules = filter(&["2024-06"], &[]);
        assert!(rules.reads_file("2024-06/x/Patient.ndjson"));
        assert!(!rules.reads_file("2024-07/Patient.ndjson"));
        let rules = filter(&["Patient.*", "Encounter.*"], &[]);
        assert!(rules.reads_file("Encounter.ndjson.gz"));
        assert!(!rules.reads_file("Observation.ndjson"));
    }

    #[test]
    fn exclude_wins_over_include() {
        let rules = filter(&["*.ndjson"], &["log.ndjson"]);
        assert!(rules.reads_file("Patient.ndjson"));
        assert!(!rules.reads_file("log.ndjson"));
        let rules = filter(&["log.ndjson"], &["*.ndjson"]);
        assert!(!rules.reads_file("log.ndjson"));
    }

    #[test]
    fn globs_are_case_sensitive_and_support_classes_and_alternatives() {
        let rules = filter(&[], &["{log,errors}.ndjson", "[0-9]*.json"]);
        assert!(!rules.reads_file("errors.ndjson"));
        assert!(!rules.reads_file("sub/7-bundle.json"));
        assert!(rules.reads_file("Log.ndjson"));
        assert!(rules.reads_file("bundle7.json"));
    }

    #[test]
    fn no_globs_let_everything_through() {
        let rules = InputFilter::default();
        assert!(!rules.is_active());
        assert!(rules.reads_file("a/b.json") && rules.enters_folder("a"));
        assert!(filter(&[], &["x"]).is_active() && filter(&["x"], &[]).is_active());
        assert!(filter(&[], &["x/"]).is_active());
    }

    #[test]
    fn bad_globs_are_described() {
        let error = InputFilter::new(&[], &["[a".to_string()]).unwrap_err();
        assert!(
            error.contains("exclude glob '[a'") && error.contains("unclosed"),
            "{error}"
        );
        let error = InputFilter::new(&["/".to_string()], &[]).unwrap_err();
        assert!(error.contains("include glob '/' matches nothing"), "{error}");
        let error = InputFilter::new(&[], &["//".to_string()]).unwrap_err();
        assert!(error.contains("exclude glob '//' matches nothing"), "{error}");
        let error = InputFilter::new(&["{a".to_string()], &[]).unwrap_err();
        assert!(error.contains("include glob '{a' is not valid"), "{error}");
    }
}
