//! How figures read: ages as kubectl prints them, metrics to 4 decimals, latencies in the unit
//! that keeps them short, tables aligned like `kubectl get`.

use jiff::Timestamp;

/// The time since `at` as kubectl's AGE column prints it (`45s`, `3m20s`, `5h`, `2d3h`);
/// `0s` for a time in the future (clocks disagree by a little).
pub fn age(now: Timestamp, at: Timestamp) -> String {
    duration(
        now.as_second()
            .saturating_sub(at.as_second())
            .max(0)
            .unsigned_abs(),
    )
}

/// A span of whole seconds as an age reads.
pub fn duration(seconds: u64) -> String {
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if hours < 3 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if days < 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else {
        format!("{days}d")
    }
}

/// A quality figure (RMSE, MAE, accuracy) as the status rounds them.
pub fn metric(value: f64) -> String {
    format!("{value:.4}")
}

pub fn optional_metric(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), metric)
}

/// A share in [0, 1] as a percentage with one decimal (`25.0%`).
pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

pub fn optional_percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".into(), percent)
}

/// A latency in seconds, in µs, ms or s so that it keeps 2-3 significant digits.
pub fn latency(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.0}µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1}ms", seconds * 1e3)
    } else {
        format!("{seconds:.2}s")
    }
}

pub fn optional_latency(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "-".into(), latency)
}

/// Rows padded to their columns' widths, two spaces apart, without trailing blanks; every line
/// starts with `indent`.
pub fn table(indent: &str, rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now = at("2026-12-07T12:00:00Z");
        let before = |seconds: i64| Timestamp::from_second(now.as_second() - seconds).unwrap();
        for (seconds, text) in [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 17 * 60, "5h17m"),
            (47 * 3600, "47h"),
            (2 * 86_400 + 3 * 3600, "2d3h"),
            (9 * 86_400 + 5 * 3600, "9d"),
        ] {
            assert_eq!(age(now, before(seconds)), text, "{seconds}s ago");
        }
        assert_eq!(age(now, at("2026-12-07T12:00:05Z")), "0s", "a time ahead");
    }

    #[test]
    fn figures_keep_their_precision() {
        assert_eq!(metric(0.93121), "0.9312");
        assert_eq!(optional_metric(None), "-");
        assert_eq!(percent(0.25), "25.0%");
        assert_eq!(percent(0.0712), "7.1%");
        assert_eq!(latency(0.000_42), "420µs");
        assert_eq!(latency(0.0045), "4.5ms");
        assert_eq!(latency(1.5), "1.50s");
    }

    #[test]
    fn tables_align_columns_and_trim_the_last() {
        let rows = vec![
            vec!["TYPE".into(), "STATUS".into(), "MESSAGE".into()],
            vec!["Ready".into(), "True".into(), "".into()],
            vec!["DatabaseReachable".into(), "False".into(), "refused".into()],
        ];
        assert_eq!(
            table("  ", &rows),
            "  TYPE               STATUS  MESSAGE\n\
             \x20 Ready              True\n\
             \x20 DatabaseReachable  False   refused\n"
        );
    }
}
