//! Text tables: each column as wide as its widest cell, so no value spills into the next.

/// Renders `rows` (the first is the header) with columns separated by one space and padded to
/// the widest cell of each column; trailing spaces are trimmed and every line ends with a
/// newline. Widths count characters, not bytes.
pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push(' ');
            }
            line.push_str(cell);
            let pad = widths[c].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_string()).collect()
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_values_never_spill() {
        let t = render(&[
            row(&["ID", "GRANTEE", "NOTE"]),
            row(&["a1", "role:researcher@did:key:z6MkLongDid", "x"]),
            row(&["b2", "org:h", ""]),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "ID GRANTEE                             NOTE");
        assert_eq!(lines[1], "a1 role:researcher@did:key:z6MkLongDid x");
        assert_eq!(lines[2], "b2 org:h", "trailing padding is trimmed");
        let note_at = lines[0].find("NOTE").unwrap();
        assert_eq!(lines[1].find(" x").unwrap() + 1, note_at, "columns line up");
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let t = render(&[row(&["Å", "b"]), row(&["cc", "d"])]);
        assert_eq!(t, "Å  b\ncc d\n");
    }
}
