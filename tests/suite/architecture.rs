//! Architecture of `src/` (issue 17): the files' imports form layers, front
//! doors -> core -> GitLab, with no circle between files; no file is over 450
//! lines; only the GitLab client and `outcome` read the HTTP status of
//! GitLab's answers, so the rest sees an `Outcome` and a status is handled
//! in one place. The tree is read at test time with a small std-only lexer;
//! `cargo test --test suite architecture -- --nocapture` prints the layers.
//!
//! Limits: only paths starting with `crate`, `super`, `self`, a `mod` child
//! or a name `use` bound to a module are followed; a child's `use super::*`
//! (one module split in files) is no arrow: the child is part of its parent;
//! inline non-test `mod x { .. }` blocks and macros are not looked into.

use std::collections::{BTreeMap, BTreeSet};
use std::{fs, path::PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
const MAX_LINES: usize = 450;

/// A token (identifier, `::` or one punctuation character) and its line.
type Tok = (String, usize);

/// One `.rs` file under `src/`: its name ("src/a/b.rs"), module path
/// (`["a", "b"]`, empty for lib.rs and main.rs), tokens (no comments,
/// literals or unit tests) and length. Test-only files (`tests.rs`, under a
/// `tests/` directory) are exempt from every rule.
struct File {
    name: String,
    module: Vec<String>,
    toks: Vec<Tok>,
    lines: usize,
    test_only: bool,
}

fn read_tree() -> Vec<File> {
    let (mut dirs, mut paths) = (vec![PathBuf::from(SRC)], Vec::new());
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    let file = |path: &PathBuf| {
        let rel = path.strip_prefix(SRC).unwrap().to_string_lossy();
        let text = fs::read_to_string(path).expect("source is UTF-8");
        let mut module: Vec<String> = rel[..rel.len() - 3].split('/').map(String::from).collect();
        if module.last().is_some_and(|m| m == "mod") || module == ["lib"] || module == ["main"] {
            module.pop();
        }
        let under_tests = rel.starts_with("tests/") || rel.contains("/tests/");
        File {
            test_only: module.last().is_some_and(|m| m == "tests") || under_tests,
            name: format!("src/{rel}"),
            module,
            toks: strip_tests(lex(&text)),
            lines: text.lines().count(),
        }
    };
    paths.iter().map(file).collect()
}

/// Tokenizes Rust code, dropping comments (doc comments too) and string,
/// char and byte literals, so `crate::x` or `StatusCode` in prose is no code.
fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let word = |k: usize| at(k).is_alphanumeric() || at(k) == '_';
    let (mut out, mut i, mut line) = (Vec::new(), 0, 1);
    while i < c.len() {
        let (start, mut keep) = (i, false);
        match (c[i], at(i + 1)) {
            ('/', '/') => i = (i..c.len()).find(|&k| c[k] == '\n').unwrap_or(c.len()),
            ('/', '*') => {
                let mut depth = 0; // block comments nest in Rust
                while at(i) != '\0' && (depth > 0 || i == start) {
                    let pair = (c[i], at(i + 1));
                    let step = i32::from(pair == ('/', '*')) - i32::from(pair == ('*', '/'));
                    (depth, i) = (depth + step, i + if step == 0 { 1 } else { 2 });
                }
            }
            ('"', _) => {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            ('\'', '\\') => i = (i + 3..c.len()).find(|&k| c[k] == '\'').unwrap_or(c.len()) + 1,
            ('\'', _) if at(i + 2) == '\'' => i += 3, // 'x'; a lifetime's quote is kept
            (':', ':') => (i, keep) = (i + 2, true),
            _ if word(i) => {
                while word(i) {
                    i += 1;
                }
                let hashes = (i..).take_while(|&k| at(k) == '#').count();
                let prefix: String = c[start..i].iter().collect();
                keep = !(matches!(prefix.as_str(), "r" | "br" | "cr") && at(i + hashes) == '"');
                if !keep {
                    // Raw string: ends at a quote followed by as many '#'.
                    i += hashes + 1;
                    while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#')) {
                        i += 1;
                    }
                    i += hashes + 1;
                } // else `b"..."`/`b'x'`: the prefix stays, the literal goes next turn
            }
            _ => (i, keep) = (i + 1, !c[i].is_whitespace()),
        }
        let i_end = i.min(c.len());
        if keep {
            out.push((c[start..i_end].iter().collect(), line));
        }
        line += c[start..i_end].iter().filter(|&&ch| ch == '\n').count();
    }
    out
}

/// True when the tokens at `t[k..]` are `words`.
fn is(t: &[Tok], k: usize, words: &[&str]) -> bool {
    t.len() >= k + words.len() && words.iter().zip(&t[k..]).all(|(w, (tok, _))| w == tok)
}

/// Drops `#[cfg(test)] mod tests { .. }` (and `mod tests;`): unit tests may
/// reach into anything, they are no part of the layering.
fn strip_tests(mut t: Vec<Tok>) -> Vec<Tok> {
    let head = ["#", "[", "cfg", "(", "test", ")", "]", "mod", "tests"];
    while let Some(k) = (0..t.len()).find(|&k| is(&t, k, &head)) {
        let (mut end, mut depth) = (k + head.len(), 0);
        while end < t.len() {
            depth += i32::from(t[end].0 == "{") - i32::from(t[end].0 == "}");
            end += 1;
            if depth == 0 && matches!(t[end - 1].0.as_str(), "}" | ";") {
                break;
            }
        }
        t.drain(k..end);
    }
    t
}

fn is_ident(t: &str) -> bool {
    t.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// A path and the name it is bound to by `as`, if any.
type UsePath = (Vec<String>, Option<String>);

/// Expands the use tree at `t[*i]` (`a::{b, c::d as e, *}`) into paths.
fn use_tree(t: &[Tok], i: &mut usize, mut path: Vec<String>, out: &mut Vec<UsePath>) {
    let mut alias = None;
    while let Some((tok, _)) = t.get(*i) {
        match tok.as_str() {
            "::" => {}
            "{" => {
                *i += 1;
                while t.get(*i).is_some_and(|t| t.0 != "}") {
                    use_tree(t, i, path.clone(), out);
                    *i += usize::from(is(t, *i, &[","]));
                }
                *i += 1;
                return;
            }
            "as" => (alias, *i) = (t.get(*i + 1).map(|t| t.0.clone()), *i + 1),
            s if s == "*" || is_ident(s) => path.push(s.to_string()),
            _ => break,
        }
        *i += 1;
    }
    out.push((path, alias));
}

/// The import graph: `(from, to)` file indexes -> the names that tie them.
type Arrows = BTreeMap<(usize, usize), BTreeSet<String>>;

fn import_graph(files: &[File]) -> Arrows {
    // Module path -> file; the crate root is lib.rs (main.rs is its own node).
    let modules: BTreeMap<&[String], usize> = (0..files.len())
        .filter(|&k| !files[k].test_only && files[k].name != "src/main.rs")
        .map(|k| (files[k].module.as_slice(), k))
        .collect();
    let mut arrows = Arrows::new();
    for (from, file) in files.iter().enumerate().filter(|(_, f)| !f.test_only) {
        let (t, is_main) = (&file.toks, file.name == "src/main.rs");
        // Other names that start a path into the crate, with the module they
        // name: `mod` children, and (added below) names a `use` bound to a
        // module (`use super::listen;` then `listen::open`).
        let mut starts = BTreeMap::new();
        for k in (1..t.len()).filter(|&k| t[k - 1].0 == "mod" && is(t, k + 1, &[";"])) {
            let child = t[k].0.clone();
            starts.insert(child.clone(), [&file.module[..], &[child]].concat());
        }
        if is_main {
            starts.insert("gitlab_mailgate".into(), vec![]); // main.rs uses the lib like `crate`
        }
        let mut k = 0;
        while k < t.len() {
            let mut paths = Vec::new();
            if t[k].0 == "use" {
                k += 1;
                use_tree(t, &mut k, Vec::new(), &mut paths);
            } else if is_ident(&t[k].0) && is(t, k + 1, &["::"]) && (k == 0 || t[k - 1].0 != "::") {
                let mut path = vec![t[k].0.clone()];
                while is(t, k + 1, &["::"]) && t.get(k + 2).is_some_and(|n| is_ident(&n.0)) {
                    path.push(t[k + 2].0.clone());
                    k += 2;
                }
                paths.push((path, None));
            }
            k += 1;
            for (path, alias) in paths {
                if path.len() < 2 || path == ["super", "*"] {
                    continue; // a child's glob of its parent is no arrow (see the limits)
                }
                let mut full = match path[0].as_str() {
                    "crate" => vec![],
                    "self" => file.module.clone(),
                    "super" => file.module[..file.module.len().saturating_sub(1)].to_vec(),
                    s => match starts.get(s) {
                        Some(module) => module.clone(),
                        None => continue, // std, another crate, a type
                    },
                };
                for seg in &path[1..] {
                    match seg.as_str() {
                        "super" => _ = full.pop(),
                        "self" => {}
                        s => full.push(s.to_string()),
                    }
                }
                // The deepest module the path names; the next segment is the item.
                let deepest = (0..=full.len()).rfind(|&n| modules.contains_key(&full[..n]));
                let (depth, to) = deepest.map_or((0, from), |d| (d, modules[&full[..d]]));
                if to == from || (is_main && depth == 0) {
                    continue; // self-loop, or main.rs -> lib.rs
                }
                let name = full.get(depth).or(full.last()).cloned();
                let name = name.unwrap_or_else(|| "crate".into());
                if depth == full.len() && depth > 0 {
                    starts.insert(alias.unwrap_or(name.clone()), full.clone());
                }
                arrows.entry((from, to)).or_default().insert(name);
            }
        }
    }
    arrows
}

/// Tarjan's strongly connected components, in reverse topological order:
/// a component comes after every component it imports from.
fn components(n: usize, arrows: &Arrows) -> Vec<Vec<usize>> {
    /// Per node (visit index, lowest index it reaches) once visited; the
    /// stack of open nodes; the components found.
    type State = (Vec<Option<(usize, usize)>>, Vec<usize>, Vec<Vec<usize>>);
    fn visit(v: usize, next: &[Vec<usize>], s: &mut State) {
        let i = s.0.iter().flatten().count();
        s.0[v] = Some((i, i));
        s.1.push(v);
        for &w in &next[v] {
            if s.0[w].is_none() {
                visit(w, next, s);
            }
            if s.1.contains(&w) {
                let low = s.0[w].unwrap().1.min(s.0[v].unwrap().1);
                s.0[v] = Some((i, low));
            }
        }
        if s.0[v] == Some((i, i)) {
            let at = s.1.iter().position(|&x| x == v).unwrap();
            let comp = s.1.split_off(at);
            s.2.push(comp);
        }
    }
    let mut next = vec![Vec::new(); n];
    arrows.keys().for_each(|&(a, b)| next[a].push(b));
    let mut s: State = (vec![None; n], Vec::new(), Vec::new());
    for v in 0..n {
        if s.0[v].is_none() {
            visit(v, &next, &mut s);
        }
    }
    s.2
}

/// The files, their import graph and its components (bottom-up).
fn graph() -> (Vec<File>, Arrows, Vec<Vec<usize>>) {
    let files = read_tree();
    let arrows = import_graph(&files);
    let comps = components(files.len(), &arrows);
    (files, arrows, comps)
}

#[test]
fn no_import_cycles() {
    let (files, arrows, comps) = graph();
    let mut report = String::new();
    for comp in comps.iter().filter(|c| c.len() > 1) {
        let mut members: Vec<&str> = comp.iter().map(|&f| files[f].name.as_str()).collect();
        members.sort();
        report += &format!("\ncircle between {}:\n", members.join(", "));
        for ((a, b), names) in &arrows {
            if comp.contains(a) && comp.contains(b) {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let (a, b, names) = (&files[*a].name, &files[*b].name, names.join(", "));
                report += &format!("  {a} -> {b}: {names}\n");
            }
        }
    }
    assert!(report.is_empty(), "import circles in src/:{report}");
}

/// Prints the stack, top floor first; files in a circle share a floor.
/// Every file imports only from lower floors (Tarjan's order ensures it).
#[test]
fn layers() {
    let (files, arrows, comps) = graph();
    let (mut layer, mut floors) = (vec![0; files.len()], BTreeMap::<usize, Vec<String>>::new());
    for comp in comps.iter().filter(|c| !files[c[0]].test_only) {
        let out = arrows
            .keys()
            .filter(|(a, b)| comp.contains(a) && !comp.contains(b));
        let l = out.map(|&(_, b)| layer[b] + 1).max().unwrap_or(0);
        comp.iter().for_each(|&f| layer[f] = l);
        let mut names: Vec<&str> = comp.iter().map(|&f| files[f].name.as_str()).collect();
        names.sort();
        let names = names.join(" <-> ");
        let circle = comp.len() > 1;
        let floor = floors.entry(l).or_default();
        floor.push(if circle { format!("[{names}]") } else { names });
    }
    for (l, mut names) in floors.into_iter().rev() {
        names.sort();
        println!("layer {l}: {}", names.join(", "));
    }
}

#[test]
fn no_file_over_450_lines() {
    let long: String = (read_tree().iter())
        .filter(|f| !f.test_only && f.lines > MAX_LINES)
        .map(|f| format!("\n  {}: {} lines", f.name, f.lines))
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines:{long}");
}

#[test]
fn gitlab_status_codes_read_only_by_gitlab_and_outcome() {
    // src/http.rs is our own health/metrics listener: it writes statuses, it
    // does not read GitLab's. SMTP codes (reply.rs, lmtp/) match no pattern.
    let exempt = |n: &str| {
        n == "src/http.rs" || matches!(n.split(['/', '.']).nth(1), Some("gitlab" | "outcome"))
    };
    let patterns = [
        "Posted :: Status",
        "Posted :: Throttled",
        ". status ( ) . as_u16 ( )",
        "StatusCode",
    ];
    let patterns = patterns.map(|p| p.split(' ').collect::<Vec<_>>());
    let mut found = String::new();
    for file in read_tree()
        .iter()
        .filter(|f| !f.test_only && !exempt(&f.name))
    {
        for (k, (_, line)) in file.toks.iter().enumerate() {
            if let Some(p) = patterns.iter().find(|p| is(&file.toks, k, p)) {
                found += &format!("\n  {}:{line}: {}", file.name, p.concat());
            }
        }
    }
    let why = "GitLab's HTTP status is read outside src/gitlab* and src/outcome*";
    assert!(found.is_empty(), "{why}:{found}");
}

/// The parser on a made-up file: if it silently saw nothing, the checks
/// above would pass on any tree.
#[test]
fn parser_reads_grouped_uses_and_skips_prose_and_tests() {
    let code = "use crate::{a::{B, c as d},\n  e::*};\n/// crate::f::G\nlet s = \"crate::h\\\"\"; let c = '\"';\n\
        /* crate::j /* nested */ */ x = super::k::L; r#\"crate::m\"#;\n#[cfg(test)]\nmod tests {\n use crate::n::O;\n}\nuse crate::p::Q;\n";
    let t = strip_tests(lex(code));
    let (mut paths, mut i) = (Vec::new(), 1);
    use_tree(&t, &mut i, vec![], &mut paths);
    let joined: Vec<String> = paths.iter().map(|(p, _)| p.join("::")).collect();
    assert_eq!(joined, ["crate::a::B", "crate::a::c", "crate::e::*"]);
    assert_eq!(paths[1].1.as_deref(), Some("d"));
    let rest: String = t[i..].iter().map(|(tok, _)| tok.as_str()).collect();
    assert_eq!(rest, ";lets=;letc=;x=super::k::L;;usecrate::p::Q;");
    assert_eq!((t[i + 10].1, t[t.len() - 1].1), (5, 10), "line numbers");
}
