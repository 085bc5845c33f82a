//! Types that cannot be part of migratable state, found by looking at field types as written.
//!
//! The trait bounds would refuse most of them too, but with an error about a missing `Shape`
//! impl; this check names the problem and what to do instead, at the type that causes it.

use syn::visit::{self, Visit};
use syn::{Lifetime, Type, TypePath};

use crate::ctxt::Ctxt;

/// Records an error for every part of `ty` that cannot move, and adds the lifetimes named
/// inside those parts to `reported` (their parameters need no error of their own).
pub(crate) fn check_type(cx: &mut Ctxt, ty: &Type, reported: &mut Vec<Lifetime>) {
    let mut finder = Finder { cx, reported };
    finder.visit_type(ty);
}

struct Finder<'c> {
    cx: &'c mut Ctxt,
    reported: &'c mut Vec<Lifetime>,
}

/// Collects the lifetimes a type names.
struct Lifetimes<'r>(&'r mut Vec<Lifetime>);

impl<'ast> Visit<'ast> for Lifetimes<'_> {
    fn visit_lifetime(&mut self, lifetime: &'ast Lifetime) {
        self.0.push(lifetime.clone());
    }
}

impl<'ast> Visit<'ast> for Finder<'_> {
    fn visit_type(&mut self, ty: &'ast Type) {
        let reason = match ty {
            Type::Ptr(_) => Some(
                "raw pointers cannot be migrated: an address means nothing in another process; store the data itself, or an index into a collection of it",
            ),
            Type::Reference(_) => Some(
                "references cannot be migrated: the data they borrow stays behind; store an owned value (e.g. `String` for `&str`, `Vec<T>` for `&[T]`)",
            ),
            Type::BareFn(_) => Some(
                "function pointers cannot be migrated: code addresses differ between builds and hosts; store an enum that names the function and match on it",
            ),
            Type::TraitObject(_) | Type::ImplTrait(_) => Some(
                "trait objects cannot be migrated: the receiving host cannot know the concrete type; use an enum of the possible types",
            ),
            _ => None,
        };
        if let Some(reason) = reason {
            self.cx.error_spanned_by(ty, reason);
            Lifetimes(self.reported).visit_type(ty);
            return;
        }
        visit::visit_type(self, ty);
    }

    fn visit_type_path(&mut self, path: &'ast TypePath) {
        if let Some(reason) = path_reason(path) {
            self.cx.error_spanned_by(path, reason);
            Lifetimes(self.reported).visit_type_path(path);
            return;
        }
        visit::visit_type_path(self, path);
    }
}

/// Why the type at `path` cannot move, judged by its last segment. A path from `crate`,
/// `self` or `super` is the user's own type, whatever its name; a bare name that a user type
/// may well share with a std one gets a hint saying so.
fn path_reason(path: &TypePath) -> Option<String> {
    if path.qself.is_some() {
        return None;
    }
    let first = path.path.segments.first()?;
    if path.path.leading_colon.is_none()
        && path.path.segments.len() > 1
        && ["crate", "self", "super"]
            .iter()
            .any(|root| first.ident == root)
    {
        return None;
    }
    let ident = path.path.segments.last()?.ident.to_string();
    let reason = ident_reason(&ident)?;
    let common_name = ["Cell", "Child", "File", "Thread", "Sender", "Receiver"]
        .iter()
        .any(|name| ident == *name);
    if common_name && path.path.leading_colon.is_none() && path.path.segments.len() == 1 {
        Some(format!(
            "{reason} (if `{ident}` is a type of your own, write its path: `crate::...::{ident}`)"
        ))
    } else {
        Some(reason)
    }
}

fn ident_reason(ident: &str) -> Option<String> {
    let reason = match ident {
        "Weak" => "`Weak` cannot be migrated: it points into an `Rc` or `Arc`, and shared ownership does not survive a move; store a key or an index of the value instead".to_owned(),
        "Rc" | "Arc" => format!(
            "`{ident}` cannot be migrated: shared ownership does not survive a move (each owner would get its own copy); own the value in one place, or mark the field `#[migratable(skip)]` to rebuild it from `Default`"
        ),
        "Cell" | "RefCell" | "UnsafeCell" | "OnceCell" => format!(
            "`{ident}` cannot be migrated: interior mutability is for state shared through references, and the sharing does not survive a move; store the plain value and change it through `&mut self`"
        ),
        "Mutex" | "RwLock" => format!(
            "`{ident}` cannot be migrated: a lock belongs to the threads of this process, and one of them may hold it while the state is captured; store the plain value and keep the lock outside the task's state"
        ),
        "File" | "TcpStream" | "TcpListener" | "UdpSocket" | "UnixStream" | "UnixListener"
        | "UnixDatagram" | "OwnedFd" | "BorrowedFd" | "Child" | "ChildStdin" | "ChildStdout"
        | "ChildStderr" | "Stdin" | "Stdout" | "Stderr" => format!(
            "`{ident}` cannot be migrated: it is an operating-system handle that belongs to this process and host; store what is needed to reopen it (a path, an address) and reopen it after a restore, or mark the field `#[migratable(skip)]`"
        ),
        "JoinHandle" | "Thread" | "Sender" | "SyncSender" | "Receiver" | "UnboundedSender"
        | "UnboundedReceiver" => format!(
            "`{ident}` cannot be migrated: it refers to a thread, task or channel of this process; keep it outside the state, or mark the field `#[migratable(skip)]`"
        ),
        "Instant" => "`Instant` cannot be migrated: a monotonic clock reading means nothing on another host; store a `Duration` or a `SystemTime`".to_owned(),
        _ => return None,
    };
    Some(reason)
}
