//! Plain-text tables for people: aligned columns under a header, bold only
//! on a terminal.

use std::io::IsTerminal;

/// A table: a header and rows of cells, each column as wide as its widest
/// cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column names.
    pub fn new(header: &[&'static str]) -> Self {
        Self { header: header.to_vec(), rows: Vec::new() }
    }

    /// Adds a row; missing cells are empty.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row; the header bold when `styled`.
    pub fn render(&self, styled: bool) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, cell) in cells.take(columns).enumerate() {
                if i + 1 == columns {
                    // The last column is not padded: no trailing spaces.
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
                }
            }
            out.trim_end().to_string()
        };
        let header = line(&mut self.header.iter().copied());
        let mut out = if styled { format!("\x1b[1m{header}\x1b[0m\n") } else { format!("{header}\n") };
        for row in &self.rows {
            let mut cells = row.iter().map(String::as_str).chain(std::iter::repeat(""));
            out.push_str(&line(&mut cells));
            out.push('\n');
        }
        out
    }
}

/// Whether stdout takes styling: a terminal, and `NO_COLOR` unset.
pub fn styled_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_lines_have_no_trailing_space() {
        let mut table = Table::new(&["SERVICE", "KIND", "VERSION"]);
        table.row(vec!["shopping-cart".into(), "event-sourced".into(), "12".into()]);
        table.row(vec!["c".into(), "value".into()]);
        assert_eq!(
            table.render(false),
            "SERVICE        KIND           VERSION\n\
             shopping-cart  event-sourced  12\n\
             c              value\n"
        );
    }

    #[test]
    fn a_styled_header_is_bold() {
        let table = Table::new(&["A"]);
        assert_eq!(table.render(true), "\x1b[1mA\x1b[0m\n");
    }
}
