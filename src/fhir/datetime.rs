//! FHIR `date`, `dateTime` and `instant` values, parsed by hand so that every table reads them the
//! same way: partial values mean their earliest instant, offsets are folded into UTC, and anything
//! that is not a valid FHIR value is rejected (callers turn that into a null plus a warning).

/// Microseconds in one day; the unit of `Timestamp(Microsecond, "UTC")`.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// `YYYY-MM-DD`: the only date a time of day may follow.
const FULL_DATE_LENGTH: usize = 10;

/// The largest zone offset FHIR allows (`+14:00`), in seconds.
const MAX_OFFSET_SECONDS: i64 = 14 * 3600;

/// Days since 1970-01-01 of a FHIR `date` (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`), or `None` when the
/// text is not a valid FHIR date. A partial date is its first day, as the contract requires.
pub fn parse_date(text: &str) -> Option<i32> {
    let mut cursor = Cursor::new(text);
    let date = cursor.date()?;
    cursor.at_end().then(|| date.days_since_epoch() as i32)
}

/// Days since 1970-01-01 of the calendar date a FHIR `date`, `dateTime` or `instant` is written
/// on (`2019-02-16T23:30:00-05:00` → 2019-02-16: the date as written, not moved to UTC; a partial
/// date is its first day), or `None` when the text is not a valid FHIR value of those types.
pub fn calendar_date(text: &str) -> Option<i32> {
    match text.split_once('T') {
        None => parse_date(text),
        Some((date, _)) => parse_datetime(text).and_then(|_| parse_date(date)),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a system time (UTC), to the second: run reports and the lock's
/// note of when its holder started.
pub fn format_utc(time: std::time::SystemTime) -> String {
    let seconds = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    format_timestamp(seconds * 1_000_000)
}

/// The first and last day (`YYYY-MM-DD`) a FHIR `date` can mean (`2024-02` runs from
/// `2024-02-01` to `2024-02-29`), or `None` when the text is not a valid FHIR date. FHIRPath's
/// `lowBoundary()` / `highBoundary()` stand on it, so views read dates by the tables' rule.
pub fn date_range(text: &str) -> Option<(String, String)> {
    let mut cursor = Cursor::new(text);
    let first = cursor.date()?;
    if !cursor.at_end() {
        return None;
    }
    let last = first.last_day(text.len());
    let show = |date: CalendarDate| format!("{:04}-{:02}-{:02}", date.year, date.month, date.day);
    Some((show(first), show(last)))
}

/// Microseconds since the Unix epoch (UTC) of a FHIR `dateTime` or `instant`, or `None` when the
/// text is not valid. Partial and zone-less values are read as the earliest instant they can mean,
/// in UTC; fractional seconds beyond the microsecond are truncated.
pub fn parse_datetime(text: &str) -> Option<i64> {
    let mut cursor = Cursor::new(text);
    let date = cursor.date()?;
    if cursor.at_end() {
        return Some(date.days_since_epoch() * MICROS_PER_DAY);
    }
    time_of_day(cursor, &date).map(|(micros, _)| micros)
}

/// [`parse_datetime`]'s instant of a value whose `date` the cursor has read, at the rest of the
/// text (not empty), with the count of digits written after the seconds' point (0 when there
/// are none): how precise the value is.
fn time_of_day(mut cursor: Cursor<'_>, date: &CalendarDate) -> Option<(i64, usize)> {
    let day_micros = date.days_since_epoch() * MICROS_PER_DAY;
    // A time of day follows only a full date (`2019T10:00:00` is not a FHIR dateTime).
    if cursor.position != FULL_DATE_LENGTH {
        return None;
    }
    cursor.expect(b'T')?;
    let hour = cursor.number(2, 0, 23)?;
    cursor.expect(b':')?;
    let minute = cursor.number(2, 0, 59)?;
    cursor.expect(b':')?;
    // FHIR allows a leap second (60); it is read as the first instant of the next minute.
    let second = cursor.number(2, 0, 60)?;
    let mut fraction_micros = 0i64;
    let mut fraction_digits = 0;
    if cursor.peek() == Some(b'.') {
        cursor.advance(1);
        let digits = cursor.digits();
        if digits.is_empty() {
            return None;
        }
        fraction_digits = digits.len();
        fraction_micros = micros_of_fraction(digits.as_bytes());
    }
    let offset_seconds = match cursor.peek() {
        None => 0,
        Some(b'Z') => {
            cursor.advance(1);
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            cursor.advance(1);
            let hours = cursor.number(2, 0, 14)?;
            cursor.expect(b':')?;
            let minutes = cursor.number(2, 0, 59)?;
            zone_offset(sign, hours, minutes)?
        }
        Some(_) => return None,
    };
    if !cursor.at_end() {
        return None;
    }
    let local_seconds = hour * 3600 + minute * 60 + second;
    let micros = day_micros + (local_seconds - offset_seconds) * 1_000_000 + fraction_micros;
    Some((micros, fraction_digits))
}

/// The microseconds the digits after a seconds' point give (the first six; the rest are
/// truncated).
fn micros_of_fraction(digits: &[u8]) -> i64 {
    let kept = digits.len().min(6);
    let micros = digits[..kept]
        .iter()
        .fold(0, |micros, digit| micros * 10 + i64::from(digit - b'0'));
    micros * 10i64.pow((6 - kept) as u32)
}

/// The seconds a zone offset `sign` `hours`:`minutes` adds to UTC (`+05:00` is 18,000), or
/// `None` past the -14:00..+14:00 FHIR allows.
fn zone_offset(sign: u8, hours: i64, minutes: i64) -> Option<i64> {
    let magnitude = hours * 3600 + minutes * 60;
    if hours > 14 || minutes > 59 || magnitude > MAX_OFFSET_SECONDS {
        return None;
    }
    Some(if sign == b'-' { -magnitude } else { magnitude })
}

/// The first and last microsecond of an instant starting at `start` written with
/// `fraction_digits` digits after the seconds' point: `10:00:00` spans its second,
/// `10:00:00.5` its tenth of one.
fn span_of_precision(start: i64, fraction_digits: usize) -> (i64, i64) {
    let width = 10i64.pow(6u32.saturating_sub(fraction_digits as u32));
    (start, start + width - 1)
}

/// The first and last microsecond (UTC) a FHIR `date` (`allow_time` false) or `dateTime` /
/// `instant` value can mean: `2019` runs to 2019-12-31T23:59:59.999999Z, `10:00:00` to
/// 10:00:00.999999, `10:00:00.5` to 10:00:00.599999. `None` when the text is not valid. The
/// lossless tables keep it beside the exact text so range queries need no parsing; it is worked
/// out for every date of every resource, so the text is read once, without allocating.
pub fn instant_bounds(text: &str, allow_time: bool) -> Option<(i64, i64)> {
    if allow_time {
        if let Some(bounds) = full_datetime_bounds(text.as_bytes()) {
            return Some(bounds);
        }
    }
    let mut cursor = Cursor::new(text);
    let first = cursor.date()?;
    if cursor.at_end() {
        let last = first.last_day(text.len());
        let start = first.days_since_epoch() * MICROS_PER_DAY;
        let end = (last.days_since_epoch() + 1) * MICROS_PER_DAY - 1;
        return Some((start, end));
    }
    if !allow_time {
        return None;
    }
    let (start, fraction_digits) = time_of_day(cursor, &first)?;
    // The digits after the seconds' point say how precise the value is.
    Some(span_of_precision(start, fraction_digits))
}

/// [`instant_bounds`] of a whole `dateTime` as data nearly always writes one,
/// `YYYY-MM-DDThh:mm:ss[.digits][Z|+hh:mm|-hh:mm]`, its parts read at their fixed places; `None`
/// for any other text, which the cursor then reads (a test holds the two to the same answers).
/// The cursor's way took about 580 instructions a value, 0.85% of `--resources all` on 500 MB
/// of Bundles.
fn full_datetime_bounds(bytes: &[u8]) -> Option<(i64, i64)> {
    const SEPARATORS: [(usize, u8); 5] = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if bytes.len() < 19 || SEPARATORS.iter().any(|&(at, byte)| bytes[at] != byte) {
        return None;
    }
    let two = |at: usize| two_digits(bytes, at);
    let year = two(0)? * 100 + two(2)?;
    let (month, day) = (two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    let date_valid = year >= 1 && (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month);
    if !date_valid || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let (mut fraction_micros, mut fraction_digits) = (0, 0);
    if bytes.get(at) == Some(&b'.') {
        let start = at + 1;
        at = start
            + bytes[start..]
                .iter()
                .take_while(|byte| byte.is_ascii_digit())
                .count();
        fraction_digits = at - start;
        if fraction_digits == 0 {
            return None;
        }
        fraction_micros = micros_of_fraction(&bytes[start..at]);
    }
    let offset_seconds = match bytes.get(at) {
        None => 0,
        Some(b'Z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            if bytes.len() < at + 6 || bytes[at + 3] != b':' {
                return None;
            }
            let offset = zone_offset(sign, two(at + 1)?, two(at + 4)?)?;
            at += 6;
            offset
        }
        Some(_) => return None,
    };
    if at != bytes.len() {
        return None;
    }
    let date = CalendarDate { year, month, day };
    let local_seconds = hour * 3600 + minute * 60 + second;
    let start = date.days_since_epoch() * MICROS_PER_DAY
        + (local_seconds - offset_seconds) * 1_000_000
        + fraction_micros;
    Some(span_of_precision(start, fraction_digits))
}

/// The two digits at `at` and `at + 1` (both within `bytes`) as a number, or `None`.
#[inline(always)]
fn two_digits(bytes: &[u8], at: usize) -> Option<i64> {
    let (tens, ones) = (bytes[at].wrapping_sub(b'0'), bytes[at + 1].wrapping_sub(b'0'));
    (tens < 10 && ones < 10).then(|| i64::from(tens) * 10 + i64::from(ones))
}

/// `YYYY-MM-DD` for a count of days since 1970-01-01: the inverse of [`parse_date`], for reports
/// and for showing `Date32` cells.
pub fn format_date(days: i32) -> String {
    let (year, month, day) = civil_from_days(i64::from(days));
    format!("{year:04}-{month:02}-{day:02}")
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` for microseconds since the epoch (UTC), the fraction shown
/// only when it is not zero.
pub fn format_timestamp(micros: i64) -> String {
    let (days, micro_of_day) = (
        micros.div_euclid(MICROS_PER_DAY),
        micros.rem_euclid(MICROS_PER_DAY),
    );
    let (year, month, day) = civil_from_days(days);
    let seconds = micro_of_day / 1_000_000;
    let fraction = micro_of_day % 1_000_000;
    let time = format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    );
    let fraction = if fraction == 0 {
        String::new()
    } else {
        format!(".{fraction:06}")
    };
    format!("{year:04}-{month:02}-{day:02}T{time}{fraction}Z")
}

/// The calendar date of a day count since 1970-01-01 (proleptic Gregorian, March-based years).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A calendar date whose missing month or day default to the first.
#[derive(Clone, Copy)]
struct CalendarDate {
    year: i64,
    month: i64,
    day: i64,
}

impl CalendarDate {
    /// The last day a date written with `length` characters (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`)
    /// can mean, this being its first.
    fn last_day(&self, length: usize) -> CalendarDate {
        match length {
            4 => CalendarDate {
                month: 12,
                day: 31,
                ..*self
            },
            7 => CalendarDate {
                day: days_in_month(self.year, self.month),
                ..*self
            },
            _ => *self,
        }
    }

    /// Days since 1970-01-01 in the proleptic Gregorian calendar, counted from March-based years
    /// so that the leap day falls at the end of a year.
    fn days_since_epoch(&self) -> i64 {
        let shifted_year = if self.month <= 2 { self.year - 1 } else { self.year };
        let era = shifted_year.div_euclid(400);
        let year_of_era = shifted_year - era * 400;
        let month_from_march = (self.month + 9) % 12;
        let day_of_year = (153 * month_from_march + 2) / 5 + self.day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// The number of days in a month of the proleptic Gregorian calendar.
pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A byte cursor over an ASCII date/time text.
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            bytes: text.as_bytes(),
            position: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn advance(&mut self, count: usize) {
        self.position += count;
    }

    fn at_end(&self) -> bool {
        self.position == self.bytes.len()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.advance(1))
    }

    /// The run of ASCII digits at the cursor, consumed.
    fn digits(&mut self) -> &'a str {
        let start = self.position;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.advance(1);
        }
        std::str::from_utf8(&self.bytes[start..self.position]).unwrap_or_default()
    }

    /// Exactly `width` digits forming a number within `min..=max`.
    fn number(&mut self, width: usize, min: i64, max: i64) -> Option<i64> {
        let end = self.position + width;
        let slice = self.bytes.get(self.position..end)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = slice
            .iter()
            .fold(0i64, |acc, digit| acc * 10 + i64::from(digit - b'0'));
        self.position = end;
        (min..=max).contains(&value).then_some(value)
    }

    /// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, validated against the calendar (year 0001 to 9999).
    fn date(&mut self) -> Option<CalendarDate> {
        let year = self.number(4, 1, 9999)?;
        let mut date = CalendarDate {
            year,
            month: 1,
            day: 1,
        };
        if self.peek() != Some(b'-') {
            return Some(date);
        }
        self.advance(1);
        date.month = self.number(2, 1, 12)?;
        if self.peek() != Some(b'-') {
            return Some(date);
        }
        self.advance(1);
        date.day = self.number(2, 1, days_in_month(year, date.month))?;
        Some(date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    #[test]
    fn system_times_are_formatted_in_utc() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661);
        assert_eq!(format_utc(leap_day), "2000-02-29T01:01:01Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_795_478_400);
        assert_eq!(format_utc(later), "2026-11-24T00:00:00Z");
    }

    #[test]
    fn instant_bounds_span_the_precision_written() {
        let bounds = |text: &str, time: bool| {
            instant_bounds(text, time)
                .map(|(a, b)| format!("{}/{}", format_timestamp(a), format_timestamp(b)))
        };
        let day = |text: &str| i64::from(parse_date(text).unwrap()) * 86_400 * SECOND;
        assert_eq!(
            instant_bounds("2019", false),
            Some((day("2019-01-01"), day("2020-01-01") - 1))
        );
        assert_eq!(
            instant_bounds("2024-02", true),
            Some((day("2024-02-01"), day("2024-03-01") - 1))
        );
        assert_eq!(
            instant_bounds("2024-02-29", true),
            Some((day("2024-02-29"), day("2024-03-01") - 1))
        );
        let start = parse_datetime("2019-03-01T10:00:00+01:00").unwrap();
        assert_eq!(
            instant_bounds("2019-03-01T10:00:00+01:00", true),
            Some((start, start + SECOND - 1))
        );
        let start = parse_datetime("2019-03-01T10:00:00.5Z").unwrap();
        assert_eq!(
            instant_bounds("2019-03-01T10:00:00.5Z", true),
            Some((start, start + SECOND / 10 - 1))
        );
        let precise = "2019-03-01T10:00:00.123456789Z";
        let start = parse_datetime(precise).unwrap();
        assert_eq!(instant_bounds(precise, true), Some((start, start)));
        assert_eq!(bounds("2019-03-01T10:00:00Z", false), None, "a date has no time");
        assert_eq!(bounds("2019-13", true), None);
        assert_eq!(bounds("", true), None);
    }

    /// `instant_bounds` as it was first written: a date's bounds from `date_range`'s two texts,
    /// a time's from `parse_datetime` and the digits after the first point.
    fn bounds_by_their_definition(text: &str, allow_time: bool) -> Option<(i64, i64)> {
        if !allow_time || !text.contains('T') {
            let (_, last) = date_range(text)?;
            let first = i64::from(parse_date(text)?) * MICROS_PER_DAY;
            let end = (i64::from(parse_date(&last)?) + 1) * MICROS_PER_DAY - 1;
            return Some((first, end));
        }
        let start = parse_datetime(text)?;
        let fraction_digits = text
            .split_once('.')
            .map_or(0, |(_, rest)| rest.bytes().take_while(u8::is_ascii_digit).count());
        let width = 10i64.pow(6u32.saturating_sub(fraction_digits as u32));
        Some((start, start + width - 1))
    }

    #[test]
    fn instant_bounds_are_what_their_definition_gives() {
        use proptest::prelude::*;
        // Valid values of every precision, and texts near them: a wrong digit count, a stray
        // character, a day past the month's end, a time after a partial date.
        let text = "[0-9]{3,5}(-[0-9]{1,2}(-[0-3][0-9])?)?(T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{0,9})?(Z|[+-][01][0-9]:[0-5][0-9])?)?[ TZ.x]?";
        proptest!(ProptestConfig::with_cases(20_000), |(text in text, allow_time in any::<bool>())| {
            prop_assert_eq!(
                instant_bounds(&text, allow_time),
                bounds_by_their_definition(&text, allow_time),
                "{}", text
            );
        });
        for text in [
            "2024-02-29",
            "2023-02-29",
            "2019",
            "2019-12",
            "0001",
            "9999-12-31T23:59:60.999999999+14:00",
            // Read by `full_datetime_bounds`, and texts a part away from it.
            "2019-02-16T23:30:00-05:00",
            "2019-02-16T23:30:00.5Z",
            "2019-02-16T23:30:00.0000001+00:00",
            "2019-02-16T23:30:00+14:01",
            "2019-02-16T23:30:00+1400",
            "2019-02-16T23:30:00.Z",
            "2019-02-16T24:00:00Z",
            "2019-02-30T10:00:00Z",
            "0000-01-01T00:00:00Z",
            "2019-02-16T23:30:00Zx",
            "2019-02-16t23:30:00Z",
        ] {
            for allow_time in [false, true] {
                assert_eq!(
                    instant_bounds(text, allow_time),
                    bounds_by_their_definition(text, allow_time),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn partial_dates_range_over_their_days() {
        let range = |text: &str| date_range(text).map(|(a, b)| format!("{a}/{b}"));
        assert_eq!(range("2024").as_deref(), Some("2024-01-01/2024-12-31"));
        assert_eq!(range("2024-02").as_deref(), Some("2024-02-01/2024-02-29"));
        assert_eq!(range("2023-02").as_deref(), Some("2023-02-01/2023-02-28"));
        assert_eq!(range("2024-02-10").as_deref(), Some("2024-02-10/2024-02-10"));
        for bad in [
            "2024-13",
            "2024-02-30",
            "24",
            "2024-1",
            "2024-02-10T10:00:00Z",
            "",
        ] {
            assert_eq!(date_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn full_dates_count_days_from_the_epoch() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1950-05-03"), Some(-7183));
        assert_eq!(parse_date("2000-02-29"), Some(11_016));
        assert_eq!(parse_date("2020-12-31"), Some(18_627));
    }

    #[test]
    fn partial_dates_are_their_first_day() {
        assert_eq!(parse_date("1950"), parse_date("1950-01-01"));
        assert_eq!(parse_date("1950-05"), parse_date("1950-05-01"));
    }

    #[test]
    fn invalid_dates_are_rejected() {
        for text in [
            "2019-13-45",
            "2019-02-29",
            "1900-02-29",
            "0000-01-01",
            "19",
            "2019-1-01",
            "2019-01-01T00:00:00Z",
            "2019-01-01 ",
            "",
            "abcd",
        ] {
            assert_eq!(parse_date(text), None, "{text:?} should be invalid");
        }
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let utc = parse_datetime("2019-02-16T06:27:01Z").unwrap();
        assert_eq!(parse_datetime("2019-02-16T01:27:01-05:00"), Some(utc));
        assert_eq!(parse_datetime("2019-02-16T08:27:01+02:00"), Some(utc));
        assert_eq!(parse_datetime("2019-02-16T06:27:01+00:00"), Some(utc));
        assert_eq!(utc, 1_550_298_421 * SECOND);
    }

    #[test]
    fn partial_and_zoneless_values_are_their_earliest_utc_instant() {
        let new_year = parse_datetime("2019-01-01T00:00:00Z").unwrap();
        assert_eq!(parse_datetime("2019"), Some(new_year));
        assert_eq!(parse_datetime("2019-01"), Some(new_year));
        assert_eq!(parse_datetime("2019-01-01"), Some(new_year));
        assert_eq!(
            parse_datetime("2019-02-16T10:00:00"),
            parse_datetime("2019-02-16T10:00:00Z")
        );
    }

    #[test]
    fn fractions_are_truncated_to_the_microsecond() {
        let whole = parse_datetime("2019-02-16T06:27:01Z").unwrap();
        assert_eq!(parse_datetime("2019-02-16T06:27:01.5Z"), Some(whole + 500_000));
        assert_eq!(
            parse_datetime("2019-02-16T06:27:01.123456789Z"),
            Some(whole + 123_456)
        );
    }

    #[test]
    fn dates_before_the_epoch_are_negative() {
        assert_eq!(parse_datetime("1969-12-31T23:59:59Z"), Some(-SECOND));
    }

    #[test]
    fn leap_second_rolls_into_the_next_minute() {
        assert_eq!(
            parse_datetime("2016-12-31T23:59:60Z"),
            parse_datetime("2017-01-01T00:00:00Z")
        );
    }

    #[test]
    fn formatting_inverts_parsing() {
        assert_eq!(format_date(-7183), "1950-05-03");
        assert_eq!(format_date(11_016), "2000-02-29");
        assert_eq!(format_timestamp(1_550_298_421 * SECOND), "2019-02-16T06:27:01Z");
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999999Z");
        for days in (-719_162..=2_932_896).step_by(997) {
            assert_eq!(parse_date(&format_date(days)), Some(days));
        }
    }

    #[test]
    fn invalid_datetimes_are_rejected() {
        for text in [
            "2019-13-45",
            "2019-02-16T25:00:00Z",
            "2019-02-16T10:00Z",
            "2019-02-16T10:00:00.Z",
            "2019-02-16T10:00:00+15:00",
            "2019-02-16T10:00:00+0500",
            "2019-02-16T10:00:00ZZ",
            "2019-02-16 10:00:00",
            "not a date",
            // A time needs a full date; offsets stop at 14:00 (found by tests/properties.rs).
            "2019T00:00:00",
            "2019-05T10:00:00Z",
            "2019-02-16T10:00:00+14:01",
            "2019-02-16T10:00:00-14:30",
        ] {
            assert_eq!(parse_datetime(text), None, "{text:?} should be invalid");
        }
    }
}
