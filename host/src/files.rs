//! Reading a file whose path may come from an attacker (a rule, its signature): regular files
//! only, and no more of them than a limit.

use std::io::Read;
use std::path::Path;

/// The bytes of the regular file `path`, read up to one past `limit` (the caller tells a
/// file too large by its length): a path may name a device (`/dev/zero`, read forever), a
/// pipe (waited on), or a file that grows while it is read.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    // Asked before opening: opening a pipe waits for a writer.
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a device, a pipe or a socket)",
        ));
    }
    let mut bytes = Vec::with_capacity(metadata.len().min(limit) as usize);
    std::fs::File::open(path)?.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(bytes)
}
