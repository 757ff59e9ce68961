//! Dates as people in the service read them: `2026-11-21` becomes `21-Nov-2026`.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `YYYY-MM-DD` as `DD-Mon-YYYY`; anything else unchanged.
pub fn display_date(iso: &str) -> String {
    let mut parts = iso.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return iso.to_owned();
    };
    match (m.parse::<usize>(), d.len() == 2 && y.len() == 4) {
        (Ok(month @ 1..=12), true) => format!("{d}-{}-{y}", MONTHS[month - 1]),
        _ => iso.to_owned(),
    }
}

/// The first `YYYY-MM-DD` in `text` (the agent's "Renewed until 2028-11-21"), displayed.
pub fn first_date_in(text: &str) -> Option<String> {
    text.char_indices().find_map(|(i, _)| {
        let candidate = text.get(i..i + 10)?;
        let bytes = candidate.as_bytes();
        let shape = bytes.iter().enumerate().all(|(j, b)| match j {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
        let shown = display_date(candidate);
        (shape && shown != candidate).then_some(shown)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_day_month_year() {
        assert_eq!(display_date("2026-11-21"), "21-Nov-2026");
        assert_eq!(display_date("2027-01-05"), "05-Jan-2027");
        assert_eq!(display_date("2027-13-05"), "2027-13-05");
        assert_eq!(display_date("soon"), "soon");
        assert_eq!(
            first_date_in("Renewed until 2028-11-21").as_deref(),
            Some("21-Nov-2028")
        );
        assert_eq!(first_date_in("no date here"), None);
    }
}
