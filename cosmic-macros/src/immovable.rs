//! Types that cannot be part of migratable state, found by looking at field types as written.
//!
//! The trait bounds would refuse most of them too, but with an error about a missing `Shape`
//! impl; this check names the problem and what to do instead, at the type that causes it.

use syn::visit::{self, Visit};
use syn::{Type, TypePath};

use crate::ctxt::Ctxt;

/// Records an error for every part of `ty` that cannot move.
pub(crate) fn check_type(cx: &mut Ctxt, ty: &Type) {
    let mut finder = Finder { cx };
    finder.visit_type(ty);
}

struct Finder<'c> {
    cx: &'c mut Ctxt,
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
            return;
        }
        visit::visit_type(self, ty);
    }

    fn visit_type_path(&mut self, path: &'ast TypePath) {
        if let Some(last) = path.path.segments.last() {
            if let Some(reason) = path_reason(&last.ident.to_string()) {
                self.cx.error_spanned_by(path, reason);
                return;
            }
        }
        visit::visit_type_path(self, path);
    }
}

fn path_reason(ident: &str) -> Option<String> {
    let reason = match ident {
        "Rc" | "Arc" | "Weak" => format!(
            "`{ident}` cannot be migrated: shared ownership does not survive a move (each owner would get its own copy); own the value in one place, or mark the field `#[migratable(skip)]` to rebuild it from `Default`"
        ),
        "Cell" | "RefCell" | "UnsafeCell" | "OnceCell" | "Mutex" | "RwLock" => format!(
            "`{ident}` cannot be migrated: interior mutability lets state change outside the task's steps, so a capture at a safe point may not be consistent; store the plain value"
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
