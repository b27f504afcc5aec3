//! OpenMetrics 1.0 text encoding of a registry (the `prometheus` crate writes only the
//! Prometheus text format).

use prometheus::proto::{MetricFamily, MetricType};

/// The line that ends an OpenMetrics exposition (the caller writes it, after any families
/// of its own).
pub const EOF: &str = "# EOF\n";

/// OpenMetrics 1.0 text: like Prometheus text, but a counter's family is named without
/// `_total` (its samples keep it), and the exposition ends with `EOF`.
pub fn encode_openmetrics(families: &[MetricFamily], out: &mut String) {
    use std::fmt::Write;
    for family in families {
        let name = family.name();
        let (kind, family_name) = match family.get_field_type() {
            MetricType::COUNTER => ("counter", name.strip_suffix("_total").unwrap_or(name)),
            MetricType::GAUGE => ("gauge", name),
            MetricType::HISTOGRAM => ("histogram", name),
            MetricType::SUMMARY => ("summary", name),
            MetricType::UNTYPED => ("unknown", name),
        };
        let _ = writeln!(out, "# TYPE {family_name} {kind}");
        let _ = writeln!(out, "# HELP {family_name} {}", escape(family.help(), false));
        for metric in family.get_metric() {
            let labels: Vec<(String, String)> = metric
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            match family.get_field_type() {
                MetricType::COUNTER => {
                    let sample = format!("{family_name}_total");
                    sample_line(out, &sample, &labels, metric.get_counter().value());
                }
                MetricType::GAUGE => {
                    sample_line(out, name, &labels, metric.get_gauge().value());
                }
                MetricType::HISTOGRAM => {
                    let h = metric.get_histogram();
                    for bucket in h.get_bucket() {
                        let mut with_le = labels.clone();
                        with_le.push(("le".into(), float(bucket.upper_bound())));
                        let count = bucket.cumulative_count() as f64;
                        sample_line(out, &format!("{name}_bucket"), &with_le, count);
                    }
                    let mut with_inf = labels.clone();
                    with_inf.push(("le".into(), "+Inf".into()));
                    let count = h.get_sample_count() as f64;
                    sample_line(out, &format!("{name}_bucket"), &with_inf, count);
                    sample_line(out, &format!("{name}_count"), &labels, count);
                    sample_line(out, &format!("{name}_sum"), &labels, h.get_sample_sum());
                }
                MetricType::SUMMARY => {
                    let summary = metric.get_summary();
                    let count = summary.sample_count() as f64;
                    sample_line(out, &format!("{name}_count"), &labels, count);
                    sample_line(out, &format!("{name}_sum"), &labels, summary.sample_sum());
                }
                // The gateway registers no untyped metrics.
                MetricType::UNTYPED => {}
            }
        }
    }
}

fn sample_line(out: &mut String, name: &str, labels: &[(String, String)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        let pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v, true)))
            .collect();
        out.push_str(&pairs.join(","));
        out.push('}');
    }
    out.push(' ');
    out.push_str(&float(value));
    out.push('\n');
}

fn float(value: f64) -> String {
    if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else if value.is_nan() {
        "NaN".into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

/// `text` as a label value (`quotes`) or help text is written in both text formats;
/// borrowed when nothing needs escaping, as almost always.
pub(super) fn escape(text: &str, quotes: bool) -> std::borrow::Cow<'_, str> {
    let special = |c: char| c == '\\' || c == '\n' || (quotes && c == '"');
    if !text.contains(special) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::time::Instant;

    #[test]
    fn openmetrics_names_counters_without_total_and_ends_with_eof() {
        let metrics = Metrics::standalone().unwrap();
        metrics.ping("ready");
        metrics.ping("something else");
        metrics.grpc("UpdateRoomWithPing", tonic::Code::Ok, Instant::now());
        let mut text = String::new();
        encode_openmetrics(&metrics.registry.gather(), &mut text);
        text.push_str(EOF);
        assert!(text.contains("# TYPE maestro_pings counter\n"), "{text}");
        assert!(text.contains("maestro_pings_total{status=\"ready\"} 1.0\n"));
        assert!(text.contains("maestro_pings_total{status=\"invalid\"} 1.0\n"));
        assert!(text.contains("# TYPE maestro_grpc_request_duration_seconds histogram\n"));
        assert!(text.contains(
            "maestro_grpc_request_duration_seconds_bucket{code=\"Ok\",method=\"UpdateRoomWithPing\",le=\"+Inf\"} 1.0\n"
        ));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample_line(
            &mut out,
            "m",
            &[("l".into(), "a\"b\\c\nd".into())],
            f64::INFINITY,
        );
        assert_eq!(out, "m{l=\"a\\\"b\\\\c\\nd\"} +Inf\n");
    }
}
