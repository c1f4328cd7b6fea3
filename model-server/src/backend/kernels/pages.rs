//! Buffers for the packed weights, on 2 MiB pages where Linux gives them.
//!
//! Why: a pass streams every weight of every layer once (42 MB in f32 for all-MiniLM-L6-v2), and
//! at small batches it does little else. On 4 KiB pages that is about 10,000 TLB misses a pass,
//! each a page walk, and under a VM's nested paging a walk can take two dozen memory reads; after
//! the core has run something else (an HTTP request between two passes) the walks' own caches are
//! cold too. On 2 MiB pages the same weights are about 21 TLB entries.
//!
//! Transparent huge pages are often `madvise`-only (Debian's and Ubuntu's default), so anonymous
//! memory stays on 4 KiB pages unless a program asks. [`PageBuf`] asks: it starts a buffer on a
//! 2 MiB boundary and calls `madvise(MADV_HUGEPAGE)` on the whole huge pages it fills (a tail of
//! three quarters of a page or more is padded to a whole one) before the first write, so the first
//! touch faults in huge pages; the rest of a tail stays on small pages. Where the kernel says no
//! (THP `never`, another OS) the buffer works the same on small pages. A buffer under three
//! quarters of a huge page is a plain allocation. `--huge-pages off` (`MODEL_SERVER_HUGE_PAGES`)
//! turns the request off, to measure the difference with one binary.
//!
//! What it owns: one aligned allocation per buffer, its slice views, its release and the
//! `madvise` call.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// A transparent huge page on x86-64 and most arm64 kernels.
pub const HUGE_PAGE: usize = 2 << 20;
const SMALL_PAGE: usize = 4096;

/// How many huge pages a buffer of `bytes` asks for: every whole one it fills, and one for a tail
/// of at least three quarters of a page (so at most a quarter of a page is ever wasted). None
/// when `huge_pages` is off.
fn huge_page_count(bytes: usize, huge_pages: bool) -> usize {
    if !huge_pages {
        return 0;
    }
    bytes / HUGE_PAGE + usize::from(bytes % HUGE_PAGE >= HUGE_PAGE / 4 * 3)
}

/// A fixed-length buffer of `T`, on huge pages when it is at least [`HUGE_PAGE`] long.
pub struct PageBuf<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    /// `None` for an empty buffer (nothing allocated).
    layout: Option<Layout>,
}

// SAFETY: a PageBuf owns its elements like a Vec does; sharing or sending it shares or sends them.
unsafe impl<T: Copy + Send> Send for PageBuf<T> {}
// SAFETY: as above; `&PageBuf` only hands out `&[T]`.
unsafe impl<T: Copy + Sync> Sync for PageBuf<T> {}

impl<T: Copy> PageBuf<T> {
    /// `len` copies of `value`; on huge pages when `huge_pages` and the buffer is long enough.
    ///
    /// # Panics
    /// When `len` elements of `T` overflow `isize` (as `vec!` does); aborts when memory runs out.
    pub fn filled(len: usize, value: T, huge_pages: bool) -> Self {
        let bytes = len
            .checked_mul(size_of::<T>())
            .expect("PageBuf: length overflows");
        if bytes == 0 {
            return Self {
                ptr: NonNull::dangling(),
                len,
                layout: None,
            };
        }
        let huge = huge_page_count(bytes, huge_pages);
        let layout = if huge > 0 {
            let size = bytes.max(huge * HUGE_PAGE).next_multiple_of(SMALL_PAGE);
            Layout::from_size_align(size, HUGE_PAGE.max(align_of::<T>()))
        } else {
            Layout::from_size_align(bytes, align_of::<T>())
        }
        .expect("PageBuf: length overflows");
        // SAFETY: the layout's size is non-zero.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<T>()) else {
            handle_alloc_error(layout)
        };
        if huge > 0 {
            advise_huge(raw, huge * HUGE_PAGE);
        }
        for i in 0..len {
            // SAFETY: `i < len`, and the allocation holds `len` elements of T.
            unsafe { ptr.as_ptr().add(i).write(value) };
        }
        Self {
            ptr,
            len,
            layout: Some(layout),
        }
    }

    /// Whether part of the buffer was asked onto huge pages (whether the kernel granted them is
    /// [`anon_huge_page_bytes`]'s to say).
    pub fn is_huge(&self) -> bool {
        self.layout.is_some_and(|l| l.align() == HUGE_PAGE)
    }
}

impl<T: Copy> Deref for PageBuf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialized elements (or is dangling with `len == 0`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for PageBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` is the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for PageBuf<T> {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `filled` with this layout; T is Copy, so nothing to drop.
            unsafe { dealloc(self.ptr.as_ptr().cast(), layout) };
        }
    }
}

/// Asks the kernel to back `len` bytes at `ptr` (2 MiB aligned) with huge pages. Best effort.
fn advise_huge(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: `ptr..ptr + len` is one live allocation of ours; MADV_HUGEPAGE changes only how the
    // kernel backs it, never its contents.
    unsafe {
        libc::madvise(ptr.cast(), len, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// Bytes of this process's anonymous memory on transparent huge pages (`AnonHugePages` in
/// `/proc/self/smaps_rollup`); `None` where the file cannot be read (not Linux).
pub fn anon_huge_page_bytes() -> Option<u64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("AnonHugePages:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_its_values_at_every_size() {
        for len in [
            0,
            1,
            1000,
            HUGE_PAGE / 16 * 3 - 1,
            HUGE_PAGE / 16 * 3,
            HUGE_PAGE / 4 * 3 + 5,
        ] {
            let mut buf = PageBuf::filled(len, 7u32, true);
            assert_eq!(buf.len(), len);
            assert!(buf.iter().all(|&v| v == 7));
            buf.iter_mut().enumerate().for_each(|(i, v)| *v = i as u32);
            assert!(buf.iter().enumerate().all(|(i, &v)| v == i as u32));
            assert_eq!(buf.is_huge(), len * 4 >= HUGE_PAGE / 4 * 3, "len {len}");
            if buf.is_huge() {
                assert_eq!(buf.as_ptr() as usize % HUGE_PAGE, 0);
            }
        }
    }

    #[test]
    fn keeps_the_alignment_of_its_elements() {
        #[derive(Clone, Copy)]
        #[repr(C, align(64))]
        struct Line([u8; 64]);
        let small = PageBuf::filled(3, Line([1; 64]), true);
        assert_eq!(small.as_ptr() as usize % 64, 0);
        assert!(small.iter().all(|l| l.0 == [1; 64]));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_huge_page_count_is_readable_on_linux() {
        assert!(anon_huge_page_bytes().is_some());
    }
}
