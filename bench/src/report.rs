//! Results as rows of ratios, and the Markdown page they become.

use std::fmt::Write as _;

/// Whether a row meets the target we hold ourselves to.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub target: String,
    rule: Option<Rule>,
    /// Decided already (absolute targets).
    met: Option<bool>,
}

impl Verdict {
    /// Higher is better: `value / baseline >= ratio`.
    pub fn at_least(ratio: f64) -> Self {
        Self {
            target: format!("ratio ≥ {ratio}"),
            rule: Some(Rule::AtLeast(ratio)),
            met: None,
        }
    }

    /// Lower is better: `value / baseline <= ratio`.
    pub fn at_most(ratio: f64) -> Self {
        Self {
            target: format!("ratio ≤ {ratio}"),
            rule: Some(Rule::AtMost(ratio)),
            met: None,
        }
    }

    /// An absolute bound the issue sets (`value < limit`), judged here.
    pub fn absolute_below(value: f64, limit: f64, target: &str) -> Self {
        Self {
            target: target.into(),
            rule: None,
            met: Some(value < limit),
        }
    }

    /// No target: the figure is for information.
    pub fn none() -> Self {
        Self {
            target: "—".into(),
            rule: None,
            met: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    AtLeast(f64),
    AtMost(f64),
}

#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub baseline: String,
    pub value: f64,
    pub baseline_value: f64,
    pub unit: String,
    pub verdict: Verdict,
    pub note: String,
}

impl Row {
    pub fn ratio(
        name: &str,
        baseline: &str,
        value: f64,
        baseline_value: f64,
        unit: &str,
        verdict: Verdict,
    ) -> Self {
        Self {
            name: name.into(),
            baseline: baseline.into(),
            value,
            baseline_value,
            unit: unit.into(),
            verdict,
            note: String::new(),
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    pub fn ratio_value(&self) -> f64 {
        self.value / self.baseline_value.max(f64::MIN_POSITIVE)
    }

    pub fn met(&self) -> Option<bool> {
        self.verdict.met.or(match self.verdict.rule {
            Some(Rule::AtLeast(r)) => Some(self.ratio_value() >= r),
            Some(Rule::AtMost(r)) => Some(self.ratio_value() <= r),
            None => None,
        })
    }
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn row(&mut self, row: Row) {
        let met = match row.met() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        println!(
            "{}: {:.3} vs {:.3} {} ({}) = {:.2} [{} {}] {}",
            row.name,
            row.value,
            row.baseline_value,
            row.unit,
            row.baseline,
            row.ratio_value(),
            row.verdict.target,
            met,
            row.note
        );
        self.rows.push(row);
    }

    /// The results table in Markdown.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| Benchmark | Maestro | Baseline (same run) | Ratio | Target | |\n| --- | --- | --- | --- | --- | --- |\n",
        );
        for row in &self.rows {
            let met = match row.met() {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "",
            };
            let note = if row.note.is_empty() {
                String::new()
            } else {
                format!("<br>{}", row.note)
            };
            let _ = writeln!(
                out,
                "| {}{} | {} {} | {}: {} {} | {:.2} | {} | {} |",
                row.name,
                note,
                number(row.value),
                row.unit,
                row.baseline,
                number(row.baseline_value),
                row.unit,
                row.ratio_value(),
                row.verdict.target,
                met
            );
        }
        out
    }
}

/// Three significant figures, without scientific notation.
fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
