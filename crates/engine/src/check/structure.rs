//! The structure check: every tree reachable from a snapshot loads and decodes, and every
//! data blob and subtree it names is in the index. Trees are checked once each, in
//! parallel; only ids wait in the queue, so memory stays proportional to the number of
//! trees, never to their contents.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use restash_format::{go_quote, BlobId, BlobType, NodeType, Tree};

use super::worker_pool;
use crate::events::{Control, Event, Phase};
use crate::Repository;

/// A tree and what is wrong with it, printed as restic's `TreeError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeError {
    /// The tree.
    pub id: BlobId,
    /// restic's messages, one per problem.
    pub errors: Vec<String>,
}

impl TreeError {
    /// `error for tree <short>:` and one indented line per problem, as restic prints it.
    pub fn render(&self) -> String {
        let mut s = format!("error for tree {}:", self.id.short());
        for e in &self.errors {
            s.push_str("\n  ");
            s.push_str(e);
        }
        s
    }
}

fn quote(name: &[u8]) -> String {
    format!("\"{}\"", go_quote(name))
}

/// restic's `checkTree`: the per-node rules, with its messages.
pub(crate) fn check_tree(
    repo: &Repository,
    id: &BlobId,
    tree: &Tree,
    data_refs: Option<&Mutex<HashSet<BlobId>>>,
) -> Vec<String> {
    let mut errs = Vec::new();
    let err = |errs: &mut Vec<String>, msg: String| errs.push(format!("tree {id}: {msg}"));
    for node in &tree.nodes {
        let name = quote(&node.name);
        match &node.node_type {
            NodeType::File => {
                let content = node.content.as_deref();
                if content.is_none() {
                    err(&mut errs, format!("file {name} has nil blob list"));
                }
                for (i, b) in content.unwrap_or_default().iter().enumerate() {
                    if b.0 .0 == [0u8; 32] {
                        err(&mut errs, format!("file {name} blob {i} has null ID"));
                        continue;
                    }
                    if !repo.index().has(b, BlobType::Data) {
                        err(
                            &mut errs,
                            format!("file {name} blob {b} not found in index"),
                        );
                    }
                }
                if let (Some(refs), Some(c)) = (data_refs, content) {
                    let mut refs = refs.lock().expect("blob references");
                    refs.extend(c.iter().filter(|b| b.0 .0 != [0u8; 32]).copied());
                }
            }
            NodeType::Dir => match &node.subtree {
                None => err(&mut errs, format!("dir node {name} has no subtree")),
                Some(s) if s.0 .0 == [0u8; 32] => {
                    err(&mut errs, format!("dir node {name} subtree id is null"))
                }
                Some(_) => {}
            },
            NodeType::Symlink
            | NodeType::Socket
            | NodeType::CharDev
            | NodeType::Dev
            | NodeType::Fifo => {}
            other => err(
                &mut errs,
                format!(
                    "node {name} with invalid type {}",
                    quote(other.as_str().as_bytes())
                ),
            ),
        }
        if node.name.is_empty() {
            err(&mut errs, "node with empty name".into());
        }
    }
    errs
}

/// Loads a tree for the check; a tree the index does not know gets restic's message.
pub(crate) fn load_tree(repo: &Repository, id: &BlobId) -> Result<Tree, String> {
    if !repo.index().has(id, BlobType::Tree) {
        return Err(format!("id {id} not found in repository"));
    }
    repo.load_tree(id).map_err(|e| e.to_string())
}

struct Walk<'a> {
    repo: &'a Repository,
    rep: &'a Control,
    seen: Mutex<HashSet<BlobId>>,
    data_refs: Option<&'a Mutex<HashSet<BlobId>>>,
    // Outstanding trees per snapshot: a snapshot is done when its count reaches zero.
    outstanding: Vec<AtomicUsize>,
    done: AtomicU64,
    total: u64,
    errors: AtomicU64,
}

impl Walk<'_> {
    fn root_done(&self, root: usize) {
        if self.outstanding[root].fetch_sub(1, Ordering::AcqRel) == 1 {
            let d = self.done.fetch_add(1, Ordering::Relaxed) + 1;
            self.rep.progress(Phase::Check, "snapshots", d, self.total);
        }
    }

    fn visit<'s>(&'s self, scope: &rayon::Scope<'s>, id: BlobId, root: usize) {
        let errors = match load_tree(self.repo, &id) {
            Err(e) => vec![e],
            Ok(tree) => {
                let errs = check_tree(self.repo, &id, &tree, self.data_refs);
                for node in &tree.nodes {
                    let Some(sub) = node.subtree else { continue };
                    if sub.0 .0 == [0u8; 32] || !self.seen.lock().expect("seen").insert(sub) {
                        continue;
                    }
                    self.outstanding[root].fetch_add(1, Ordering::AcqRel);
                    scope.spawn(move |s| self.visit(s, sub, root));
                }
                errs
            }
        };
        if !errors.is_empty() {
            self.errors.fetch_add(1, Ordering::Relaxed);
            self.rep.error(&TreeError { id, errors }.render());
        }
        self.root_done(root);
    }
}

/// Checks every tree reachable from `roots`; returns whether any error was reported.
/// With `data_refs`, every data blob a file names is recorded there (for unused blobs).
pub(crate) fn check_trees(
    repo: &Repository,
    roots: &[BlobId],
    data_refs: Option<&Mutex<HashSet<BlobId>>>,
    rep: &Control,
) -> (bool, HashSet<BlobId>) {
    let walk = Walk {
        repo,
        rep,
        seen: Mutex::new(HashSet::new()),
        data_refs,
        outstanding: roots.iter().map(|_| AtomicUsize::new(1)).collect(),
        done: AtomicU64::new(0),
        total: roots.len() as u64,
        errors: AtomicU64::new(0),
    };
    rep.progress(Phase::Check, "snapshots", 0, walk.total);
    let run = || {
        rayon::scope(|s| {
            for (i, root) in roots.iter().enumerate() {
                if walk.seen.lock().expect("seen").insert(*root) {
                    let w = &walk;
                    let root = *root;
                    s.spawn(move |s| w.visit(s, root, i));
                } else {
                    walk.root_done(i);
                }
            }
        })
    };
    // Loading trees waits on the backend as much as on the CPU: more threads than cores.
    match worker_pool() {
        Some(pool) => pool.install(run),
        None => run(),
    }
    rep.emit(Event::PhaseFinished(Phase::Check));
    let errors = walk.errors.load(Ordering::Relaxed) > 0;
    (errors, walk.seen.into_inner().expect("seen"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use restash_backend::LocalBackend;
    use restash_format::Node;

    use super::*;

    #[test]
    fn node_rules_give_restics_messages() {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::test_util::repo_on(Arc::new(LocalBackend::new(dir.path())));
        let known = BlobId::hash(b"not stored");
        let node = |name: &str, t: NodeType| Node {
            name: name.as_bytes().to_vec(),
            node_type: t,
            ..Node::default()
        };
        let tree = Tree {
            nodes: vec![
                node("nil", NodeType::File),
                Node {
                    content: Some(vec![BlobId::default(), known]),
                    ..node("two", NodeType::File)
                },
                node("d", NodeType::Dir),
                Node {
                    subtree: Some(BlobId::default()),
                    ..node("z", NodeType::Dir)
                },
                node("", NodeType::Fifo),
                node("w\"x", NodeType::Other("weird".into())),
            ],
        };
        let id = BlobId::hash(&tree.to_bytes());
        let refs = Mutex::new(HashSet::new());
        let errs = check_tree(&repo, &id, &tree, Some(&refs));
        let want = [
            "file \"nil\" has nil blob list".to_string(),
            "file \"two\" blob 0 has null ID".to_string(),
            format!("file \"two\" blob {known} not found in index"),
            "dir node \"d\" has no subtree".to_string(),
            "dir node \"z\" subtree id is null".to_string(),
            "node with empty name".to_string(),
            "node \"w\\\"x\" with invalid type \"weird\"".to_string(),
        ];
        let want: Vec<String> = want.iter().map(|m| format!("tree {id}: {m}")).collect();
        assert_eq!(errs, want);
        assert_eq!(refs.into_inner().unwrap(), HashSet::from([known]));
    }
}
