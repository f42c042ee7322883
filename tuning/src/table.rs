//! Plain-text tables: columns padded to their widest cell, numbers right-aligned.

/// Renders `header` and `rows` with two spaces between columns. A column whose cells are all numbers
/// (or `-`) is right-aligned.
pub fn render(header: &[String], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .chain(std::iter::once(&header[c]))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .all(|s| s == "-" || s.replace(',', "").parse::<f64>().is_ok())
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut line = String::new();
        for (c, w) in width.iter().enumerate() {
            let cell = row.get(c).map_or("", String::as_str);
            let pad = w - cell.chars().count();
            if c > 0 {
                line.push_str("  ");
            }
            if numeric[c] {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An integer with thousands separators: 563330.4 → `563,330`.
pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let h = vec!["name".to_string(), "msg/s".to_string()];
        let rows = vec![
            vec!["a".to_string(), "1,000".to_string()],
            vec!["longer".to_string(), "5".to_string()],
        ];
        assert_eq!(
            render(&h, &rows),
            "name    msg/s\na       1,000\nlonger      5\n"
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(563330.4), "563,330");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(-1234567.0), "-1,234,567");
    }
}
