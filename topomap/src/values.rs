//! Values of the details panel as people read and sort them: a duration in seconds as "58 min 57 s",
//! numbers (PIDs, counts) in numeric order, IP addresses by their numbers.

use std::cmp::Ordering;

/// A metadata value shown by its `dataType` (Scope's templates say `duration`, `datetime`,
/// `number`, `ip`): durations in seconds become "3 days 4 h", "58 min 57 s"; timestamps lose their
/// sub-second part; anything else is shown as it came.
pub fn display(value: &str, data_type: &str) -> String {
    match data_type {
        "duration" => value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| duration(s as u64))
            .unwrap_or_else(|| value.to_owned()),
        "datetime" => datetime(value),
        _ => value.to_owned(),
    }
}

/// Seconds as the two largest units that say something: "3 days 4 h", "5 h 2 min",
/// "58 min 57 s", "9 s".
pub fn duration(seconds: u64) -> String {
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, _) => format!("{minutes} min {secs} s"),
        (0, _, _) => format!("{hours} h {minutes} min"),
        _ => format!("{} {hours} h", plural(days, "day", "days")),
    }
}

/// An RFC 3339 time without fractions of a second, with a space for the `T`:
/// `2026-11-30T12:00:01.123456Z` → `2026-11-30 12:00:01Z`. Other text is left alone.
fn datetime(value: &str) -> String {
    let looks_like_time = value.len() >= 19
        && value.is_char_boundary(19)
        && value.as_bytes()[4] == b'-'
        && value.as_bytes()[10] == b'T';
    if !looks_like_time {
        return value.to_owned();
    }
    let (head, rest) = value.split_at(19);
    let zone = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    format!("{} {}{zone}", &head[..10], &head[11..])
}

/// Orders two cells of a column: numbers (and durations) by value, IPv4 addresses by their
/// octets, anything else as text ignoring case; a number sorts before text, an empty cell last.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    match (key(a), key(b)) {
        (Key::Number(x), Key::Number(y)) => x.total_cmp(&y),
        (Key::Ip(x), Key::Ip(y)) => x.cmp(&y),
        (Key::Number(_), _) => Ordering::Less,
        (_, Key::Number(_)) => Ordering::Greater,
        _ => a
            .to_lowercase()
            .cmp(&b.to_lowercase())
            .then_with(|| a.cmp(b)),
    }
}

enum Key {
    Number(f64),
    Ip([u8; 4]),
    Text,
}

fn key(s: &str) -> Key {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>()
        && n.is_finite()
    {
        return Key::Number(n);
    }
    if let Ok(ip) = s.parse::<std::net::Ipv4Addr>() {
        return Key::Ip(ip.octets());
    }
    Key::Text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(display("3537", "duration"), "58 min 57 s");
        assert_eq!(display("9", "duration"), "9 s");
        assert_eq!(display("18125", "duration"), "5 h 2 min");
        assert_eq!(display("86400", "duration"), "1 day 0 h");
        assert_eq!(display("280800", "duration"), "3 days 6 h");
        assert_eq!(display("soon", "duration"), "soon");
        assert_eq!(display("-5", "duration"), "-5");
        assert_eq!(display("3537", ""), "3537");
    }

    #[test]
    fn times_lose_their_fractions() {
        assert_eq!(
            display("2026-11-30T12:00:01.123456789Z", "datetime"),
            "2026-11-30 12:00:01Z"
        );
        assert_eq!(
            display("2026-11-30T12:00:01+02:00", "datetime"),
            "2026-11-30 12:00:01+02:00"
        );
        assert_eq!(display("yesterday", "datetime"), "yesterday");
        assert_eq!(
            display("ééééééééééééééééééééé", "datetime"),
            "ééééééééééééééééééééé"
        );
    }

    #[test]
    fn cells_sort_as_numbers_addresses_then_text() {
        let mut pids = vec![
            "1000",
            "20",
            "3",
            "",
            "init",
            "Apache",
            "10.0.0.10",
            "10.0.0.9",
        ];
        pids.sort_by(|a, b| compare(a, b));
        assert_eq!(
            pids,
            [
                "3",
                "20",
                "1000",
                "10.0.0.9",
                "10.0.0.10",
                "Apache",
                "init",
                ""
            ]
        );
    }
}
