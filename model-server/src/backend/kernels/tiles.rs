//! What the packed products ([`super::linear`] f32, [`super::int8`] int8) share: the output
//! pointer their threads write through, the split of a product's column panels over a
//! [`Team`], the walk over row tiles (full tiles, then one remainder tile of the right height),
//! and the activation applied to a thread's finished columns.

use super::team::Team;
use crate::backend::activation::Activation;
use std::ops::Range;

/// Below this many multiply-adds a product runs on one thread: handing half to the helper costs
/// more than it saves.
pub const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Rows per full tile, in both kernels.
pub const MR: usize = 8;

/// A pointer the panel ranges of one product share across threads; each writes its own columns.
#[derive(Clone, Copy)]
pub struct Out(pub *mut f32);
// SAFETY: threads given one `Out` write disjoint column ranges of the same rows (the contracts of
// `split_panels` and `activate_columns`), so sending the pointer to another thread races nothing.
unsafe impl Send for Out {}
// SAFETY: as for `Send`: shared `Out`s are only written through at disjoint columns.
unsafe impl Sync for Out {}

/// Runs `panel_range` over panels `0..count`: with a team and `macs` multiply-adds worth the
/// hand-off, half the panels on the team's helper.
///
/// # Safety
/// `panel_range` must be safe to call for any sub-range of `0..count`, from either thread, with
/// the two calls running at once (they write disjoint columns).
pub unsafe fn split_panels(
    count: usize,
    macs: usize,
    team: Option<&Team>,
    panel_range: impl Fn(Range<usize>) + Sync,
) {
    match team {
        Some(team) if count >= 2 && macs >= PARALLEL_MIN_MACS => {
            let half = count / 2;
            let panel_range = &panel_range;
            team.split(
                || panel_range(0..half),
                Box::new(move || panel_range(half..count)),
            );
        }
        _ => panel_range(0..count),
    }
}

/// `activation` over `columns` of each of `rows` rows, `n` floats apart, at `out`.
///
/// # Safety
/// `out` holds `rows * n` floats, these columns are finished and no other thread touches them.
pub unsafe fn activate_columns(
    out: Out,
    rows: usize,
    n: usize,
    columns: Range<usize>,
    activation: Activation,
) {
    for row in 0..rows {
        // SAFETY: the caller gives this thread these columns of every row, inside `out`.
        let values = unsafe {
            std::slice::from_raw_parts_mut(out.0.add(row * n + columns.start), columns.len())
        };
        activation.apply(values);
    }
}

/// Calls `$kernel::<ROWS>(&$tile_at(row))` over `$rows` rows: full tiles of [`MR`], then one
/// tile of the rows left (1..MR, each its own monomorphized kernel).
macro_rules! each_row_tile {
    ($rows:expr, $tile_at:expr, $kernel:ident) => {{
        const MR: usize = $crate::backend::kernels::tiles::MR;
        let rows: usize = $rows;
        let mut row = 0;
        while row + MR <= rows {
            $kernel::<MR>(&$tile_at(row));
            row += MR;
        }
        let last = $tile_at(row);
        match rows - row {
            0 => {}
            1 => $kernel::<1>(&last),
            2 => $kernel::<2>(&last),
            3 => $kernel::<3>(&last),
            4 => $kernel::<4>(&last),
            5 => $kernel::<5>(&last),
            6 => $kernel::<6>(&last),
            _ => $kernel::<7>(&last),
        }
    }};
}
pub(crate) use each_row_tile;
