//! The process's open-file limit, read from `/proc/self/limits` without `unsafe`: a `getrlimit`
//! call would be the library's only `unsafe`, for a number that only decides whether to warn.

/// The soft open-file limit (`RLIMIT_NOFILE`); `None` when unlimited or unknown (no `/proc`, as
/// off Linux, or a file this does not understand), in which case herald does not warn.
pub(super) fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    max_open_files(&limits)
}

/// The soft limit of the `Max open files` row of a `/proc/<pid>/limits` table:
///
/// ```text
/// Limit                     Soft Limit           Hard Limit           Units
/// Max open files            1024                 524288               files
/// ```
fn max_open_files(limits: &str) -> Option<u64> {
    let row = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    // The soft limit is the row's first column; "unlimited" parses to nothing, which is `None`.
    row.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max processes             63448                63448                processes
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
";

    #[test]
    fn the_soft_limit_is_read() {
        assert_eq!(max_open_files(LIMITS), Some(1024));
    }

    #[test]
    fn unlimited_or_unreadable_is_none() {
        let unlimited = LIMITS.replace(
            "Max open files            1024 ",
            "Max open files            unlimited ",
        );
        assert_eq!(max_open_files(&unlimited), None);
        assert_eq!(max_open_files(""), None);
        assert_eq!(max_open_files("Max open files\n"), None);
        assert_eq!(max_open_files("Max open files   -1   10   files\n"), None);
        let without_row = LIMITS.replace("Max open files", "Max open filez");
        assert_eq!(max_open_files(&without_row), None);
    }

    /// On Linux the live table has the row, and whatever it says parses (a number or
    /// "unlimited"); elsewhere there is no table and no limit is known.
    #[test]
    fn the_live_table_parses_where_there_is_one() {
        match std::fs::read_to_string("/proc/self/limits") {
            Ok(table) => {
                let row = table.lines().find(|l| l.starts_with("Max open files"));
                let soft = row.and_then(|r| r.split_whitespace().nth(3));
                assert!(soft.is_some(), "{table}");
                assert_eq!(
                    open_file_limit(),
                    soft.and_then(|s| s.parse().ok()),
                    "{table}"
                );
            }
            Err(_) => assert_eq!(open_file_limit(), None),
        }
    }
}
