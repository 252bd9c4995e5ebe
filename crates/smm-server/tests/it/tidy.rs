//! Tidy: the repository's docs and comments point only at things that exist, and carry no
//! progress notes.
//!
//! The test reads every file `git ls-files` lists (from the workspace root) and looks at its
//! prose: the whole of a Markdown file; in Rust, `//` comments (whole-line ones, and trailing
//! ones set off by spaces), doc comments included; `#` comments in TOML, YAML, shell, Python,
//! Dockerfiles, systemd units and env examples; `--` comments in SQL. Everything else (code,
//! strings, data such as JSON fixtures) is left alone.
//!
//! # What counts as a path
//!
//! Only forms that leave little doubt, so that the test rarely cries wolf:
//!
//! 1. a Markdown link target, `[text](target)`, unless it is a URL (`scheme:`), an anchor
//!    (`#...`) or, in Rust files, an intra-doc link (no `/` and no file extension);
//! 2. a backticked token without spaces that contains a `/` and names one of the repository's
//!    top-level directories first (`crates/...`, `docs/...`), or ends with a file extension or
//!    with a `/` (a directory); tokens that start with `/` (URL paths, absolute paths) or
//!    contain `::`, `://` or template characters (`<>{}$|=`) are not paths;
//! 3. any word, backticked or not, that starts with `./` or `../`.
//!
//! A trailing `#anchor` or `:line` is dropped and a glob (`*`) is cut back to the directory
//! before it. Link targets and `../` paths resolve against the file's directory; `./` paths
//! against it or the repository root (where commands run); other backticked paths against
//! either of those or the file's crate. A reference passes when one of its resolutions names a
//! tracked file, a directory holding one, or a local file the repository's `.gitignore` files
//! set aside (`data/`, `deploy/.env`, `config/local.toml`). A path that climbs above the
//! repository root is always a finding: whatever it names is not part of the repository.
//!
//! # Progress words
//!
//! Case-insensitive, as whole words: the phrases in [`PROGRESS_WORDS`]. Docs describe what
//! is; plans and debts belong in the issue tracker.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Notes about unfinished work, not descriptions of the code (matched as whole words).
const PROGRESS_WORDS: &[&str] = &[
    "still to come",
    "not yet implemented",
    "todo",
    "fixme",
    "xxx",
    "for now",
    "coming soon",
    "built so far",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/smm-server sits two levels below the root")
        .to_path_buf()
}

fn git(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .expect("git runs")
}

struct Repo {
    root: PathBuf,
    files: BTreeSet<String>,
    dirs: BTreeSet<String>,
    top_dirs: Vec<String>,
}

impl Repo {
    fn load() -> Repo {
        let root = workspace_root();
        let listed = git(&root, &["ls-files", "-z"]);
        assert!(listed.status.success(), "git ls-files failed");
        let files: BTreeSet<String> = String::from_utf8(listed.stdout)
            .expect("UTF-8 paths")
            .split('\0')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        let mut dirs = BTreeSet::new();
        for file in &files {
            let mut end = 0;
            while let Some(slash) = file[end..].find('/') {
                end += slash;
                dirs.insert(file[..end].to_owned());
                end += 1;
            }
        }
        let top_dirs = dirs
            .iter()
            .filter(|d| !d.contains('/'))
            .map(|d| format!("{d}/"))
            .collect();
        Repo {
            root,
            files,
            dirs,
            top_dirs,
        }
    }

    fn exists(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        path.is_empty() || self.files.contains(path) || self.dirs.contains(path)
    }

    /// Set aside by a `.gitignore`: a local file the docs may well tell the reader to create.
    fn ignored(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        !path.is_empty()
            && git(
                &self.root,
                &["check-ignore", "-q", "--no-index", "--", path],
            )
            .status
            .success()
    }
}

/// `path` joined onto `base` and normalised; `None` when it climbs above the root.
fn resolve(base: &str, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for segment in base.split('/').chain(path.split('/')) {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Markdown,
    Rust,
    Hash,
    Sql,
    Other,
}

fn kind(file: &str) -> Kind {
    let name = file.rsplit('/').next().unwrap_or(file);
    if name.ends_with(".md") {
        Kind::Markdown
    } else if name.ends_with(".rs") {
        Kind::Rust
    } else if name.ends_with(".sql") {
        Kind::Sql
    } else if [
        ".toml", ".yaml", ".yml", ".sh", ".py", ".service", ".example",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
        || name.starts_with("Dockerfile")
        || name == ".gitignore"
        || file == ".ci/run"
    {
        Kind::Hash
    } else {
        Kind::Other
    }
}

/// The comment part of `line`, if any: from `marker` when the line starts with it, or from a
/// trailing ` marker ` outside (naively counted) double quotes.
fn comment<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let trimmed = line.trim_start();
    if trimmed.starts_with(marker) {
        return Some(trimmed);
    }
    let spaced = format!(" {marker} ");
    let at = line.find(&spaced)?;
    (line[..at].matches('"').count() % 2 == 0).then(|| &line[at..])
}

/// The prose of `line` in a file of `kind`.
fn prose(kind: Kind, line: &str) -> Option<&str> {
    match kind {
        Kind::Markdown => Some(line),
        Kind::Rust => comment(line, "//"),
        Kind::Hash => comment(line, "#").filter(|c| !c.starts_with("#!")),
        Kind::Sql => comment(line, "--"),
        Kind::Other => None,
    }
}

const EXTENSIONS: &[&str] = &[
    ".rs", ".md", ".toml", ".sql", ".sh", ".json", ".yaml", ".yml", ".lock", ".py", ".service",
    ".example", ".txt", ".csv", ".html",
];

/// Where a reference may be meant from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// The file's directory: links and `../` paths.
    FileOnly,
    /// The file's directory or the root (the working directory of a command): `./` paths.
    FileOrRoot,
    /// The file's directory, the root or the file's crate: other backticked paths.
    Anywhere,
}

/// A path reference found in prose, with how it may be resolved.
struct Reference<'a> {
    text: &'a str,
    from: Base,
}

fn strip_suffixes(path: &str) -> &str {
    let path = path.split('#').next().unwrap_or(path);
    // `file.rs:12` names a line; drop it (a path has no colon otherwise).
    let path = path.split(':').next().unwrap_or(path);
    match path.find('*') {
        Some(star) => &path[..path[..star].rfind('/').map_or(0, |s| s + 1)],
        None => path,
    }
}

fn references<'a>(kind: Kind, text: &'a str, top_dirs: &[String]) -> Vec<Reference<'a>> {
    let mut found = Vec::new();
    // 1. Markdown link targets.
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        rest = &after[end..];
        let is_url = target.split_once(':').is_some_and(|(scheme, _)| {
            scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
                && !scheme.is_empty()
        });
        if target.is_empty() || target.starts_with('#') || is_url {
            continue;
        }
        if kind == Kind::Rust
            && !target.contains('/')
            && !EXTENSIONS
                .iter()
                .any(|e| strip_suffixes(target).ends_with(e))
        {
            continue; // an intra-doc link
        }
        found.push(Reference {
            text: target,
            from: Base::FileOnly,
        });
    }
    // 2. Backticked tokens.
    let mut pieces = text.split('`');
    pieces.next();
    while let Some(token) = pieces.next() {
        pieces.next(); // the prose after the closing backtick
        if token.is_empty()
            || token.contains(char::is_whitespace)
            || !token.contains('/')
            || token.starts_with('/')
            || token.contains("::")
            || token.contains("://")
            || token.contains(|c| "<>{}$|=".contains(c))
        {
            continue;
        }
        let path = strip_suffixes(token);
        let relative = token.starts_with("./") || token.starts_with("../");
        if relative {
            continue; // rule 3 below takes every ./ and ../ word, backticked or not
        }
        if top_dirs.iter().any(|d| path.starts_with(d.as_str()))
            || EXTENSIONS.iter().any(|e| path.ends_with(e))
            || path.ends_with('/')
        {
            found.push(Reference {
                text: token,
                from: Base::Anywhere,
            });
        }
    }
    // 3. Words starting with ./ or ../
    for word in text.split(|c: char| c.is_whitespace() || "`\"'(".contains(c)) {
        let word = word.trim_end_matches(|c: char| ".,;:)]`'\"".contains(c));
        if (word.starts_with("./") || word.starts_with("../"))
            && !found.iter().any(|r| r.text == word)
            && !word.contains("://")
            && !word.contains(|c| "<>{}$|=".contains(c))
        {
            found.push(Reference {
                text: word,
                from: if word.starts_with("./") {
                    Base::FileOrRoot
                } else {
                    Base::FileOnly
                },
            });
        }
    }
    found
}

fn crate_dir(file: &str) -> Option<String> {
    let mut parts = file.split('/');
    match (parts.next(), parts.next()) {
        (Some("crates"), Some(name)) => Some(format!("crates/{name}")),
        _ => None,
    }
}

fn contains_word(haystack: &str, word: &str) -> bool {
    let lower = haystack.to_lowercase();
    lower.match_indices(word).any(|(at, _)| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

fn findings(repo: &Repo) -> Vec<String> {
    let this_file = "crates/smm-server/tests/it/tidy.rs";
    let mut out = Vec::new();
    for file in &repo.files {
        let kind = kind(file);
        if kind == Kind::Other || file == this_file {
            continue;
        }
        let Ok(content) = std::fs::read_to_string(repo.root.join(file)) else {
            continue; // not text, or gone from the work tree
        };
        let dir = file.rsplit_once('/').map_or("", |(d, _)| d);
        let crate_dir = crate_dir(file);
        for (index, line) in content.lines().enumerate() {
            let Some(text) = prose(kind, line) else {
                continue;
            };
            let at = format!("{file}:{}", index + 1);
            for word in PROGRESS_WORDS {
                if contains_word(text, word) {
                    out.push(format!("{at}: progress note {word:?}"));
                }
            }
            for reference in references(kind, text, &repo.top_dirs) {
                let path = strip_suffixes(reference.text);
                if path.is_empty() {
                    continue;
                }
                let from_file = if path.starts_with('/') {
                    resolve("", path)
                } else {
                    resolve(dir, path)
                };
                let Some(from_file) = from_file else {
                    out.push(format!(
                        "{at}: {} climbs outside the repository",
                        reference.text
                    ));
                    continue;
                };
                let mut candidates = vec![from_file];
                if reference.from != Base::FileOnly {
                    candidates.extend(resolve("", path));
                }
                if reference.from == Base::Anywhere {
                    if let Some(krate) = &crate_dir {
                        candidates.extend(resolve(krate, path));
                    }
                }
                if !candidates.iter().any(|c| repo.exists(c) || repo.ignored(c)) {
                    out.push(format!(
                        "{at}: {} names nothing in the repository",
                        reference.text
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn docs_and_comments_point_at_what_exists_and_carry_no_progress_notes() {
    let repo = Repo::load();
    let found = findings(&repo);
    assert!(
        found.is_empty(),
        "{} tidy finding(s):\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_rules_catch_what_they_should_and_nothing_else() {
    let top = vec!["crates/".to_owned(), "docs/".to_owned()];
    let paths = |kind, text| -> Vec<String> {
        references(kind, text, &top)
            .iter()
            .map(|r| r.text.to_owned())
            .collect()
    };
    assert_eq!(
        paths(
            Kind::Markdown,
            "see [a](../x/y.md#top), [b](https://e.com), [c](#here)"
        ),
        ["../x/y.md#top"]
    );
    assert_eq!(
        paths(
            Kind::Rust,
            "/// [`Rejected`](ProviderError::Rejected), [d](docs/a.md)"
        ),
        ["docs/a.md"]
    );
    assert_eq!(
        paths(
            Kind::Rust,
            "// `crates/x/src/lib.rs:10`, `src/v2.rs`, `/metrics`, `a/b`, `smm_wire::x/y`"
        ),
        ["crates/x/src/lib.rs:10", "src/v2.rs"]
    );
    assert_eq!(
        paths(
            Kind::Markdown,
            "in `shared/seeds/` and `tests/`, not `postgres://` or `/api/v2/`"
        ),
        ["shared/seeds/", "tests/"]
    );
    assert_eq!(
        paths(
            Kind::Sql,
            "-- Keep in step with ../sqlite/0001_initial.sql."
        ),
        ["../sqlite/0001_initial.sql"]
    );
    assert_eq!(strip_suffixes("fixtures/*.json"), "fixtures/");
    assert_eq!(
        resolve("docs", "../shared/x.md"),
        Some("shared/x.md".into())
    );
    assert_eq!(resolve("docs", "../../x.md"), None);
    assert!(contains_word("It is Still To Come.", "still to come"));
    assert!(!contains_word("clippy::todo_like", "todo"));
    assert!(!contains_word("the xxxl size", "xxx"));
    assert_eq!(comment(r#"let u = "a // b";"#, "//"), None);
    assert_eq!(comment("x = 1 # note", "#"), Some(" # note"));
}
