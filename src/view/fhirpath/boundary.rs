//! `lowBoundary()` / `highBoundary()`: the least and greatest values a decimal, date, dateTime or
//! time of limited precision can stand for.

use std::borrow::Cow;

use super::eval::{Item, Primitive};
use crate::fhir::datetime::date_range;

/// The boundary of one item, or `None` for types without boundaries.
pub fn boundary<'v>(item: &Item<'v>, high: bool) -> Option<Item<'v>> {
    let kind = item.type_name();
    match item.primitive()? {
        Primitive::Integer(i) => Some(number_boundary(i as f64, 0, high)),
        Primitive::Decimal(d, scale) => Some(number_boundary(d, scale.unwrap_or(0), high)),
        Primitive::String(text) => {
            let kind = match kind.as_deref() {
                Some(kind @ ("date" | "dateTime" | "instant" | "time")) => kind,
                _ if looks_like_time(text) => "time",
                _ if text.contains('T') => "dateTime",
                _ => "date",
            };
            let (value, kind) = match kind {
                "time" => (time_boundary(text, high)?, "time"),
                "date" => (date_boundary(text, high)?, "date"),
                _ => (datetime_boundary(text, high)?, "dateTime"),
            };
            Some(Item::String(Cow::Owned(value), kind))
        }
        Primitive::Boolean(_) => None,
    }
}

fn number_boundary(value: f64, scale: u32, high: bool) -> Item<'static> {
    let half_step = 0.5 * 10f64.powi(-(scale as i32));
    let bound = if high {
        value + half_step
    } else {
        value - half_step
    };
    let rounded = (bound * 10f64.powi(scale as i32 + 1)).round() / 10f64.powi(scale as i32 + 1);
    Item::Decimal(rounded, Some(scale + 1))
}

fn looks_like_time(text: &str) -> bool {
    text.len() >= 5 && text.as_bytes()[2] == b':' && !text.contains('-')
}

/// `YYYY[-MM[-DD]]` → its first or last day, by the FHIR date rule the tables use.
fn date_boundary(text: &str, high: bool) -> Option<String> {
    let (first, last) = date_range(text)?;
    Some(if high { last } else { first })
}

/// `hh:mm[:ss[.fff]]` → padded to milliseconds with the least or greatest value.
fn time_boundary(text: &str, high: bool) -> Option<String> {
    let (clock, fraction) = match text.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (text, None),
    };
    let fields: Vec<&str> = clock.split(':').collect();
    let filler = if high { "59" } else { "00" };
    let (hour, minute, second) = match fields.as_slice() {
        [h, m] => (*h, *m, filler),
        [h, m, s] => (*h, *m, *s),
        _ => return None,
    };
    let millis = match fraction {
        Some(digits) => {
            let pad = if high { '9' } else { '0' };
            let mut padded: String = digits.chars().take(3).collect();
            while padded.len() < 3 {
                padded.push(pad);
            }
            padded
        }
        None => (if high { "999" } else { "000" }).to_owned(),
    };
    Some(format!("{hour}:{minute}:{second}.{millis}"))
}

/// A dateTime → the earliest (offset +14:00) or latest (offset -12:00) instant it can mean, written
/// to the millisecond; a given offset is kept.
fn datetime_boundary(text: &str, high: bool) -> Option<String> {
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let date = date_boundary(date, high)?;
    let default_zone = if high { "-12:00" } else { "+14:00" };
    let Some(time) = time else {
        let clock = if high { "23:59:59.999" } else { "00:00:00.000" };
        return Some(format!("{date}T{clock}{default_zone}"));
    };
    let zone_start = time.find(['Z', '+', '-']).unwrap_or(time.len());
    let (clock, zone) = time.split_at(zone_start);
    let zone = if zone.is_empty() { default_zone } else { zone };
    Some(format!("{date}T{}{zone}", time_boundary(clock, high)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(item: Item<'_>) -> String {
        match item {
            Item::String(s, _) => s.into_owned(),
            Item::Decimal(d, _) => d.to_string(),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn typed(value: &str, kind: &'static str, high: bool) -> String {
        text(boundary(&Item::String(Cow::Owned(value.to_owned()), kind), high).unwrap())
    }

    #[test]
    fn decimals_widen_by_half_their_last_digit() {
        assert_eq!(
            text(boundary(&Item::Decimal(1.0, Some(1)), false).unwrap()),
            "0.95"
        );
        assert_eq!(
            text(boundary(&Item::Decimal(1.0, Some(1)), true).unwrap()),
            "1.05"
        );
        assert_eq!(text(boundary(&Item::Integer(3), false).unwrap()), "2.5");
    }

    #[test]
    fn dates_and_datetimes_fill_missing_parts() {
        assert_eq!(typed("1970-06", "date", false), "1970-06-01");
        assert_eq!(typed("1970-06", "date", true), "1970-06-30");
        assert_eq!(typed("2024-02", "date", true), "2024-02-29");
        assert_eq!(
            typed("2010-10-10", "dateTime", false),
            "2010-10-10T00:00:00.000+14:00"
        );
        assert_eq!(
            typed("2010-10-10", "dateTime", true),
            "2010-10-10T23:59:59.999-12:00"
        );
        assert_eq!(
            typed("2010-10-10T10:00:00Z", "dateTime", true),
            "2010-10-10T10:00:00.999Z"
        );
        assert_eq!(typed("12:34:00", "time", false), "12:34:00.000");
        assert_eq!(typed("12:34", "time", true), "12:34:59.999");
    }
}
