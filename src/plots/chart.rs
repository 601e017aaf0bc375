//! The colours the plots share, under the names callers have used (`chart::REAL`,
//! `chart::GEN`); see [`super::style`].

pub use super::style::{Rgb, BLACK, GEN, GREY, PALETTE, REAL};
