//! OpenMetrics text (what `prometheus-client` writes) turned into the
//! Prometheus text format 0.0.4, for scrapers that do not ask for
//! OpenMetrics.
//!
//! Written by hand because the official client only encodes OpenMetrics
//! (and protobuf) and no small crate converts. The two formats share the
//! sample syntax; what differs is named here: in 0.0.4 a counter family is
//! named with its `_total`, an `info` family becomes a gauge named
//! `…_info`, `unknown` is `untyped`, and there are no `# UNIT` lines,
//! `_created` samples, exemplars or `# EOF`.

/// Converts one OpenMetrics exposition to the 0.0.4 text format.
pub fn to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP comes before TYPE, but its name depends on the type.
    let mut help: Option<(&str, &str)> = None;
    // The family being written and its sample names to drop.
    let mut created = String::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{family}_total"), "counter"),
                "info" => (format!("{family}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (family.to_string(), kind),
                _ => (family.to_string(), "untyped"),
            };
            if let Some((_, text)) = help.take().filter(|(f, _)| *f == family) {
                out.push_str(&format!("# HELP {name} {}\n", escape_help(text)));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            created = format!("{family}_created");
        } else if line.starts_with('#') {
            // `# UNIT`, `# EOF`: not in 0.0.4.
        } else if !line.is_empty() {
            let sample_name = line.split(['{', ' ']).next().unwrap_or("");
            if sample_name == created {
                continue;
            }
            // An exemplar follows ` # ` after the value; a label value
            // may contain ` # ` too, so look only after the labels.
            let after_labels = labels_end(line);
            let end = line[after_labels..]
                .find(" # ")
                .map_or(line.len(), |i| after_labels + i);
            out.push_str(&line[..end]);
            out.push('\n');
        }
    }
    out
}

/// The byte offset just after a sample's label set (after its name when
/// it has none), skipping quoted values and their escapes.
fn labels_end(line: &str) -> usize {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    if !line[name_end..].starts_with('{') {
        return name_end;
    }
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line[name_end..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return name_end + i + 1,
            _ => {}
        }
    }
    line.len()
}

/// 0.0.4 escapes only backslash and newline in HELP; OpenMetrics also
/// escapes the double quote.
fn escape_help(text: &str) -> String {
    text.replace("\\\"", "\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_each_difference() {
        let om = "# HELP x_deliveries Recipients \\\"delivered\\\".\n\
                  # TYPE x_deliveries counter\n\
                  x_deliveries_total{mailbox=\"a\"} 3\n\
                  x_deliveries_created{mailbox=\"a\"} 1700000000.0\n\
                  # HELP x_build The version.\n\
                  # TYPE x_build info\n\
                  x_build_info{version=\"1\"} 1\n\
                  # TYPE x_odd unknown\n\
                  x_odd 1 # {trace=\"t\"} 1\n\
                  # HELP x_size Sizes.\n\
                  # TYPE x_size histogram\n\
                  # UNIT x_size bytes\n\
                  x_size_bucket{le=\"+Inf\"} 2\n\
                  x_size_sum 5.0\n\
                  x_size_count 2\n\
                  # EOF\n";
        let expected = "# HELP x_deliveries_total Recipients \"delivered\".\n\
                        # TYPE x_deliveries_total counter\n\
                        x_deliveries_total{mailbox=\"a\"} 3\n\
                        # HELP x_build_info The version.\n\
                        # TYPE x_build_info gauge\n\
                        x_build_info{version=\"1\"} 1\n\
                        # TYPE x_odd untyped\n\
                        x_odd 1\n\
                        # HELP x_size Sizes.\n\
                        # TYPE x_size histogram\n\
                        x_size_bucket{le=\"+Inf\"} 2\n\
                        x_size_sum 5.0\n\
                        x_size_count 2\n";
        assert_eq!(to_prometheus(om), expected);
    }

    #[test]
    fn label_values_with_hashes_survive() {
        let om = "# TYPE g gauge\ng{a=\"x # }\\\"y\"} 1 # {t=\"1\"} 1\n# EOF\n";
        assert_eq!(to_prometheus(om), "# TYPE g gauge\ng{a=\"x # }\\\"y\"} 1\n");
    }
}
