//! What a lesson produces: one record that the terminal, JSON and HTML
//! renderers all read, so `--json` and `--report` say exactly what the screen
//! said.

use serde::Serialize;

/// A number (or other value) that was either measured or could not be, with the
/// reason. A failed measurement is never shown as zero.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measured<T> {
    Value(T),
    Failed(String),
}

impl<T> Measured<T> {
    pub fn failed(why: impl Into<String>) -> Self {
        Measured::Failed(why.into())
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            Measured::Value(v) => Some(v),
            Measured::Failed(_) => None,
        }
    }

    pub fn failure(&self) -> Option<&str> {
        match self {
            Measured::Value(_) => None,
            Measured::Failed(why) => Some(why),
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Measured<U> {
        match self {
            Measured::Value(v) => Measured::Value(f(v)),
            Measured::Failed(why) => Measured::Failed(why),
        }
    }

    pub fn as_ref(&self) -> Measured<&T> {
        match self {
            Measured::Value(v) => Measured::Value(v),
            Measured::Failed(why) => Measured::Failed(why.clone()),
        }
    }

    pub fn from_option(v: Option<T>, why: impl Into<String>) -> Self {
        match v {
            Some(v) => Measured::Value(v),
            None => Measured::Failed(why.into()),
        }
    }

    pub fn from_result<E: std::fmt::Display>(r: Result<T, E>) -> Self {
        match r {
            Ok(v) => Measured::Value(v),
            Err(e) => Measured::Failed(e.to_string()),
        }
    }
}

/// Which side of the comparison a step ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Host,
    Container,
    Vm,
}

impl Side {
    pub fn label(self) -> &'static str {
        match self {
            Side::Host => "host",
            Side::Container => "container",
            Side::Vm => "microVM",
        }
    }
}

/// One command the lesson ran, as a student could type it, and what it printed.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub side: Side,
    pub command: String,
    pub output: String,
    pub exit_code: Option<i32>,
    /// Why the command did not produce an exit code (boot failed, ...).
    pub error: Option<String>,
    pub duration_ms: Option<f64>,
}

impl Step {
    /// A command that ran on `side` for `ms`: exit code 0, or 1 with `error`.
    pub fn ran(
        side: Side,
        command: String,
        output: String,
        error: Option<String>,
        ms: f64,
    ) -> Step {
        Step {
            side,
            command,
            exit_code: Some(if error.is_some() { 1 } else { 0 }),
            output,
            error,
            duration_ms: Some(ms),
        }
    }
}

/// A table cell: text, or a measurement that failed (rendered as such).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Cell {
    Text(String),
    Failed { failed: String },
}

impl Cell {
    pub fn text(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Failed { failed } => format!("failed: {failed}"),
        }
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_string())
    }
}

impl<T: std::fmt::Display> From<Measured<T>> for Cell {
    fn from(m: Measured<T>) -> Self {
        match m {
            Measured::Value(v) => Cell::Text(v.to_string()),
            Measured::Failed(why) => Cell::Failed { failed: why },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(title: impl Into<String>, columns: &[&str]) -> Self {
        Table {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) -> &mut Self {
        self.rows.push(cells);
        self
    }
}

/// Units a chart's numbers are in; the renderers format values with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Milliseconds,
    Bytes,
    Count,
}

impl Unit {
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Milliseconds => format_ms(v),
            Unit::Bytes => format_bytes(v as u64),
            Unit::Count => format!("{v:.0}"),
        }
    }
}

/// One horizontal bar.
#[derive(Debug, Clone, Serialize)]
pub struct Bar {
    pub label: String,
    pub value: Measured<f64>,
    /// The fastest and slowest of several runs, drawn as a whisker.
    pub spread: Option<(f64, f64)>,
    pub side: Side,
}

#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub title: String,
    pub unit: Unit,
    pub bars: Vec<Bar>,
    /// Shown under the chart (what the bar is, what is not in it).
    pub note: Option<String>,
}

/// The VM backend the lesson used and why; shown at the top of every output.
#[derive(Debug, Clone, Serialize)]
pub struct BackendNote {
    pub name: String,
    pub description: String,
    pub reason: String,
    /// Timings come from software emulation (QEMU TCG): not representative of KVM.
    pub emulated: bool,
}

/// Everything one lesson showed.
#[derive(Debug, Clone, Serialize)]
pub struct LessonReport {
    pub lesson: String,
    pub title: String,
    /// The plain-words explanation the lesson opens with, one paragraph each.
    pub explanation: Vec<String>,
    pub runs: usize,
    pub host_kernel: String,
    /// None for lessons that boot no VM.
    pub vm_backend: Option<BackendNote>,
    pub steps: Vec<Step>,
    pub tables: Vec<Table>,
    pub charts: Vec<Chart>,
    /// "What this shows": paragraphs that quote the measured numbers.
    pub findings: Vec<String>,
    pub caveats: Vec<String>,
    /// Measurements that failed, with the reason (also shown in place).
    pub failures: Vec<String>,
    /// The lesson's own measured facts, for machines (tests, scripts).
    pub facts: serde_json::Value,
}

impl LessonReport {
    pub fn new(lesson: &str, title: &str) -> Self {
        LessonReport {
            lesson: lesson.to_string(),
            title: title.to_string(),
            explanation: Vec::new(),
            runs: 1,
            host_kernel: String::new(),
            vm_backend: None,
            steps: Vec::new(),
            tables: Vec::new(),
            charts: Vec::new(),
            findings: Vec::new(),
            caveats: Vec::new(),
            failures: Vec::new(),
            facts: serde_json::Value::Object(Default::default()),
        }
    }

    /// Records a fact for machines (`facts.KEY` in the JSON).
    pub fn fact(&mut self, key: &str, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(map) = &mut self.facts {
            map.insert(key.to_string(), v);
        }
    }

    /// Notes a failed measurement (and passes the value through).
    pub fn check<T>(&mut self, what: &str, m: &Measured<T>) {
        if let Measured::Failed(why) = m {
            self.failures.push(format!("{what}: {why}"));
        }
    }
}

/// "0.052 ms", "12.3 ms", "1.24 s": below a millisecond (a ping on one
/// host) three decimals, or every round trip there would read "0.1 ms".
pub fn format_ms(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 || ms == 0.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

/// Binary units, as `free -h` and the kernel's own messages use them.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_ms(3.125), "3.1 ms");
        assert_eq!(format_ms(0.0523), "0.052 ms");
        assert_eq!(format_ms(250.0), "250 ms");
        assert_eq!(format_ms(1500.0), "1.50 s");
        assert_eq!(format_ms(12_345.0), "12.3 s");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(256 << 20), "256 MiB");
    }

    #[test]
    fn failed_measurements_serialize_with_their_reason() {
        let m: Measured<f64> = Measured::failed("the VM did not boot");
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["failed"], "the VM did not boot");
        let cell: Cell = m.into();
        assert_eq!(cell.text(), "failed: the VM did not boot");
        let ok = serde_json::to_value(Measured::Value(2.5)).unwrap();
        assert_eq!(ok["value"], 2.5);
    }
}
