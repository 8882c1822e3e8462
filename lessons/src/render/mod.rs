//! Showing a lesson: live narration and the summary in the terminal, the same
//! record as JSON, and a self-contained HTML page with SVG charts.

pub mod html;
pub mod json;
pub mod terminal;
