//! Labelled lines at depths, the values of all of them starting in one column (as Argo Rollouts'
//! `get rollout` prints them), so nested figures still read down one edge.

#[derive(Default)]
pub struct Fields {
    lines: Vec<(usize, String, String)>,
}

impl Fields {
    /// `label: value` indented by `depth` steps.
    pub fn field(&mut self, depth: usize, label: &str, value: impl Into<String>) {
        self.lines.push((depth, format!("{label}:"), value.into()));
    }

    /// A value continuing the previous field on a line of its own.
    pub fn more(&mut self, depth: usize, value: impl Into<String>) {
        self.lines.push((depth, String::new(), value.into()));
    }

    pub fn render(&self) -> String {
        let width = self
            .lines
            .iter()
            .map(|(depth, label, _)| 2 * depth + label.chars().count())
            .max()
            .unwrap_or(0)
            + 2;
        let mut out = String::new();
        for (depth, label, value) in &self.lines {
            let head = format!("{}{label}", "  ".repeat(*depth));
            let line = format!("{head:width$}{value}");
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_start_in_one_column() {
        let mut f = Fields::default();
        f.field(0, "Name", "movies");
        f.field(1, "Suggestions", "10 shown");
        f.more(1, "and more");
        f.field(0, "Empty", "");
        assert_eq!(
            f.render(),
            "Name:           movies\n  Suggestions:  10 shown\n                and more\nEmpty:\n"
        );
    }
}
