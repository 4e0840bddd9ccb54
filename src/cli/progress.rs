//! A JSON message's `progressDetail` as docker draws it (the `JSONProgress` text of its
//! jsonmessage package): a 50-column bar when the line is wider than 110 columns, the sizes in
//! docker's human units, or the count with its unit. The docker CLI draws it at its terminal's
//! width; dockerd puts the same text, drawn at 200 columns, in each message's `progress` for
//! older clients.

/// What dockerd draws at: it has no terminal, and Go's jsonmessage falls back to 200 columns.
pub const DAEMON_WIDTH: u16 = 200;

/// The progress text of `current` of `total` (`units` empty for bytes), for a line `width`
/// columns wide; empty when there is nothing to show (neither number above 0).
#[must_use]
pub fn render(current: i64, total: i64, units: &str, hide_counts: bool, width: u16) -> String {
    if current <= 0 && total <= 0 {
        return String::new();
    }
    let size = |n: i64| super::format::human_size(n as f64, 4);
    if total <= 0 {
        return if units.is_empty() {
            format!("{:>8}", size(current))
        } else {
            format!("{current} {units}")
        };
    }
    // Go's int(float64(current)/float64(total)*100) / 2, capped at the bar's 50 columns.
    let percent = ((current as f64 / total as f64 * 100.0) as i64 / 2).clamp(0, 50);
    let bar = if width > 110 {
        let filled = usize::try_from(percent).unwrap_or(0);
        format!("[{}>{}] ", "=".repeat(filled), " ".repeat(50 - filled))
    } else {
        String::new()
    };
    let numbers = if hide_counts {
        String::new()
    } else if units.is_empty() {
        if current > total {
            // A count past the total (a wonky one) is shown alone.
            format!("{:>8}", size(current))
        } else {
            format!("{:>8}/{}", size(current), size(total))
        }
    } else if current > total {
        format!("{current} {units}")
    } else {
        format!("{current}/{total} {units}")
    };
    bar + &numbers
}

/// [`render`] of a message's `progressDetail` object.
#[must_use]
pub fn render_detail(detail: &serde_json::Value, width: u16) -> String {
    render(
        detail["current"].as_i64().unwrap_or(0),
        detail["total"].as_i64().unwrap_or(0),
        detail["units"].as_str().unwrap_or(""),
        detail["hidecounts"].as_bool().unwrap_or(false),
        width,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_lines_get_the_bar_narrow_ones_only_the_sizes() {
        assert_eq!(
            render(2_129_920, 2_129_920, "", false, 200),
            format!("[{}>]   2.13MB/2.13MB", "=".repeat(50))
        );
        assert_eq!(
            render(2_129_920, 2_129_920, "", false, 100),
            "  2.13MB/2.13MB"
        );
        assert_eq!(
            render(512, 2048, "", false, 111),
            format!("[{}>{}]     512B/2.048kB", "=".repeat(12), " ".repeat(38))
        );
        assert_eq!(
            render(0, 10, "", false, 200),
            format!("[>{}]       0B/10B", " ".repeat(50))
        );
    }

    #[test]
    fn counts_units_and_odd_totals_as_docker_shows_them() {
        assert_eq!(render(0, 0, "", false, 200), "");
        assert_eq!(render(1500, 0, "", false, 200), "   1.5kB");
        assert_eq!(render(3, 0, "files", false, 80), "3 files");
        assert_eq!(render(3, 7, "files", false, 80), "3/7 files");
        assert_eq!(render(9, 7, "files", false, 80), "9 files");
        assert_eq!(render(9000, 7000, "", false, 80), "     9kB");
        assert_eq!(render(5, 10, "", true, 80), "");
        assert_eq!(
            render_detail(&serde_json::json!({"current": 1, "total": 2}), 200),
            format!("[{}>{}]       1B/2B", "=".repeat(25), " ".repeat(25))
        );
    }
}
