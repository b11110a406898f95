//! In a daemon, engine work runs at a lower CPU priority than the threads
//! that answer RPCs, so health checks and cheap calls stay fast while every
//! core computes. On Linux the nice value belongs to a thread and new
//! threads inherit it, so lowering the thread that creates ONNX Runtime's
//! pool lowers the pool too (`launch::load_for_serving`), and the server
//! lowers the threads it runs engine work on. Elsewhere this does nothing.

/// The nice value of engine threads (the RPC threads keep the process's).
pub const ENGINE_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`ENGINE_NICE`] (never
/// raises it), once per thread.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        use std::cell::Cell;
        thread_local!(static LOWERED: Cell<bool> = const { Cell::new(false) });
        if LOWERED.with(|l| l.replace(true)) {
            return;
        }
        // SAFETY: plain system calls on the calling thread's own id; no
        // memory is shared with them.
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            *libc::__errno_location() = 0;
            let current = libc::getpriority(libc::PRIO_PROCESS, tid);
            if *libc::__errno_location() == 0 && current < ENGINE_NICE {
                // A refusal leaves the priority as it was, which is safe.
                let _ = libc::setpriority(libc::PRIO_PROCESS, tid, ENGINE_NICE);
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn lowers_only_the_calling_thread() {
        let nice =
            || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let before = nice();
        let (inside, child) = std::thread::spawn(move || {
            lower_this_thread();
            let inside = nice();
            let child = std::thread::spawn(nice).join().unwrap();
            (inside, child)
        })
        .join()
        .unwrap();
        assert_eq!(inside, ENGINE_NICE.max(before));
        assert_eq!(
            child, inside,
            "threads started by a lowered thread inherit it"
        );
        assert_eq!(nice(), before, "the calling thread is untouched");
    }
}
