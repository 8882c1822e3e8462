//! Output helpers shared by the verbs: tables, ages, sizes, errors.

/// Prints rows as left-aligned columns separated by three spaces, like docker.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                s.push_str(&c);
            } else {
                s.push_str(&format!("{:<w$}   ", c, w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

pub use twinbox_engine::template::units::{human_duration, human_size, since};

/// `inspect`'s output: an indented JSON array, or each object through the
/// `--format` template, one a line.
pub fn print_objects(objects: &[serde_json::Value], format: &str) -> anyhow::Result<()> {
    if format.is_empty() || format == "json" {
        println!("{}", serde_json::to_string_pretty(objects)?);
        return Ok(());
    }
    let t = twinbox_engine::template::Template::parse(format)?;
    for o in objects {
        println!("{}", t.render(o)?);
    }
    Ok(())
}

/// One line: the outermost message and its causes, without repeating them.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// Docker's exit codes: 125 for our own errors, 126/127 from the container's init;
/// a bad `--format` template is the CLI's own error, 1 as in Docker.
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause
            .downcast_ref::<twinbox_engine::template::TemplateError>()
            .is_some()
        {
            return 1;
        }
        if let Some(c) = cause.downcast_ref::<twinbox_engine::container::ContainerError>() {
            return c.exit_code() as u8;
        }
        if let Some(r) = cause.downcast_ref::<twinbox_engine::runtime::RuntimeError>() {
            return r.exit_code() as u8;
        }
    }
    125
}
