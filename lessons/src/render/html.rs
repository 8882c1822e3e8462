//! `--report FILE.html`: one self-contained page (inline CSS and SVG, no
//! scripts, nothing fetched) with each lesson's explanation, commands, output,
//! tables and charts, so it can be handed in or opened offline.

use std::fmt::Write as _;

use crate::report::{Chart, LessonReport, Measured, Side, Table};

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:860px;margin:2em auto;padding:0 1em;color:#1d2330;line-height:1.5}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #d7dce5;padding-bottom:.2em;margin-top:2.2em}
h3{margin-top:1.6em;font-size:1.1em}
.meta{color:#5b6475;font-size:.9em}
.backend{border-left:4px solid #3a7bd5;background:#eef4fc;padding:.5em .8em;margin:1em 0}
.backend.emulated{border-color:#d98b00;background:#fff6e5}
.step{margin:.8em 0}
.cmd{font-family:ui-monospace,Menlo,Consolas,monospace;background:#1d2330;color:#f3f5f8;padding:.45em .7em;border-radius:4px 4px 0 0;white-space:pre-wrap;word-break:break-all}
.cmd .side{color:#9fb3d1}
pre.out{margin:0;background:#f4f6f9;border:1px solid #d7dce5;border-top:none;padding:.5em .7em;max-height:18em;overflow:auto;font-size:.85em;white-space:pre-wrap}
.step .status{font-size:.8em;color:#5b6475}
table.results{border-collapse:collapse;margin:.6em 0;font-size:.92em}
table.results caption{text-align:left;font-weight:600;padding-bottom:.3em}
table.results th,table.results td{border:1px solid #d7dce5;padding:.3em .6em;text-align:left;vertical-align:top}
table.results th{background:#f4f6f9}
td.failed,.failed{color:#b3261e}
figure.chart{margin:1em 0}figure.chart figcaption{font-size:.85em;color:#5b6475}
ul.caveats li{margin:.2em 0}
"#;

pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// The whole page for one lesson or several (a tour).
pub fn page(reports: &[LessonReport], generated: &str) -> String {
    let title = match reports {
        [one] => format!("twinbox lesson: {}", one.title),
        _ => "twinbox lesson tour".to_string(),
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>\n",
        esc(&title)
    );
    let _ = write!(h, "<header><h1>{}</h1>", esc(&title));
    if let Some(first) = reports.first() {
        let _ = write!(
            h,
            "<p class=\"meta\">Measured on this machine (host kernel {}) at {}. \
             Containers and microVMs ran the same workload from the same image.</p>",
            esc(&first.host_kernel),
            esc(generated)
        );
    }
    h.push_str("</header>\n");
    if reports.len() > 1 {
        h.push_str("<nav><ol>");
        for r in reports {
            let _ = write!(
                h,
                "<li><a href=\"#lesson-{}\">{}</a></li>",
                esc(&r.lesson),
                esc(&r.title)
            );
        }
        h.push_str("</ol></nav>\n");
    }
    for r in reports {
        lesson(&mut h, r);
    }
    h.push_str("</body></html>\n");
    h
}

fn lesson(h: &mut String, r: &LessonReport) {
    let _ = writeln!(
        h,
        "<section class=\"lesson\" id=\"lesson-{}\"><h2>{}</h2>",
        esc(&r.lesson),
        esc(&r.title)
    );
    if let Some(b) = &r.vm_backend {
        let class = if b.emulated {
            "backend emulated"
        } else {
            "backend"
        };
        let _ = writeln!(
            h,
            "<div class=\"{class}\"><strong>VM backend: {}</strong> ({}). {}.{}</div>",
            esc(&b.name),
            esc(&b.description),
            esc(&b.reason),
            if b.emulated {
                " <strong>VM timings are from software emulation (TCG) and are not representative of a VM on hardware-assisted KVM.</strong>"
            } else {
                ""
            }
        );
    }
    for p in &r.explanation {
        let _ = writeln!(h, "<p>{}</p>", esc(p));
    }
    if !r.steps.is_empty() {
        h.push_str("<h3>What ran</h3>\n");
        for s in &r.steps {
            let status = match (&s.exit_code, &s.error) {
                (_, Some(e)) => format!("<span class=\"failed\">failed: {}</span>", esc(e)),
                (Some(c), None) => format!("exit code {c}"),
                (None, None) => String::new(),
            };
            let took = s
                .duration_ms
                .map(|ms| format!(" · {}", esc(&crate::report::format_ms(ms))))
                .unwrap_or_default();
            let _ = write!(
                h,
                "<div class=\"step\" data-side=\"{}\"><div class=\"cmd\"><span class=\"side\">[{}] $</span> {}</div>",
                side_class(s.side),
                esc(s.side.label()),
                esc(&s.command)
            );
            if !s.output.is_empty() {
                let _ = write!(h, "<pre class=\"out\">{}</pre>", esc(&s.output));
            }
            let _ = writeln!(h, "<div class=\"status\">{status}{took}</div></div>");
        }
    }
    if !r.tables.is_empty() || !r.charts.is_empty() {
        h.push_str("<h3>Results</h3>\n");
    }
    for t in &r.tables {
        table(h, t);
    }
    for c in &r.charts {
        chart(h, c);
    }
    if !r.findings.is_empty() {
        h.push_str("<h3>What this shows</h3>\n");
        for f in &r.findings {
            let _ = writeln!(h, "<p class=\"finding\">{}</p>", esc(f));
        }
    }
    if !r.caveats.is_empty() {
        h.push_str("<h3>Caveats</h3><ul class=\"caveats\">");
        for c in &r.caveats {
            let _ = write!(h, "<li>{}</li>", esc(c));
        }
        h.push_str("</ul>\n");
    }
    if !r.failures.is_empty() {
        h.push_str("<h3>Measurements that failed</h3><ul class=\"failed\">");
        for f in &r.failures {
            let _ = write!(h, "<li>{}</li>", esc(f));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");
}

fn table(h: &mut String, t: &Table) {
    let _ = write!(
        h,
        "<table class=\"results\" data-table=\"{}\"><caption>{}</caption><tr>",
        esc(&t.title),
        esc(&t.title)
    );
    for c in &t.columns {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>");
    for row in &t.rows {
        h.push_str("<tr>");
        for cell in row {
            match cell {
                crate::report::Cell::Text(text) => {
                    let _ = write!(h, "<td>{}</td>", esc(text));
                }
                crate::report::Cell::Failed { failed } => {
                    let _ = write!(h, "<td class=\"failed\">failed: {}</td>", esc(failed));
                }
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>\n");
}

fn side_class(side: Side) -> &'static str {
    match side {
        Side::Host => "host",
        Side::Container => "container",
        Side::Vm => "vm",
    }
}

fn side_color(side: Side) -> &'static str {
    match side {
        Side::Host => "#8a93a6",
        Side::Container => "#3a7bd5",
        Side::Vm => "#d98b00",
    }
}

/// A horizontal bar chart as inline SVG: one row per bar, whiskers for the
/// spread of several runs, the value written at the end of the bar.
fn chart(h: &mut String, c: &Chart) {
    const W: f64 = 760.0;
    const VALUE: f64 = 170.0;
    const ROW: f64 = 30.0;
    // room for the longest label at about 7 px a character (13 px text)
    let longest = c
        .bars
        .iter()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(0);
    let label_w = (longest as f64 * 7.2 + 16.0).clamp(100.0, 330.0).round();
    let plot = W - label_w - VALUE;
    let max = c
        .bars
        .iter()
        .filter_map(|b| b.value.value().copied())
        .chain(c.bars.iter().filter_map(|b| b.spread.map(|s| s.1)))
        .fold(0.0f64, f64::max);
    let scale = |v: f64| if max > 0.0 { v / max * plot } else { 0.0 };
    let height = ROW * c.bars.len() as f64 + 10.0;
    let _ = write!(
        h,
        "<figure class=\"chart\" data-chart=\"{}\"><figcaption><strong>{}</strong></figcaption>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{}\" width=\"{W}\" height=\"{height}\" viewBox=\"0 0 {W} {height}\" font-family=\"system-ui,sans-serif\" font-size=\"13\">",
        esc(&c.title),
        esc(&c.title),
        esc(&c.title)
    );
    for (i, b) in c.bars.iter().enumerate() {
        let y = 5.0 + i as f64 * ROW;
        let mid = y + ROW / 2.0;
        let _ = write!(
            h,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>",
            label_w - 8.0,
            mid,
            esc(&b.label)
        );
        match &b.value {
            Measured::Value(v) => {
                let w = scale(*v).max(if *v > 0.0 { 1.5 } else { 0.0 });
                let _ = write!(
                    h,
                    "<rect class=\"bar\" data-value=\"{v}\" x=\"{label_w}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\" rx=\"2\"><title>{}: {}</title></rect>",
                    y + 5.0,
                    ROW - 10.0,
                    side_color(b.side),
                    esc(&b.label),
                    esc(&c.unit.format(*v))
                );
                let mut end = label_w + w;
                if let Some((lo, hi)) = b.spread {
                    if hi > lo {
                        let (x1, x2) = (label_w + scale(lo), label_w + scale(hi));
                        let _ = write!(
                            h,
                            "<g class=\"spread\" stroke=\"#1d2330\" stroke-width=\"1.2\"><line x1=\"{x1:.1}\" y1=\"{mid:.1}\" x2=\"{x2:.1}\" y2=\"{mid:.1}\"/><line x1=\"{x1:.1}\" y1=\"{:.1}\" x2=\"{x1:.1}\" y2=\"{:.1}\"/><line x1=\"{x2:.1}\" y1=\"{:.1}\" x2=\"{x2:.1}\" y2=\"{:.1}\"/></g>",
                            mid - 5.0,
                            mid + 5.0,
                            mid - 5.0,
                            mid + 5.0
                        );
                        end = end.max(x2);
                    }
                }
                let _ = write!(
                    h,
                    "<text class=\"value\" x=\"{:.1}\" y=\"{mid:.1}\" dominant-baseline=\"middle\">{}</text>",
                    end + 6.0,
                    esc(&c.unit.format(*v))
                );
            }
            Measured::Failed(why) => {
                let _ = write!(
                    h,
                    "<text class=\"failed\" x=\"{label_w}\" y=\"{mid:.1}\" dominant-baseline=\"middle\" fill=\"#b3261e\">failed: {}</text>",
                    esc(why)
                );
            }
        }
    }
    h.push_str("</svg>");
    if let Some(note) = &c.note {
        let _ = write!(h, "<figcaption>{}</figcaption>", esc(note));
    }
    h.push_str("</figure>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::bar;
    use crate::report::Unit;

    #[test]
    fn page_is_self_contained_and_escaped() {
        let mut r = LessonReport::new("startup", "Startup <time>");
        r.explanation.push("a & b".into());
        r.charts.push(Chart {
            title: "time to workload start".into(),
            unit: Unit::Milliseconds,
            bars: vec![
                bar(
                    "container",
                    Side::Container,
                    Measured::Value(12.5),
                    Some((11.0, 14.0)),
                ),
                bar("microVM", Side::Vm, Measured::failed("no <kvm>"), None),
            ],
            note: None,
        });
        let html = page(&[r], "now");
        assert!(html.contains("<svg"));
        assert!(html.contains("12.5 ms"));
        assert!(html.contains("failed: no &lt;kvm&gt;"));
        assert!(html.contains("Startup &lt;time&gt;"));
        assert!(html.contains("a &amp; b"));
        for external in ["<script", "<link", "src=\"http", "href=\"http", "@import"] {
            assert!(!html.contains(external), "{external}");
        }
    }
}
