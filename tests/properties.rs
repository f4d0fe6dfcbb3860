//! Property tests (proptest) for the parts that read untrusted text: the input reader, the Bundle
//! walker, the FHIR date/dateTime parser and the FHIRPath parser. Each property compares the code
//! with a small independent model where one exists, not only "does not panic". Case counts keep
//! the whole file to a few seconds in CI; `PROPTEST_CASES=N` raises them for a longer search.

use std::io::Write;
use std::path::Path;

use proptest::prelude::*;

/// Cases per property: small enough that this file runs in a few seconds in CI.
fn cases(count: u32) -> ProptestConfig {
    let count = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(count);
    ProptestConfig {
        cases: count,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

mod reader {
    use super::*;
    use fhir2table::source::{for_each_line, read_whole, split_lines, InputFile, InputFormat, Line};

    fn input(path: &Path, gzip: bool) -> InputFile {
        InputFile {
            path: path.to_path_buf(),
            relative: path.file_name().unwrap().to_string_lossy().into_owned(),
            format: InputFormat::Ndjson,
            gzip,
            size: std::fs::metadata(path).unwrap().len(),
            remote: None,
        }
    }

    fn gzip(content: &[u8], members: usize) -> Vec<u8> {
        // Several gzip members, as `cat a.gz b.gz` or parallel compressors write them.
        let mut compressed = Vec::new();
        let step = content.len().div_ceil(members.max(1)).max(1);
        let chunks: Vec<&[u8]> = if content.is_empty() {
            vec![content]
        } else {
            content.chunks(step).collect()
        };
        for chunk in chunks {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(chunk).unwrap();
            compressed.extend(encoder.finish().unwrap());
        }
        compressed
    }

    /// What the reader gives for one line: its text, or the byte count of a line over the limit.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Text(Vec<u8>),
        TooLong(u64),
    }

    /// The model: lines are what lies between `\n`s; a line ended by `\n` loses one trailing `\r`;
    /// an empty last piece (the text ends with `\n`) is not a line. A line whose text is longer
    /// than `max_line` is reported by its size, line break included.
    fn model_lines_within(content: &[u8], max_line: u64) -> Vec<(u64, Seen)> {
        let mut lines = Vec::new();
        let pieces: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
        let last = pieces.len() - 1;
        for (index, piece) in pieces.into_iter().enumerate() {
            let terminated = index != last;
            if !terminated && piece.is_empty() {
                continue;
            }
            let text = if terminated {
                piece.strip_suffix(b"\r").unwrap_or(piece)
            } else {
                piece
            };
            let seen = if text.len() as u64 > max_line {
                Seen::TooLong(piece.len() as u64 + u64::from(terminated))
            } else {
                Seen::Text(text.to_vec())
            };
            lines.push((index as u64 + 1, seen));
        }
        lines
    }

    fn model_lines(content: &[u8]) -> Vec<(u64, Seen)> {
        model_lines_within(content, u64::MAX)
    }

    fn collect_within(
        file: &InputFile,
        part: Option<&fhir2table::source::Part>,
        max_line: u64,
    ) -> std::io::Result<Vec<(u64, Seen)>> {
        let mut lines = Vec::new();
        for_each_line(file, part, max_line, |number, line| {
            let seen = match line {
                Line::Text(text) => Seen::Text(text.to_vec()),
                Line::TooLong(bytes) => Seen::TooLong(bytes),
            };
            lines.push((number, seen));
        })?;
        Ok(lines)
    }

    fn collect(
        file: &InputFile,
        part: Option<&fhir2table::source::Part>,
    ) -> std::io::Result<Vec<(u64, Seen)>> {
        collect_within(file, part, u64::MAX)
    }

    /// NDJSON-ish text: short lines of bytes that favour `\n`, `\r`, `{`, quotes and non-ASCII.
    fn ndjson_text() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => Just(b'\n'),
            2 => Just(b'\r'),
            2 => Just(b'{'),
            2 => Just(b'"'),
            10 => b'a'..=b'z',
            2 => any::<u8>(),
        ];
        prop::collection::vec(byte, 0..400)
    }

    proptest! {
        #![proptest_config(cases(200))]

        #[test]
        fn lines_are_the_text_split_at_newlines(content in ndjson_text()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.ndjson");
            std::fs::write(&path, &content).unwrap();
            let file = input(&path, false);
            prop_assert_eq!(collect(&file, None).unwrap(), model_lines(&content));
            prop_assert_eq!(read_whole(&file, u64::MAX).unwrap(), content);
        }

        #[test]
        fn lines_over_the_limit_are_reported_by_size(content in ndjson_text(), max_line in 0u64..40, gzipped in any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(if gzipped { "x.ndjson.gz" } else { "x.ndjson" });
            std::fs::write(&path, if gzipped { gzip(&content, 1) } else { content.clone() }).unwrap();
            let file = input(&path, gzipped);
            prop_assert_eq!(collect_within(&file, None, max_line).unwrap(), model_lines_within(&content, max_line));
        }

        #[test]
        fn whole_documents_over_the_limit_are_errors(content in ndjson_text(), max_bytes in 0u64..500, gzipped in any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(if gzipped { "x.json.gz" } else { "x.json" });
            std::fs::write(&path, if gzipped { gzip(&content, 1) } else { content.clone() }).unwrap();
            let file = input(&path, gzipped);
            match read_whole(&file, max_bytes) {
                Ok(read) => {
                    prop_assert!(content.len() as u64 <= max_bytes);
                    prop_assert_eq!(read, content);
                }
                Err(error) => prop_assert!(content.len() as u64 > max_bytes, "{}", error),
            }
        }

        #[test]
        fn parts_tile_the_file_and_give_the_same_lines(content in ndjson_text(), part_bytes in 1u64..200) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.ndjson");
            std::fs::write(&path, &content).unwrap();
            let file = input(&path, false);
            let parts = split_lines(&file, part_bytes).unwrap();
            let mut expected_start = 0;
            let mut from_parts = Vec::new();
            for part in &parts {
                prop_assert_eq!(part.start, expected_start, "parts are contiguous");
                prop_assert!(part.end > part.start, "no empty part");
                prop_assert!(part.start == 0 || content[part.start as usize - 1] == b'\n');
                let lines_before = content[..part.start as usize].iter().filter(|&&b| b == b'\n').count();
                prop_assert_eq!(part.first_line, lines_before as u64 + 1);
                from_parts.extend(collect(&file, Some(part)).unwrap());
                expected_start = part.end;
            }
            prop_assert_eq!(expected_start, content.len() as u64, "parts cover the file");
            prop_assert_eq!(from_parts, model_lines(&content));
        }

        #[test]
        fn gzip_reads_like_the_plain_text(content in ndjson_text(), members in 1usize..4) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.ndjson.gz");
            std::fs::write(&path, gzip(&content, members)).unwrap();
            let file = input(&path, true);
            prop_assert_eq!(collect(&file, None).unwrap(), model_lines(&content));
            prop_assert_eq!(read_whole(&file, u64::MAX).unwrap(), content);
        }

        #[test]
        fn a_cut_gzip_file_is_an_error_not_silently_short(
            content in ndjson_text(),
            cut_fraction in 0.0f64..1.0,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.ndjson.gz");
            let compressed = gzip(&content, 1);
            let cut = ((compressed.len() as f64) * cut_fraction) as usize;
            prop_assume!(cut > 0 && cut < compressed.len());
            std::fs::write(&path, &compressed[..cut]).unwrap();
            let file = input(&path, true);
            prop_assert!(read_whole(&file, u64::MAX).is_err(), "a gzip file cut at {} of {} read without error", cut, compressed.len());
            prop_assert!(collect(&file, None).is_err());
        }
    }
}

mod walker {
    use super::*;
    use fhir2table::diagnostics::Diagnostics;
    use fhir2table::fhir::reference::FullUrlLookup;
    use fhir2table::resource::IdentifierIndex;
    use fhir2table::resource::{Rejection, Resource, ResourceSink, Walker};
    use serde_json::{json, Value};

    /// One Bundle entry of the model.
    #[derive(Debug, Clone)]
    enum Entry {
        Resource {
            resource_type: &'static str,
            id: Option<String>,
            /// A `urn:uuid:` fullUrl tail (ids are unique per generated document).
            full_url: Option<String>,
            /// Whether `resourceType` is the first key (the walker's fast path) or the last.
            type_first: bool,
            contained: bool,
        },
        Nested(Vec<Entry>),
        Delete {
            resource_type: &'static str,
            id: String,
        },
        Empty,
    }

    /// What the walker should report: resources in document order and deletions.
    #[derive(Debug, Default, PartialEq)]
    struct Visits {
        resources: Vec<(String, Option<String>, Option<String>)>,
        deleted: Vec<(String, String)>,
        bundles: u64,
    }

    fn entry() -> impl Strategy<Value = Entry> {
        let types = prop::sample::select(vec!["Patient", "Encounter", "Observation", "Practitioner"]);
        let id = "[A-Za-z0-9.-]{1,12}";
        let leaf = prop_oneof![
            6 => (types.clone(), prop::option::of(id), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
                |(resource_type, id, has_full_url, type_first, contained)| Entry::Resource {
                    resource_type,
                    id,
                    full_url: has_full_url.then(String::new),
                    type_first,
                    contained,
                }
            ),
            1 => (types, id).prop_map(|(resource_type, id)| Entry::Delete { resource_type, id }),
            1 => Just(Entry::Empty),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop::collection::vec(inner, 0..6).prop_map(Entry::Nested)
        })
    }

    /// Gives every fullUrl a unique value so Bundle-scope look-ups are unambiguous.
    fn number_full_urls(entries: &mut [Entry], next: &mut u32) {
        for entry in entries {
            match entry {
                Entry::Resource {
                    full_url: Some(url), ..
                } => {
                    *url = format!("{:08x}-0000-4000-8000-{:012x}", *next, *next);
                    *next += 1;
                }
                Entry::Nested(inner) => number_full_urls(inner, next),
                _ => {}
            }
        }
    }

    fn resource_json(resource_type: &str, id: &Option<String>, type_first: bool, contained: bool) -> String {
        let mut fields = Vec::new();
        if type_first {
            fields.push(format!("\"resourceType\":\"{resource_type}\""));
        }
        if let Some(id) = id {
            fields.push(format!("\"id\":\"{id}\""));
        }
        if contained {
            fields.push(r#""contained":[{"resourceType":"Patient","id":"inner"}]"#.to_owned());
        }
        fields.push(r#""text":{"status":"generated","div":"<div>resourceType</div>"}"#.to_owned());
        if !type_first {
            fields.push(format!("\"resourceType\" : \"{resource_type}\""));
        }
        format!("{{{}}}", fields.join(","))
    }

    fn bundle_json(entries: &[Entry]) -> Value {
        let entries: Vec<Value> = entries
            .iter()
            .map(|entry| match entry {
                Entry::Resource {
                    resource_type,
                    id,
                    full_url,
                    type_first,
                    contained,
                } => {
                    let resource: Value =
                        serde_json::from_str(&resource_json(resource_type, id, *type_first, *contained))
                            .unwrap();
                    match full_url {
                        Some(url) => json!({"fullUrl": format!("urn:uuid:{url}"), "resource": resource}),
                        None => json!({"resource": resource}),
                    }
                }
                Entry::Nested(inner) => json!({"resource": bundle_json(inner)}),
                Entry::Delete { resource_type, id } => {
                    json!({"request": {"method": "DELETE", "url": format!("{resource_type}/{id}")}})
                }
                Entry::Empty => json!({}),
            })
            .collect();
        json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
    }

    fn expected(entries: &[Entry], visits: &mut Visits) {
        visits.bundles += 1;
        for entry in entries {
            match entry {
                Entry::Resource {
                    resource_type,
                    id,
                    full_url,
                    ..
                } => {
                    let full_url = full_url.as_ref().map(|url| format!("urn:uuid:{url}"));
                    visits
                        .resources
                        .push((resource_type.to_string(), id.clone(), full_url));
                }
                Entry::Nested(inner) => expected(inner, visits),
                Entry::Delete { resource_type, id } => {
                    visits.deleted.push((resource_type.to_string(), id.clone()))
                }
                Entry::Empty => {}
            }
        }
        // The Bundle itself comes after its entries (its envelope needs to know which of them
        // became rows), to a sink that wants Bundles.
        visits.resources.push(("Bundle".to_owned(), None, None));
    }

    /// Records what it is given and checks each resource's Bundle scope finds the resource itself.
    #[derive(Default)]
    struct Recorder {
        visits: Visits,
        scope_errors: Vec<String>,
    }

    impl ResourceSink for Recorder {
        fn wants(&self, _resource_type: &str) -> bool {
            true
        }

        fn accept(
            &mut self,
            resource: &Resource<'_>,
            _diagnostics: &mut Diagnostics,
        ) -> Result<(), Rejection> {
            let tree: Value =
                serde_json::from_str(resource.raw).map_err(|e| Rejection::from(e.to_string()))?;
            if tree["resourceType"] != resource.resource_type {
                self.scope_errors
                    .push(format!("raw text is not the {} resource", resource.resource_type));
            }
            let id = tree["id"].as_str().map(str::to_owned);
            if let (Some(scope), Some(url)) = (resource.bundle, resource.full_url) {
                let expected_id = id
                    .clone()
                    .or_else(|| url.strip_prefix("urn:uuid:").map(str::to_owned));
                match scope.entry(url) {
                    Some(target)
                        if target.resource_type == resource.resource_type
                            && target.id.as_deref() == expected_id.as_deref() => {}
                    _ => self
                        .scope_errors
                        .push(format!("{url} not found as itself in its Bundle")),
                }
            }
            self.visits.resources.push((
                resource.resource_type.to_owned(),
                id,
                resource.full_url.map(str::to_owned),
            ));
            Ok(())
        }

        fn deleted(&mut self, resource_type: &str, id: &str) {
            self.visits
                .deleted
                .push((resource_type.to_owned(), id.to_owned()));
        }
    }

    fn walk(text: &str) -> (Result<bool, String>, Recorder, Diagnostics) {
        let mut recorder = Recorder::default();
        let mut index = IdentifierIndex::default();
        let mut diagnostics = Diagnostics::default();
        let outcome = Walker {
            sink: &mut recorder,
            index: &mut index,
            diagnostics: &mut diagnostics,
        }
        .document("x.json", text, 1)
        .map_err(|error| error.message);
        (outcome, recorder, diagnostics)
    }

    fn document() -> impl Strategy<Value = (Vec<Entry>, bool)> {
        (prop::collection::vec(entry(), 0..8), any::<bool>()).prop_map(|(mut entries, pretty)| {
            number_full_urls(&mut entries, &mut 0);
            (entries, pretty)
        })
    }

    proptest! {
        #![proptest_config(cases(200))]

        #[test]
        fn every_resource_of_nested_bundles_is_visited_once_in_order((entries, pretty) in document()) {
            let bundle = bundle_json(&entries);
            let text = if pretty { serde_json::to_string_pretty(&bundle) } else { serde_json::to_string(&bundle) }.unwrap();
            let (outcome, recorder, diagnostics) = walk(&text);
            let mut want = Visits::default();
            expected(&entries, &mut want);
            prop_assert_eq!(outcome, Ok(true));
            prop_assert_eq!(&recorder.scope_errors, &Vec::<String>::new());
            prop_assert_eq!(&recorder.visits.resources, &want.resources);
            prop_assert_eq!(&recorder.visits.deleted, &want.deleted);
            prop_assert_eq!(diagnostics.resources.get("Bundle").copied().unwrap_or(0), want.bundles);
            prop_assert_eq!(diagnostics.error_count, 0);
        }

        #[test]
        fn a_lone_resource_is_one_visit(
            resource_type in prop::sample::select(vec!["Patient", "Encounter", "Observation", "Practitioner"]),
            id in prop::option::of("[A-Za-z0-9.-]{1,12}"),
            type_first in any::<bool>(),
            contained in any::<bool>(),
        ) {
            let text = resource_json(resource_type, &id, type_first, contained);
            let (outcome, recorder, _) = walk(&text);
            prop_assert_eq!(outcome, Ok(true));
            prop_assert_eq!(recorder.visits.resources, vec![(resource_type.to_owned(), id, None)]);
        }

        /// Damaged Bundles never panic, and the walker's verdict agrees with what it recorded:
        /// "clean" exactly when no error was recorded.
        #[test]
        fn damaged_bundles_are_reported_consistently(
            (entries, pretty) in document(),
            damage in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(b"{}[]\":,x0\\ ".to_vec())), 1..6),
        ) {
            let bundle = bundle_json(&entries);
            let text = if pretty { serde_json::to_string_pretty(&bundle) } else { serde_json::to_string(&bundle) }.unwrap();
            let mut bytes = text.into_bytes();
            for (at, byte) in damage {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            let text = String::from_utf8_lossy(&bytes);
            let (outcome, recorder, diagnostics) = walk(&text);
            match outcome {
                Ok(true) => prop_assert_eq!(diagnostics.error_count, 0),
                Ok(false) => prop_assert!(diagnostics.error_count > 0),
                Err(message) => prop_assert!(!message.is_empty()),
            }
            // Every resource handed over is the JSON object of the type it was announced as.
            prop_assert!(recorder.scope_errors.iter().all(|e| !e.starts_with("raw text")), "{:?}", recorder.scope_errors);
        }
    }
}

mod datetime {
    use super::*;
    use fhir2table::fhir::datetime::days_in_month;
    use fhir2table::fhir::{format_date, format_timestamp, parse_date, parse_datetime};

    const MICROS_PER_DAY: i64 = 86_400_000_000;

    /// Days from 1970-01-01 by counting whole years and months: a different method from the
    /// parser's era arithmetic.
    fn model_days(year: i64, month: i64, day: i64) -> i64 {
        let years_before = year - 1;
        let days_before_year =
            365 * years_before + years_before / 4 - years_before / 100 + years_before / 400;
        let days_before_month: i64 = (1..month).map(|m| days_in_month(year, m)).sum();
        days_before_year + days_before_month + day - 1 - 719_162
    }

    #[derive(Debug, Clone)]
    struct Time {
        hour: i64,
        minute: i64,
        second: i64,
        fraction: Option<String>,
        /// `None`: no zone; `Some(0)` may be written `Z` or `+00:00`.
        offset_minutes: Option<i64>,
        zulu: bool,
    }

    fn valid_date() -> impl Strategy<Value = (i64, i64, i64)> {
        (1i64..=9999, 1i64..=12)
            .prop_flat_map(|(year, month)| (Just(year), Just(month), 1..=days_in_month(year, month)))
    }

    fn valid_time() -> impl Strategy<Value = Time> {
        (
            0i64..24,
            0i64..60,
            0i64..=60,
            prop::option::of("[0-9]{1,9}"),
            prop::option::of(-(14 * 60i64)..=(14 * 60)),
            any::<bool>(),
        )
            .prop_map(|(hour, minute, second, fraction, offset_minutes, zulu)| Time {
                hour,
                minute,
                second,
                fraction,
                offset_minutes,
                zulu,
            })
    }

    fn write_time(time: &Time) -> String {
        let mut text = format!("T{:02}:{:02}:{:02}", time.hour, time.minute, time.second);
        if let Some(fraction) = &time.fraction {
            text.push('.');
            text.push_str(fraction);
        }
        match time.offset_minutes {
            None => {}
            Some(0) if time.zulu => text.push('Z'),
            Some(offset) => {
                let sign = if offset < 0 { '-' } else { '+' };
                text.push_str(&format!(
                    "{sign}{:02}:{:02}",
                    offset.abs() / 60,
                    offset.abs() % 60
                ));
            }
        }
        text
    }

    fn model_micros(date: (i64, i64, i64), time: &Time) -> i64 {
        let local = time.hour * 3600 + time.minute * 60 + time.second - time.offset_minutes.unwrap_or(0) * 60;
        let fraction = time.fraction.as_deref().map_or(0, |digits| {
            let six: String = digits.chars().chain(std::iter::repeat('0')).take(6).collect();
            six.parse::<i64>().unwrap()
        });
        model_days(date.0, date.1, date.2) * MICROS_PER_DAY + local * 1_000_000 + fraction
    }

    /// An independent reading of the documented grammar, by splitting the text: `YYYY[-MM[-DD]]`.
    fn model_date(text: &str) -> Option<(i64, i64, i64)> {
        let fields: Vec<&str> = text.split('-').collect();
        let widths = [4, 2, 2];
        if fields.len() > 3 {
            return None;
        }
        let mut numbers = Vec::new();
        for (field, width) in fields.iter().zip(widths) {
            if field.len() != width || !field.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            numbers.push(field.parse::<i64>().unwrap());
        }
        let (year, month, day) = (
            numbers[0],
            *numbers.get(1).unwrap_or(&1),
            *numbers.get(2).unwrap_or(&1),
        );
        let valid = (1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month);
        valid.then_some((year, month, day))
    }

    fn model_datetime(text: &str) -> Option<i64> {
        let (date_text, time_text) = match text.split_once('T') {
            Some((date, time)) => (date, Some(time)),
            None => (text, None),
        };
        let date = model_date(date_text)?;
        let Some(time_text) = time_text else {
            return Some(model_days(date.0, date.1, date.2) * MICROS_PER_DAY);
        };
        if date_text.len() != 10 {
            return None;
        }
        let (clock, zone) = match time_text.find(['Z', '+', '-']) {
            Some(at) => time_text.split_at(at),
            None => (time_text, ""),
        };
        let (hms, fraction) = match clock.split_once('.') {
            Some((hms, fraction)) => (hms, Some(fraction)),
            None => (clock, None),
        };
        let parts: Vec<&str> = hms.split(':').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        let [hour, minute, second] = [0, 1, 2].map(|i| parts[i].parse::<i64>().unwrap());
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        if let Some(fraction) = fraction {
            if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
        }
        let offset_minutes = match zone {
            "" | "Z" => 0,
            _ => {
                let (sign, rest) = zone.split_at(1);
                if sign != "+" && sign != "-" {
                    return None;
                }
                let (hours, minutes) = rest.split_once(':')?;
                let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
                if !digits(hours) || !digits(minutes) {
                    return None;
                }
                let (hours, minutes) = (hours.parse::<i64>().unwrap(), minutes.parse::<i64>().unwrap());
                // FHIR: offsets run from -14:00 to +14:00.
                if hours * 60 + minutes > 14 * 60 || minutes > 59 {
                    return None;
                }
                let magnitude = hours * 60 + minutes;
                if sign == "-" {
                    -magnitude
                } else {
                    magnitude
                }
            }
        };
        let time = Time {
            hour,
            minute,
            second,
            fraction: fraction.map(str::to_owned),
            offset_minutes: Some(offset_minutes),
            zulu: false,
        };
        Some(model_micros(date, &time))
    }

    /// Text made mostly of the characters dates are written with, so near-misses are common.
    fn date_like() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "2019",
            "0000",
            "9999",
            "1900",
            "2000",
            "-",
            "01",
            "02",
            "12",
            "13",
            "29",
            "30",
            "31",
            "00",
            "T",
            ":",
            "23",
            "24",
            "59",
            "60",
            ".",
            "5",
            "123456789",
            "Z",
            "+",
            "14",
            "15",
            "-05:00",
            "+14:00",
            "+14:01",
            " ",
        ]);
        // Each part of a dateTime present or not, mostly in range, sometimes just out of it.
        let part = |present: f64, values: Vec<&'static str>| {
            prop::option::weighted(present, prop::sample::select(values))
        };
        let parts = (
            prop::sample::select(vec!["2019", "0001", "9999", "2000", "1900", "0000", "019"]),
            part(0.7, vec!["-01", "-02", "-12", "-13", "-00"]),
            part(0.7, vec!["-01", "-28", "-29", "-30", "-31", "-32"]),
            part(0.7, vec!["T00:00", "T23:59", "T10:30", "T24:00", "T10"]),
            part(0.8, vec![":00", ":59", ":60", ":61", ":5"]),
            part(0.3, vec![".0", ".123456", ".1234567", ".", ".x"]),
            part(
                0.5,
                vec![
                    "Z", "+00:00", "-05:00", "+14:00", "-14:00", "+14:01", "+15:00", "+0500", "z",
                ],
            ),
        )
            .prop_map(|(year, month, day, clock, seconds, fraction, zone)| {
                [Some(year), month, day, clock, seconds, fraction, zone]
                    .into_iter()
                    .flatten()
                    .collect::<String>()
            });
        prop_oneof![
            4 => parts,
            1 => prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat()),
            1 => "[0-9\\-:TZ+.]{0,30}",
            1 => "[12][0-9]{3}(-[01][0-9](-[0-3][0-9](T[0-2][0-9]:[0-6][0-9](:[0-6][0-9](\\.[0-9]{0,3})?)?([Z+\\-]([01][0-9]:[0-6][0-9])?)?)?)?)?",
            1 => any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(cases(300))]

        #[test]
        fn valid_dates_parse_to_their_day_and_round_trip((year, month, day) in valid_date()) {
            let text = format!("{year:04}-{month:02}-{day:02}");
            let days = model_days(year, month, day);
            prop_assert_eq!(parse_date(&text), Some(days as i32));
            prop_assert_eq!(format_date(days as i32), text.clone());
            prop_assert_eq!(parse_datetime(&text), Some(days * MICROS_PER_DAY));
            // Partial dates are their first day.
            prop_assert_eq!(parse_date(&format!("{year:04}-{month:02}")), Some(model_days(year, month, 1) as i32));
            prop_assert_eq!(parse_date(&format!("{year:04}")), Some(model_days(year, 1, 1) as i32));
        }

        #[test]
        fn days_past_the_end_of_the_month_are_rejected(year in 1i64..=9999, month in 1i64..=12, extra in 1i64..=10) {
            let day = days_in_month(year, month) + extra;
            prop_assume!(day <= 99);
            prop_assert_eq!(parse_date(&format!("{year:04}-{month:02}-{day:02}")), None);
        }

        #[test]
        fn valid_datetimes_are_their_utc_instant(date in valid_date(), time in valid_time()) {
            let text = format!("{:04}-{:02}-{:02}{}", date.0, date.1, date.2, write_time(&time));
            let micros = model_micros(date, &time);
            prop_assert_eq!(parse_datetime(&text), Some(micros), "{}", text);
            // The canonical UTC text reads back as the same instant.
            prop_assert_eq!(parse_datetime(&format_timestamp(micros)), Some(micros));
        }

        #[test]
        fn any_text_agrees_with_the_model(text in date_like()) {
            prop_assert_eq!(parse_date(&text), model_date(&text).map(|(y, m, d)| model_days(y, m, d) as i32), "{:?}", text);
            prop_assert_eq!(parse_datetime(&text), model_datetime(&text), "{:?}", text);
        }
    }
}

mod fhirpath {
    use super::*;
    use fhir2table::view::fhirpath::{parse, Expr, Op};

    const KEYWORDS: &[&str] = &[
        "true", "false", "div", "mod", "is", "as", "in", "contains", "and", "or", "xor", "implies",
    ];

    const OPERATORS: &[(Op, &str, u8)] = &[
        (Op::Implies, "implies", 1),
        (Op::Or, "or", 2),
        (Op::Xor, "xor", 2),
        (Op::And, "and", 3),
        (Op::In, "in", 4),
        (Op::Contains, "contains", 4),
        (Op::Equal, "=", 5),
        (Op::NotEqual, "!=", 5),
        (Op::Equivalent, "~", 5),
        (Op::NotEquivalent, "!~", 5),
        (Op::Less, "<", 6),
        (Op::Greater, ">", 6),
        (Op::LessOrEqual, "<=", 6),
        (Op::GreaterOrEqual, ">=", 6),
        (Op::Union, "|", 7),
        (Op::Add, "+", 9),
        (Op::Subtract, "-", 9),
        (Op::Concatenate, "&", 9),
        (Op::Multiply, "*", 10),
        (Op::Divide, "/", 10),
        (Op::IntegerDivide, "div", 10),
        (Op::Modulo, "mod", 10),
    ];

    /// Binding powers, as the FHIRPath specification orders the operators.
    const TYPE_TEST: u8 = 8;
    const NEGATE: u8 = 11;
    /// A date literal swallows a following `.name`, so it binds below the postfix operators.
    const DATE_LITERAL: u8 = 12;
    const POSTFIX: u8 = 13;
    const ATOM: u8 = 14;

    fn operator(op: Op) -> (&'static str, u8) {
        let &(_, symbol, power) = OPERATORS.iter().find(|(o, _, _)| *o == op).unwrap();
        (symbol, power)
    }

    fn identifier() -> impl Strategy<Value = String> {
        "[a-zA-Z_][a-zA-Z0-9_]{0,6}".prop_filter("not a keyword", |name| !KEYWORDS.contains(&name.as_str()))
    }

    fn quote(text: &str, quote: char) -> String {
        let mut quoted = String::from(quote);
        for c in text.chars() {
            match c {
                '\\' => quoted.push_str("\\\\"),
                '\n' => quoted.push_str("\\n"),
                '\t' => quoted.push_str("\\t"),
                c if c == quote => {
                    quoted.push('\\');
                    quoted.push(c);
                }
                c => quoted.push(c),
            }
        }
        quoted.push(quote);
        quoted
    }

    fn invocation() -> impl Strategy<Value = Expr> {
        identifier().prop_map(Expr::Member)
    }

    fn expression() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            Just(Expr::Empty),
            any::<bool>().prop_map(Expr::Boolean),
            (0i64..=i64::MAX).prop_map(Expr::Integer),
            "[0-9]{1,4}\\.[0-9]{1,4}".prop_map(Expr::Decimal),
            any::<String>().prop_map(Expr::String),
            "[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{3})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
                .prop_map(Expr::DateTime),
            Just(Expr::This),
            identifier().prop_map(Expr::Variable),
            prop::sample::select(vec!["$index", "$total"]).prop_map(|name| Expr::Variable(name.to_owned())),
            invocation(),
        ];
        leaf.prop_recursive(5, 48, 4, |inner| {
            let ops: Vec<Op> = OPERATORS.iter().map(|(op, _, _)| *op).collect();
            prop_oneof![
                (prop::sample::select(ops), inner.clone(), inner.clone())
                    .prop_map(|(op, left, right)| Expr::Binary(op, Box::new(left), Box::new(right))),
                (inner.clone(), invocation())
                    .prop_map(|(base, member)| Expr::Invoke(Box::new(base), Box::new(member))),
                (
                    inner.clone(),
                    identifier(),
                    prop::collection::vec(inner.clone(), 0..3)
                )
                    .prop_map(|(base, name, arguments)| Expr::Invoke(
                        Box::new(base),
                        Box::new(Expr::Function(name, arguments))
                    )),
                (identifier(), prop::collection::vec(inner.clone(), 0..3))
                    .prop_map(|(name, arguments)| Expr::Function(name, arguments)),
                (inner.clone(), inner.clone())
                    .prop_map(|(base, index)| Expr::Index(Box::new(base), Box::new(index))),
                inner.clone().prop_map(|operand| Expr::Negate(Box::new(operand))),
                (any::<bool>(), inner, "[A-Z][a-zA-Z]{0,5}(\\.[a-zA-Z]{1,5})?")
                    .prop_map(|(is, operand, type_name)| Expr::TypeTest(is, Box::new(operand), type_name)),
            ]
        })
    }

    /// Prints `expr` with parentheses only where precedence requires them, so parsing the text
    /// tests precedence and associativity, not only the tokens. Returns the text and its power.
    fn print(expr: &Expr) -> (String, u8) {
        let wrapped = |expr: &Expr, min: u8| {
            let (text, power) = print(expr);
            if power < min {
                format!("({text})")
            } else {
                text
            }
        };
        match expr {
            Expr::Empty => ("{}".into(), ATOM),
            Expr::Boolean(value) => (value.to_string(), ATOM),
            Expr::Integer(value) => (value.to_string(), ATOM),
            Expr::Decimal(text) => (text.clone(), ATOM),
            Expr::String(text) => (quote(text, '\''), ATOM),
            Expr::DateTime(text) => (format!("@{text}"), DATE_LITERAL),
            Expr::This => ("$this".into(), ATOM),
            Expr::Variable(name) if name.starts_with('$') => (name.clone(), ATOM),
            Expr::Variable(name) => (format!("%{name}"), ATOM),
            Expr::Member(name) => (name.clone(), ATOM),
            Expr::Function(name, arguments) => {
                let arguments: Vec<String> = arguments.iter().map(|a| print(a).0).collect();
                (format!("{name}({})", arguments.join(", ")), ATOM)
            }
            Expr::Invoke(base, member) => {
                (format!("{}.{}", wrapped(base, POSTFIX), print(member).0), POSTFIX)
            }
            Expr::Index(base, index) => (format!("{}[{}]", wrapped(base, POSTFIX), print(index).0), POSTFIX),
            Expr::Negate(operand) => (format!("-{}", wrapped(operand, POSTFIX)), NEGATE),
            Expr::TypeTest(is, operand, type_name) => {
                let keyword = if *is { "is" } else { "as" };
                (
                    format!("{} {keyword} {type_name}", wrapped(operand, TYPE_TEST)),
                    TYPE_TEST,
                )
            }
            Expr::Binary(op, left, right) => {
                let (symbol, power) = operator(*op);
                (
                    format!("{} {symbol} {}", wrapped(left, power), wrapped(right, power + 1)),
                    power,
                )
            }
        }
    }

    proptest! {
        #![proptest_config(cases(400))]

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn fhirpath_like_text_never_panics(text in "[a-z0-9 .()\\[\\]'`%$@,+\\-*/|=<>!~&{}\\\\:]{0,40}") {
            if let Err(error) = parse(&text) {
                prop_assert!(error.position <= text.chars().count(), "{:?} at {}", text, error.position);
            }
        }

        #[test]
        fn printed_expressions_parse_back_to_the_same_tree(expr in expression()) {
            let text = print(&expr).0;
            prop_assert_eq!(parse(&text), Ok(expr), "{}", text);
        }
    }
}
