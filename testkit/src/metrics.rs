//! Reading a process's Prometheus metrics in a test.

/// The `/metrics` text of the process serving on 127.0.0.1:`port`, or `None` while it does not
/// answer (not started yet, or gone).
pub fn scrape(port: u16) -> Option<String> {
    ureq::get(format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()
}

/// The value of one series: `series` is the name with its labels as the text writes them
/// (`trawl_parser_rows_written_total`, `..._dropped_total{reason="queue_full"}`).
pub fn value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The sum over every series of the metric `name`, whatever their labels.
pub fn sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    const TEXT: &str = "# TYPE a counter\na_total{kind=\"x\"} 2\na_total{kind=\"y\"} 3\nab_total 7\n# EOF\n";

    #[test]
    fn series_and_sums() {
        assert_eq!(super::value(TEXT, "a_total{kind=\"y\"}"), Some(3));
        assert_eq!(super::value(TEXT, "ab_total"), Some(7));
        assert_eq!(super::value(TEXT, "a_total"), None);
        assert_eq!(super::sum(TEXT, "a_total"), 5);
    }
}
