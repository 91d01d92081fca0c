//! A line diff for showing what `setup` would change in a small text file
//! (a configuration, a lookup table): removed lines `-`, added lines `+`,
//! from a longest common subsequence. Quadratic, so only for small files.

/// The changed lines of `old` → `new`, each prefixed `- ` or `+ `, in
/// order; empty when the texts are equal.
pub fn lines(old: &str, new: &str) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // lcs[i][j]: length of the common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals first, as diff(1) shows a changed line.
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn shows_only_changed_lines() {
        assert!(super::lines("a\nb\n", "a\nb\n").is_empty());
        assert_eq!(
            super::lines("a\nb\nc\n", "a\nx\nc\nd\n"),
            ["- b", "+ x", "+ d"]
        );
        assert_eq!(super::lines("", "new\n"), ["+ new"]);
    }
}
