//! Every `unsafe` line of model-server, behind safe functions: the rest of the crate denies
//! `unsafe_code` (`#![deny(unsafe_code)]` at the crate root, allowed only on this module's
//! declaration), so a reviewer audits this tree and nothing else.
//!
//! What it owns:
//! - `simd`: the run-time choice of vector width (AVX-512, AVX2 + FMA, baseline) for the
//!   elementwise loops, behind the safe `wide_fn!` macro the rest of the backend writes them with;
//! - `linear`: the f32 packed-panel micro-kernel (AVX-512 intrinsics on raw tile pointers);
//! - `int8` and `amx`: the int8 products on AVX512-VNNI and on AMX tiles (inline assembly, and
//!   the system call that lets this process use AMX);
//! - `attention`: the fused attention, whose two threads write disjoint heads of one buffer;
//! - `tiles`: what the packed products share (the output pointer two threads write through, the
//!   split of column panels over a [`team::Team`]);
//! - [`team`]: the helper thread a pass hands half its work to (one lifetime erasure);
//! - [`pages`]: buffers on 2 MiB pages (an aligned allocation and `madvise`);
//! - [`process`]: setting environment variables, which is sound only while the process has one
//!   thread.
//!
//! Rules here: every `unsafe` block has a `// SAFETY:` comment directly above it saying why it is
//! sound (clippy's `undocumented_unsafe_blocks`, denied below, fails the build without one), an
//! `unsafe fn` states its contract under `# Safety` and still wraps each unsafe operation in its
//! own block (`unsafe_op_in_unsafe_fn`), and what leaves this tree is safe to call: CPU features
//! are checked at run time, lengths are asserted before raw pointers are formed.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub(crate) mod amx;
pub(crate) mod attention;
pub(crate) mod int8;
pub(crate) mod linear;
pub mod pages;
pub mod process;
pub(crate) mod simd;
pub mod team;
pub(crate) mod tiles;
