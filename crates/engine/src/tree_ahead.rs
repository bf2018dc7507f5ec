//! Trees loaded ahead of a walk: while a command walks a snapshot depth-first on one
//! thread, loaders fetch the trees below it breadth-first on [`IO_THREADS`] threads, so a
//! distant store is asked for a whole level at once instead of one tree per round trip.
//!
//! The walk still loads every tree through [`Repository::load_tree`]; a tree found here
//! is taken instead of fetched, one still being fetched is waited for, and anything else
//! (a tree whose prefetch failed, one beyond the memory budget, a second copy of a shared
//! subtree) is fetched by the walk itself, which then reports any error as its own.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use restash_format::{BlobId, NodeType, Tree};

use crate::ahead::IO_THREADS;
use crate::Repository;

/// Nodes held in loaded trees the walk has not taken yet: beyond this the loaders wait,
/// so a walk that lags (restore writing files) does not hold a whole snapshot's trees in
/// memory. About 250 MiB of decoded nodes at the worst.
const NODE_BUDGET: usize = 500_000;

#[derive(Default)]
struct State {
    queue: VecDeque<BlobId>,
    seen: HashSet<BlobId>,
    loading: HashSet<BlobId>,
    // Queued trees the walk reached first and loads itself: the loaders skip them.
    claimed: HashSet<BlobId>,
    loaded: HashMap<BlobId, Tree>,
    held_nodes: usize,
    active: bool,
    stop: bool,
}

/// The loaders' shared state; empty and idle outside [`Repository::prefetching_trees`].
#[derive(Default)]
pub(crate) struct TreeAhead {
    state: Mutex<State>,
    changed: Condvar,
}

impl TreeAhead {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent; a panicking walk is
        // re-raised by the scope anyway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(g).unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts loading from `roots`; false if loaders are already at work (a walk inside a
    /// walk), which then just go on.
    fn begin(&self, roots: &[BlobId]) -> bool {
        let mut s = self.lock();
        if s.active {
            return false;
        }
        *s = State {
            active: true,
            ..State::default()
        };
        for r in roots {
            if s.seen.insert(*r) {
                s.queue.push_back(*r);
            }
        }
        true
    }

    fn finish(&self) {
        let mut s = self.lock();
        // Not active any more; `stop` ends loaders still running.
        *s = State {
            stop: true,
            ..State::default()
        };
        self.changed.notify_all();
    }

    /// The tree `id` if it was loaded ahead (waiting while it is being loaded). A tree
    /// still queued is left to the walk, which needs it now; see [`Self::walked`].
    pub(crate) fn take(&self, id: &BlobId) -> Option<Tree> {
        let mut s = self.lock();
        loop {
            if let Some(t) = s.loaded.remove(id) {
                s.held_nodes -= t.nodes.len();
                self.changed.notify_all();
                return Some(t);
            }
            if !s.loading.contains(id) {
                if s.active && s.seen.contains(id) {
                    s.claimed.insert(*id);
                }
                return None;
            }
            s = self.wait(s);
        }
    }

    /// The walk loaded `tree` itself: its subtrees are what it wants next, so they go to
    /// the front of the queue.
    pub(crate) fn walked(&self, tree: &Tree) {
        let mut s = self.lock();
        if !s.active {
            return;
        }
        for sub in subtrees(tree).rev() {
            if s.seen.insert(sub) {
                s.queue.push_front(sub);
            }
        }
        self.changed.notify_all();
    }

    /// One loader: takes the next tree of the breadth-first queue, loads it, queues its
    /// subtrees; ends when the walk is over.
    fn run(&self, repo: &Repository) {
        let mut s = self.lock();
        loop {
            if s.stop {
                return;
            }
            let id = match s.queue.pop_front() {
                Some(id) if s.held_nodes < NODE_BUDGET => id,
                Some(id) => {
                    s.queue.push_front(id);
                    s = self.wait(s);
                    continue;
                }
                // The walk may still queue subtrees of trees it loads itself.
                None => {
                    s = self.wait(s);
                    continue;
                }
            };
            if s.claimed.remove(&id) {
                continue;
            }
            s.loading.insert(id);
            drop(s);
            let tree = repo.load_tree_now(&id).ok();
            s = self.lock();
            s.loading.remove(&id);
            if let (Some(tree), false) = (tree, s.stop) {
                for sub in subtrees(&tree) {
                    if s.seen.insert(sub) {
                        s.queue.push_back(sub);
                    }
                }
                s.held_nodes += tree.nodes.len();
                s.loaded.insert(id, tree);
            }
            self.changed.notify_all();
        }
    }
}

fn subtrees(tree: &Tree) -> impl DoubleEndedIterator<Item = BlobId> + '_ {
    tree.nodes.iter().filter_map(|n| match n.node_type {
        NodeType::Dir => n.subtree,
        _ => None,
    })
}

impl Repository {
    /// Runs `walk` while the trees below `roots` are loaded ahead of it (see the module
    /// notes). Whatever `walk` does not take is dropped when it returns.
    pub fn prefetching_trees<T>(&self, roots: &[BlobId], walk: impl FnOnce() -> T) -> T {
        let ahead = &self.tree_ahead;
        if roots.is_empty() || !ahead.begin(roots) {
            return walk();
        }
        // Stops the loaders however `walk` ends, a panic included: the scope waits for them.
        struct Finish<'a>(&'a TreeAhead);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                self.0.finish();
            }
        }
        std::thread::scope(|s| {
            let _finish = Finish(ahead);
            for _ in 0..IO_THREADS {
                s.spawn(|| ahead.run(self));
            }
            walk()
        })
    }
}

#[cfg(test)]
mod tests;
