//! The terminal: narration while a lesson runs (explanation, each command as a
//! student would type it, the live output), then its tables, bar charts,
//! findings and caveats.

use std::io::{self, IsTerminal, Write};

use crate::report::{Chart, LessonReport, Measured, Side, Table};

const WIDTH: usize = 78;
const BAR_WIDTH: usize = 36;

/// Writes to standard output (which `--json` points at standard error).
pub struct Narrator {
    styled: bool,
}

impl Default for Narrator {
    fn default() -> Self {
        Narrator::new()
    }
}

impl Narrator {
    pub fn new() -> Narrator {
        Narrator {
            styled: io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn style(&self, code: &str, text: &str) -> String {
        if self.styled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn print(&self, text: &str) {
        let mut out = io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    pub fn title(&self, text: &str) {
        let rule = "═".repeat(text.chars().count().min(WIDTH));
        self.print(&format!("\n{}\n{}\n", self.style("1", text), rule));
    }

    pub fn heading(&self, text: &str) {
        self.print(&format!("\n{}\n", self.style("1", &format!("── {text}"))));
    }

    pub fn paragraph(&self, text: &str) {
        self.print(&format!("{}\n", wrap(text, WIDTH, "")));
    }

    pub fn banner(&self, text: &str) {
        self.print(&format!(
            "{}\n",
            self.style("33", &wrap(text, WIDTH, "   "))
        ));
    }

    /// A command, as the student would type it, with the side it runs on.
    pub fn command(&self, side: Side, command: &str) {
        let prompt = format!("[{}] $ ", side.label());
        self.print(&format!(
            "\n{}{}\n",
            self.style("2", &prompt),
            self.style("1", command)
        ));
    }

    pub fn note(&self, text: &str) {
        self.print(&format!("{}\n", self.style("2", &wrap(text, WIDTH, "  "))));
    }

    /// Live output that did not come through standard output already.
    pub fn output(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.print(text);
        if !text.ends_with('\n') {
            self.print("\n");
        }
    }

    pub fn failure(&self, text: &str) {
        self.print(&format!("{}\n", self.style("31", &wrap(text, WIDTH, "  "))));
    }

    /// The summary after the live part: tables, charts, findings, caveats.
    pub fn summary(&self, report: &LessonReport) {
        for table in &report.tables {
            self.heading(&table.title);
            self.print(&render_table(table));
        }
        for chart in &report.charts {
            self.heading(&chart.title);
            self.print(&render_chart(chart));
        }
        if !report.findings.is_empty() {
            self.heading("what this shows");
            for (i, f) in report.findings.iter().enumerate() {
                if i > 0 {
                    self.print("\n");
                }
                self.paragraph(f);
            }
        }
        if !report.caveats.is_empty() {
            self.heading("caveats");
            for c in &report.caveats {
                self.print(&format!("{}\n", wrap(&format!("- {c}"), WIDTH, "  ")));
            }
        }
        if !report.failures.is_empty() {
            self.heading("measurements that failed");
            for f in &report.failures {
                self.failure(&format!("- {f}"));
            }
        }
    }
}

/// Word-wraps `text` to `width`, indenting continuation lines.
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = Vec::new();
    for src in text.split('\n') {
        let lead = &src[..src.len() - src.trim_start_matches(' ').len()];
        let mut line = lead.to_string();
        let mut has_word = false;
        for word in src.split(' ').filter(|w| !w.is_empty()) {
            if has_word && line.chars().count() + 1 + word.chars().count() > width {
                out.push(line);
                line = indent.to_string();
                has_word = false;
            }
            if has_word {
                line.push(' ');
            }
            line.push_str(word);
            has_word = true;
        }
        out.push(line);
    }
    out.join("\n")
}

pub fn render_table(table: &Table) -> String {
    let cells: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|r| r.iter().map(|c| c.text()).collect())
        .collect();
    let mut widths: Vec<usize> = table.columns.iter().map(|c| c.chars().count()).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |row: &[String]| {
        let mut s = String::from("  ");
        for (i, c) in row.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(c.chars().count());
            s.push_str(c);
            if i + 1 < row.len() {
                s.push_str(&" ".repeat(pad + 3));
            }
        }
        format!("{}\n", s.trim_end())
    };
    let mut out = line(&table.columns);
    let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
    out.push_str(&line(&rule));
    for row in &cells {
        out.push_str(&line(row));
    }
    out
}

/// Horizontal bars scaled to the largest value; a failed bar says why.
pub fn render_chart(chart: &Chart) -> String {
    let max = chart
        .bars
        .iter()
        .filter_map(|b| b.value.value().copied())
        .chain(chart.bars.iter().filter_map(|b| b.spread.map(|s| s.1)))
        .fold(0.0f64, f64::max);
    let label_w = chart
        .bars
        .iter()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for bar in &chart.bars {
        let label = format!("  {:<label_w$}  ", bar.label);
        match &bar.value {
            Measured::Value(v) => {
                out.push_str(&label);
                out.push_str(&bar_cells(*v, max));
                out.push_str(&format!("  {}", chart.unit.format(*v)));
                if let Some((lo, hi)) = bar.spread {
                    if hi > lo {
                        out.push_str(&format!(
                            "  ({}–{})",
                            chart.unit.format(lo),
                            chart.unit.format(hi)
                        ));
                    }
                }
                out.push('\n');
            }
            Measured::Failed(why) => {
                out.push_str(&format!("{label}failed: {why}\n"));
            }
        }
    }
    if let Some(note) = &chart.note {
        out.push_str(&format!("{}\n", wrap(&format!("  {note}"), WIDTH, "  ")));
    }
    out
}

/// The bar itself in eighths of a cell, at least a sliver for any value > 0.
fn bar_cells(v: f64, max: f64) -> String {
    const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let width = if max > 0.0 {
        v / max * BAR_WIDTH as f64
    } else {
        0.0
    };
    let mut eighths = (width * 8.0).round() as usize;
    if v > 0.0 && eighths == 0 {
        eighths = 1;
    }
    let full = eighths / 8;
    let mut s = "█".repeat(full);
    s.push_str(EIGHTHS[eighths % 8]);
    let used = full + usize::from(!eighths.is_multiple_of(8));
    s.push_str(&" ".repeat(BAR_WIDTH.saturating_sub(used)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::bar;
    use crate::report::{Cell, Unit};

    #[test]
    fn wraps_words() {
        let w = wrap("one two three four five", 9, "  ");
        assert_eq!(w, "one two\n  three\n  four\n  five");
        assert_eq!(wrap("short", 80, ""), "short");
    }

    #[test]
    fn tables_align_and_show_failures() {
        let mut t = Table::new("kernel", &["", "container", "microVM"]);
        t.row(vec![
            "uname -r".into(),
            "6.18".into(),
            Cell::Failed {
                failed: "no boot".into(),
            },
        ]);
        let text = render_table(&t);
        assert!(text.contains("failed: no boot"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].find("container"), lines[2].find("6.18"));
    }

    #[test]
    fn bars_scale_to_the_largest() {
        let chart = Chart {
            title: "t".into(),
            unit: Unit::Milliseconds,
            bars: vec![
                bar("container", Side::Container, Measured::Value(10.0), None),
                bar(
                    "microVM",
                    Side::Vm,
                    Measured::Value(1000.0),
                    Some((900.0, 1000.0)),
                ),
                bar("other", Side::Vm, Measured::failed("did not boot"), None),
            ],
            note: None,
        };
        let text = render_chart(&chart);
        let lines: Vec<&str> = text.lines().collect();
        assert!(!lines[0].contains('█'), "{text}");
        assert!(lines[0].contains(['▏', '▎', '▍']), "{text}");
        assert!(lines[1].contains(&"█".repeat(BAR_WIDTH)), "{text}");
        assert!(lines[2].contains("failed: did not boot"));
        assert!(lines[1].contains("1.00 s"));
    }
}
