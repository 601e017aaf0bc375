//! Which instruction set the CPU kernels run on, chosen once per process at run time.
//!
//! The crate is compiled for baseline x86-64 (SSE2), so `libjetgen.a`, `libjetgen.so` and
//! the `jetgen` binary run on any x86-64 CPU. The hot kernels are compiled a second time
//! for AVX2 + FMA (see [`crate::simd::dispatch`]) and take that path when the CPU has both
//! features. `JETGEN_SIMD` overrides the choice: `portable` forces the baseline path (to
//! test it, or to compare), `avx2` asks for the fast one (granted only where the CPU has
//! it) and also keeps the f32 GEMM on its 8-lane kernel where the CPU has AVX-512
//! (`ops::panel_gemm`), `auto` or unset picks the best available (AVX-512 for the GEMM).

use std::sync::OnceLock;

/// An instruction set the lane kernels can run on. A value naming AVX2 + FMA can only be
/// obtained on a CPU that has both ([`Isa::avx2_fma`] checks), so holding one is the proof
/// the dispatch needs before it enters AVX2 code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Isa(Kind);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Portable,
    Avx2Fma,
}

impl Isa {
    /// Baseline code (x86-64 SSE2 or whatever the target guarantees), runs everywhere.
    pub const PORTABLE: Isa = Isa(Kind::Portable);

    /// AVX2 + FMA, when this CPU has both (detected at run time), else `None`.
    pub fn avx2_fma() -> Option<Isa> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Some(Isa(Kind::Avx2Fma));
            }
        }
        None
    }

    /// Every path this CPU can run, the portable one first (tests run them all).
    pub fn available() -> Vec<Isa> {
        std::iter::once(Isa::PORTABLE)
            .chain(Isa::avx2_fma())
            .collect()
    }

    /// `"AVX2 + FMA"` or `"portable"`.
    pub fn name(self) -> &'static str {
        match self.0 {
            Kind::Portable => "portable",
            Kind::Avx2Fma => "AVX2 + FMA",
        }
    }

    /// True for the AVX2 + FMA path (and so: this CPU has both).
    #[inline(always)]
    pub fn is_avx2_fma(self) -> bool {
        self.0 == Kind::Avx2Fma
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The process-wide choice and why it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub isa: Isa,
    /// One line for `jetgen info`, e.g. "this CPU has AVX2 and FMA".
    pub reason: String,
}

/// The environment variable that overrides the choice.
pub const ENV_VAR: &str = "JETGEN_SIMD";

/// The choice for a given `JETGEN_SIMD` value (`None` = unset) on a CPU whose best path is
/// `best`. Unknown values fall back to `auto` and say so in the reason.
pub fn select(requested: Option<&str>, best: Option<Isa>) -> Selection {
    let auto = |why: String| match best {
        Some(isa) => Selection {
            isa,
            reason: format!("{why}this CPU has AVX2 and FMA"),
        },
        None => Selection {
            isa: Isa::PORTABLE,
            reason: format!("{why}this CPU lacks AVX2 or FMA"),
        },
    };
    match requested.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("auto") => auto(String::new()),
        Some("portable") => Selection {
            isa: Isa::PORTABLE,
            reason: format!("forced by {ENV_VAR}=portable"),
        },
        Some("avx2") => match best {
            Some(isa) => Selection {
                isa,
                reason: format!("asked for by {ENV_VAR}=avx2; this CPU has AVX2 and FMA"),
            },
            None => Selection {
                isa: Isa::PORTABLE,
                reason: format!("{ENV_VAR}=avx2 asked for AVX2 + FMA, but this CPU lacks it"),
            },
        },
        Some(_) => auto(format!(
            "{ENV_VAR}={:?} not understood (auto, avx2 or portable), so auto: ",
            requested.unwrap_or_default()
        )),
    }
}

/// The process-wide selection, made at first use from `JETGEN_SIMD` and the CPU.
pub fn selection() -> &'static Selection {
    static CHOICE: OnceLock<Selection> = OnceLock::new();
    CHOICE.get_or_init(|| {
        let requested = std::env::var(ENV_VAR).ok();
        select(requested.as_deref(), Isa::avx2_fma())
    })
}

/// The path the kernels take in this process (cheap: one atomic load after the first call).
#[inline]
pub fn isa() -> Isa {
    selection().isa
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_variable_is_read_as_documented() {
        let avx2 = Isa(Kind::Avx2Fma);
        let fast = Some(avx2);
        assert_eq!(select(None, fast).isa, avx2);
        assert_eq!(select(Some("auto"), fast).isa, avx2);
        assert_eq!(select(Some(" Portable "), fast).isa, Isa::PORTABLE);
        assert_eq!(select(Some("avx2"), fast).isa, avx2);
        assert_eq!(select(None, None).isa, Isa::PORTABLE);
        let denied = select(Some("avx2"), None);
        assert_eq!(denied.isa, Isa::PORTABLE);
        assert!(denied.reason.contains("lacks"), "{}", denied.reason);
        let odd = select(Some("sse9"), fast);
        assert_eq!(odd.isa, avx2);
        assert!(odd.reason.contains("not understood"), "{}", odd.reason);
    }

    #[test]
    fn available_paths_start_with_the_portable_one() {
        let all = Isa::available();
        assert_eq!(all[0], Isa::PORTABLE);
        assert!(all.contains(&isa()));
        println!(
            "simd paths on this CPU: {all:?}, selected {}",
            selection().reason
        );
    }
}
