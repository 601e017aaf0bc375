//! A seeded mutator for the file readers, shared by `tests/mutation.rs` (a few hundred
//! cases per reader in `cargo test`) and its long-running mode (`scripts/mutate.sh`).
//!
//! A case is a reader and one valid file of its format; a mutation changes the bytes
//! (truncation, bit flips, random bytes, a huge number written over a field, a duplicated
//! or deleted range) and the reader runs on a separate thread, which must within
//! [`TIME_LIMIT`]: return (an `Error` or data that passed validation — never a panic), and
//! allocate at most the case's budget beyond what it held before (no allocation far
//! beyond the file's size). A truncated file must be an error or read as the original.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// How long one read may take before it counts as a hang.
pub const TIME_LIMIT: Duration = Duration::from_secs(20);

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// The global allocator of the mutation tests: the system's, counting the bytes each thread
/// holds and the most it held (so a reader's peak is measured on its own thread).
pub struct CountingAlloc;

fn count(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get() + delta;
        l.set(now);
        let _ = PEAK.try_with(|p| {
            if now > p.get() {
                p.set(now)
            }
        });
    });
}

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// A small seeded generator (SplitMix64), independent of the library's.
pub struct Mutator(u64);

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Mutator(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One random mutation of `bytes`, and what it was.
    pub fn mutate(&mut self, bytes: &[u8]) -> (Vec<u8>, String) {
        let mut b = bytes.to_vec();
        let n = b.len();
        // offsets near the start (headers) are drawn more often
        let at = |m: &mut Mutator| {
            if m.below(2) == 0 {
                m.below(n.min(512))
            } else {
                m.below(n)
            }
        };
        match self.below(6) {
            0 => {
                let most = 1 + self.below(8);
                let k = self.below(most);
                let mut what = vec![];
                for _ in 0..=k {
                    let i = at(self);
                    let bit = self.below(8);
                    b[i] ^= 1 << bit;
                    what.push(format!("{i}.{bit}"));
                }
                (b, format!("bit flips {}", what.join(" ")))
            }
            1 => {
                let i = at(self);
                let len = (1 + self.below(16)).min(n - i);
                for v in &mut b[i..i + len] {
                    *v = self.next() as u8;
                }
                (b, format!("{len} random bytes at {i}"))
            }
            2 => {
                // a huge size over a field: 4 or 8 bytes, little-endian, or as text digits
                let i = at(self);
                let big: u64 =
                    [u64::MAX, 1 << 40, 1 << 32, u32::MAX as u64, 1 << 31][self.below(5)];
                let width = if self.below(2) == 0 { 4 } else { 8 };
                let le = big.to_le_bytes();
                for (k, v) in b[i..].iter_mut().take(width).enumerate() {
                    *v = le[k];
                }
                (b, format!("huge value {big:#x} ({width} bytes) at {i}"))
            }
            3 => {
                // a huge number where the file has decimal digits (text headers: shapes,
                // JSON sizes)
                let digits: Vec<usize> = (0..n).filter(|&i| b[i].is_ascii_digit()).collect();
                if digits.is_empty() {
                    b.truncate(self.below(n));
                    return (b, "truncated (no digits)".into());
                }
                let i = digits[self.below(digits.len())];
                let huge = [
                    "99999999999",
                    "4294967296",
                    "18446744073709551615",
                    "0",
                    "-1",
                ][self.below(5)];
                let mut out = b[..i].to_vec();
                out.extend_from_slice(huge.as_bytes());
                out.extend_from_slice(&b[i + 1..]);
                (out, format!("digit at {i} replaced by {huge}"))
            }
            4 => {
                let i = at(self);
                let len = self.below(64).min(n - i);
                let mut out = b[..i].to_vec();
                if self.below(2) == 0 {
                    out.extend_from_slice(&b[i..i + len]);
                    out.extend_from_slice(&b[i..]);
                    (out, format!("{len} bytes at {i} duplicated"))
                } else {
                    out.extend_from_slice(&b[i + len..]);
                    (out, format!("{len} bytes at {i} deleted"))
                }
            }
            _ => {
                let k = self.below(n);
                b.truncate(k);
                (b, format!("truncated to {k} bytes"))
            }
        }
    }
}

/// What a reader returned, reduced to what the checks compare.
pub type Outcome = Result<String, String>;

/// One reader under test: `read` reads the case's main file at the given path (writing
/// any companion files it needs into the same directory first) and summarises the result.
pub struct Reader {
    pub name: &'static str,
    /// The file name the mutated bytes are written under.
    pub file_name: &'static str,
    /// A valid file of the format.
    pub original: Vec<u8>,
    /// Bytes the reader may allocate beyond its file's size times `budget_factor`.
    pub budget_factor: usize,
    pub read: fn(&Path) -> Outcome,
    /// Writes companion files (e.g. the other half of an `.npy` pair) into a directory.
    pub setup: fn(&Path),
}

/// Bytes any read may allocate regardless of the file's size.
pub const BUDGET_BASE: usize = 48 << 20;

/// Why a case failed, or `None` when it passed.
pub fn check_case(r: &Reader, bytes: &[u8], dir: &Path, truncation: bool) -> Option<String> {
    std::fs::create_dir_all(dir).ok()?;
    (r.setup)(dir);
    let path = dir.join(r.file_name);
    std::fs::write(&path, bytes).ok()?;
    let (tx, rx) = mpsc::channel();
    let read = r.read;
    let p = path.clone();
    let handle = std::thread::spawn(move || {
        let before = LIVE.with(Cell::get);
        PEAK.with(|pk| pk.set(before));
        let out = std::panic::catch_unwind(|| read(&p));
        let peak = PEAK.with(Cell::get) - before;
        let _ = tx.send((out, peak));
    });
    let (out, peak) = match rx.recv_timeout(TIME_LIMIT) {
        Ok(v) => v,
        Err(_) => return Some(format!("no answer within {TIME_LIMIT:?} (a hang)")),
    };
    let _ = handle.join();
    let budget = BUDGET_BASE + r.budget_factor * bytes.len();
    if peak > budget as isize {
        return Some(format!(
            "allocated {peak} bytes for a {}-byte file (budget {budget})",
            bytes.len()
        ));
    }
    match out {
        Err(_) => Some("panicked".into()),
        Ok(Err(_)) => None,
        Ok(Ok(summary)) => {
            if truncation && bytes.len() < r.original.len() {
                std::fs::write(&path, &r.original).ok()?;
                let whole = (r.read)(&path);
                if whole.as_ref() != Ok(&summary) {
                    return Some("a truncated file read as different data".into());
                }
            }
            None
        }
    }
}

/// Where failing inputs are kept as regression cases: `tests/mutation_cases/<reader>/`.
pub fn cases_dir(reader: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mutation_cases")
        .join(reader)
}

/// Runs `count` seeded mutations of `r` (plus truncations at `truncations` evenly spaced
/// offsets and every regression case on disk); failures are described, and with `keep`
/// saved as regression cases.
pub fn run_reader(
    r: &Reader,
    seed: u64,
    count: usize,
    truncations: usize,
    keep: bool,
) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!(
        "jetgen-mutate-{}-{}-{seed}",
        r.name,
        std::process::id()
    ));
    let mut failures = Vec::new();
    let mut fail = |what: String, bytes: &[u8], why: String| {
        if keep && !bytes.is_empty() {
            let d = cases_dir(r.name);
            let _ = std::fs::create_dir_all(&d);
            let name = format!("seed{seed}-{:016x}.bin", fnv(bytes));
            let _ = std::fs::write(d.join(name), bytes);
        }
        failures.push(format!("{} ({what}): {why}", r.name));
    };
    // regression cases first
    if let Ok(entries) = std::fs::read_dir(cases_dir(r.name)) {
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "bin"))
        {
            if let Ok(bytes) = std::fs::read(f) {
                if let Some(why) = check_case(r, &bytes, &dir, false) {
                    fail(format!("regression case {}", f.display()), &[], why);
                }
            }
        }
    }
    let n = r.original.len();
    for k in 0..truncations {
        let at = k * n / truncations.max(1);
        let bytes = &r.original[..at];
        if let Some(why) = check_case(r, bytes, &dir, true) {
            fail(format!("truncated to {at} bytes"), bytes, why);
        }
    }
    // with JETGEN_MUTATE_CURRENT set (scripts/mutate.sh), each input is written there
    // before it runs, so one that kills the process (an abort) can be kept too
    let current = std::env::var_os("JETGEN_MUTATE_CURRENT").map(PathBuf::from);
    let mut m = Mutator::new(seed);
    for _ in 0..count {
        let (bytes, what) = m.mutate(&r.original);
        if let Some(c) = &current {
            let _ = std::fs::write(c.with_extension("reader"), r.name);
            let _ = std::fs::write(c, &bytes);
        }
        let truncation = what.starts_with("truncated");
        if let Some(why) = check_case(r, &bytes, &dir, truncation) {
            fail(what, &bytes, why);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    failures
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
