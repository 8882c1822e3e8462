//! `--format` as Docker takes it: Go `text/template` over each row or object,
//! `table ...` for aligned columns with a header, `json` for one JSON object a line.
//!
//! A small evaluator of our own: the Rust crates for Go templates are unmaintained
//! and do not take JSON data, and Docker's users need only the common subset.

mod exec;
mod parse;
pub mod units;

use serde_json::Value;

pub use exec::{print as go_print, FUNCTIONS};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("failed to parse template: {0}")]
    Parse(String),
    #[error("failed to execute template: {0}")]
    Exec(String),
}

/// Methods a row offers to templates, such as `ps`'s `{{.Label "key"}}`.
pub trait Methods {
    /// The result of `.name args...` on `target`, or None when there is no such method.
    fn call(&self, target: &Value, name: &str, args: &[Value]) -> Option<Value>;
}

/// A parsed Go template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<parse::Node>,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        Ok(Template {
            nodes: parse::parse(src)?,
        })
    }

    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        exec::Exec::new(data, None).run(&self.nodes)
    }

    pub fn render_with(
        &self,
        data: &Value,
        methods: &dyn Methods,
    ) -> Result<String, TemplateError> {
        exec::Exec::new(data, Some(methods)).run(&self.nodes)
    }

    /// The header line of a `table` template: each `{{.Field ...}}` action becomes
    /// the field's column title (from `titles`, else the field name in capitals);
    /// other actions print nothing, text stays.
    fn header(&self, titles: &Value) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                parse::Node::Text(t) => out.push_str(t),
                parse::Node::Action(p) if p.decl.is_empty() => {
                    let field = p
                        .commands
                        .iter()
                        .flat_map(|c| &c.args)
                        .find_map(|o| match o {
                            parse::Operand::Dot(chain) => chain.first(),
                            _ => None,
                        });
                    // `{{.Label "key"}}`: Docker titles the column with the key
                    let method_arg = p.commands.first().and_then(|c| match c.args.as_slice() {
                        [parse::Operand::Dot(_), parse::Operand::Str(a), ..] => Some(a),
                        _ => None,
                    });
                    if let Some(a) = method_arg {
                        out.push_str(a);
                    } else if let Some(f) = field {
                        match titles.get(f).and_then(Value::as_str) {
                            Some(t) => out.push_str(t),
                            None => out.push_str(&f.to_uppercase()),
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// What `--format` asked a listing verb for.
#[derive(Debug, Clone)]
pub enum Format {
    /// Aligned columns under a header line
    Table(Template),
    /// One rendering a row, each followed by a newline (`json` is `{{json .}}`)
    Lines(Template),
}

impl Format {
    /// `spec` as typed (empty or `table` = the verb's default table); `default_table`
    /// is the verb's own table template without the `table` word.
    pub fn parse(spec: &str, default_table: &str) -> Result<Format, TemplateError> {
        let spec = spec.trim();
        let unescape = |s: &str| s.trim().replace("\\t", "\t").replace("\\n", "\n");
        Ok(match spec {
            "" | "table" => Format::Table(Template::parse(&unescape(default_table))?),
            "json" => Format::Lines(Template::parse("{{json .}}")?),
            s if s.starts_with("table ") || s.starts_with("table\t") => {
                Format::Table(Template::parse(&unescape(&s[5..]))?)
            }
            s => Format::Lines(Template::parse(&unescape(s))?),
        })
    }

    /// Renders every row; `titles` maps field names to column titles.
    pub fn render(
        &self,
        rows: &[Value],
        titles: &Value,
        methods: Option<&dyn Methods>,
    ) -> Result<String, TemplateError> {
        let (tmpl, table) = match self {
            Format::Table(t) => (t, true),
            Format::Lines(t) => (t, false),
        };
        let mut text = String::new();
        if table {
            text.push_str(&tmpl.header(titles));
            text.push('\n');
        }
        for row in rows {
            match methods {
                Some(m) => text.push_str(&tmpl.render_with(row, m)?),
                None => text.push_str(&tmpl.render(row)?),
            }
            text.push('\n');
        }
        Ok(if table { tabwriter(&text) } else { text })
    }
}

/// Go's `text/tabwriter` as Docker sets it up (min width 10, padding 3, spaces):
/// tab-terminated cells are aligned in column blocks of consecutive lines, the
/// last cell of each line is written as is.
pub fn tabwriter(text: &str) -> String {
    let mut lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    if text.ends_with('\n') {
        lines.pop();
    }
    let mut out = String::new();
    let mut widths = Vec::new();
    block(&lines, &mut widths, 0, lines.len(), &mut out);
    if !text.ends_with('\n') {
        out.pop();
    }
    out
}

const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

fn block(
    lines: &[Vec<&str>],
    widths: &mut Vec<usize>,
    mut line0: usize,
    line1: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut i = line0;
    while i < line1 {
        if column + 1 >= lines[i].len() {
            i += 1;
            continue;
        }
        write_lines(lines, widths, line0, i, out);
        let mut width = MIN_WIDTH;
        let mut j = i;
        while j < line1 && column + 1 < lines[j].len() {
            width = width.max(lines[j][column].chars().count() + PADDING);
            j += 1;
        }
        widths.push(width);
        block(lines, widths, i, j, out);
        widths.pop();
        line0 = j;
        i = j;
    }
    write_lines(lines, widths, line0, line1, out);
}

fn write_lines(lines: &[Vec<&str>], widths: &[usize], from: usize, to: usize, out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() {
                out.push_str(&" ".repeat(widths[j].saturating_sub(cell.chars().count())));
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    #[test]
    fn fields_and_paths() {
        let v = json!({"Names": "web", "State": {"Status": "running", "Pid": 42}});
        assert_eq!(render("{{.Names}}", &v), "web");
        assert_eq!(render("{{.State.Status}} {{.State.Pid}}", &v), "running 42");
        assert_eq!(render("id={{ .Names }}!", &v), "id=web!");
        assert!(Template::parse("{{.Nope}}").unwrap().render(&v).is_err());
        assert!(Template::parse("{{.State.Nope}}")
            .unwrap()
            .render(&v)
            .is_err());
        assert!(Template::parse("{{.Names.X}}").unwrap().render(&v).is_err());
        // index of a missing key is Go's zero value, not an error
        assert_eq!(render("{{index .State \"x\"}}", &v), "<no value>");
    }

    #[test]
    fn functions_and_pipes() {
        let v = json!({"Names": "web", "Env": ["A=1", "B=2"], "Labels": {"a": "b"}});
        assert_eq!(render("{{json .Env}}", &v), r#"["A=1","B=2"]"#);
        assert_eq!(render("{{json .}}", &json!({"A": "<x>"})), r#"{"A":"<x>"}"#);
        assert_eq!(render("{{join .Env \",\"}}", &v), "A=1,B=2");
        assert_eq!(render("{{.Names | upper}}", &v), "WEB");
        assert_eq!(render("{{upper .Names | lower}}", &v), "web");
        assert_eq!(render("{{index .Labels \"a\"}}", &v), "b");
        assert_eq!(render("{{index .Env 1}}", &v), "B=2");
        assert_eq!(render("{{len .Env}}", &v), "2");
        assert_eq!(render("{{.Env}}", &v), "[A=1 B=2]");
        assert_eq!(render("{{.Labels}}", &v), "map[a:b]");
        assert_eq!(render("{{truncate .Names 2}}", &v), "we");
        assert_eq!(render("{{pad .Names 1 2}}|", &v), " web  |");
        assert_eq!(render("{{split \"a:b\" \":\"}}", &v), "[a b]");
        assert_eq!(render("{{title \"hello world\"}}", &v), "Hello World");
        assert_eq!(render("{{printf \"%-5s|%d\" .Names 3}}", &v), "web  |3");
        assert_eq!(render("{{printf \"%.2s\" .Names}}", &v), "we");
        assert_eq!(render("{{println .Names}}", &v), "web\n");
        assert_eq!(render("{{(index .Env 0)}}", &v), "A=1");
        assert!(Template::parse("{{nope .Names}}")
            .unwrap()
            .render(&v)
            .is_err());
    }

    #[test]
    fn control_flow_and_variables() {
        let v = json!({"Mounts": [{"Source": "/a"}, {"Source": "/b"}], "Running": true, "Labels": {"x": "1", "y": "2"}});
        assert_eq!(render("{{range .Mounts}}{{.Source}} {{end}}", &v), "/a /b ");
        assert_eq!(
            render(
                "{{range $i, $m := .Mounts}}{{$i}}={{$m.Source}};{{end}}",
                &v
            ),
            "0=/a;1=/b;"
        );
        assert_eq!(
            render("{{range $k, $v := .Labels}}{{$k}}:{{$v}} {{end}}", &v),
            "x:1 y:2 "
        );
        assert_eq!(render("{{if .Running}}up{{else}}down{{end}}", &v), "up");
        assert_eq!(
            render("{{if not .Running}}up{{else if .Mounts}}m{{end}}", &v),
            "m"
        );
        assert_eq!(render("{{with .Labels.x}}{{.}}{{end}}", &v), "1");
        assert_eq!(
            render(
                "{{range .Nothing}}x{{else}}none{{end}}",
                &json!({"Nothing": []})
            ),
            "none"
        );
        assert_eq!(render("{{if eq .Running true}}y{{end}}", &v), "y");
        assert_eq!(
            render("{{$n := len .Mounts}}{{$n}} {{$.Running}}", &v),
            "2 true"
        );
        assert_eq!(render("a {{- \" b \" -}} c", &v), "a b c");
        assert_eq!(render("{{/* note */}}x", &v), "x");
        assert_eq!(
            render(
                "{{range .Mounts}}{{if eq .Source \"/a\"}}{{continue}}{{end}}{{.Source}}{{end}}",
                &v
            ),
            "/b"
        );
    }

    #[test]
    fn parse_errors_are_clear() {
        for bad in [
            "{{.Names",
            "{{if .A}}x",
            "{{end}}",
            "{{\"x}}",
            "{{(.A}}",
            "{{range}}{{end}}",
            "{{define \"x\"}}{{end}}",
        ] {
            let e = Template::parse(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("failed to parse template: "),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn table_aligns_like_docker() {
        let rows = vec![
            json!({"ID": "abc", "Names": "web"}),
            json!({"ID": "abcdefabcdef", "Names": "db"}),
        ];
        let titles = json!({"ID": "CONTAINER ID", "Names": "NAMES"});
        let f = Format::parse("table {{.ID}}\\t{{.Names}}", "").unwrap();
        let out = f.render(&rows, &titles, None).unwrap();
        assert_eq!(
            out,
            "CONTAINER ID   NAMES\nabc            web\nabcdefabcdef   db\n"
        );
        // minimum width 10
        let f = Format::parse("table {{.Names}}\t{{.ID}}", "").unwrap();
        let out = f.render(&rows, &titles, None).unwrap();
        assert_eq!(out.lines().next().unwrap(), "NAMES     CONTAINER ID");
        let f = Format::parse("json", "").unwrap();
        assert_eq!(
            f.render(&rows[..1], &titles, None).unwrap(),
            "{\"ID\":\"abc\",\"Names\":\"web\"}\n"
        );
        let f = Format::parse("{{.Names}}", "").unwrap();
        assert_eq!(f.render(&rows, &titles, None).unwrap(), "web\ndb\n");
    }

    struct Label;
    impl Methods for Label {
        fn call(&self, target: &Value, name: &str, args: &[Value]) -> Option<Value> {
            if name != "Label" {
                return None;
            }
            Some(target["L"][args[0].as_str()?].clone())
        }
    }

    #[test]
    fn methods_take_arguments() {
        let v = json!({"L": {"k": "v"}});
        let t = Template::parse("{{.Label \"k\"}}").unwrap();
        assert_eq!(t.render_with(&v, &Label).unwrap(), "v");
        assert!(t.render(&v).is_err());
    }
}
