//! The frames-file format of `tests/peer` (capture.mjs, record-stream.mjs):
//! each firehose message as `<u32 big-endian length><bytes>`, back to back.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Splits a frames file into its messages.
pub fn parse_frames(bytes: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            bail!(
                "truncated length prefix at byte {}",
                bytes.len() - rest.len()
            );
        };
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            bail!(
                "frame at byte {} claims {len} bytes, {} left",
                bytes.len() - rest.len(),
                tail.len()
            );
        }
        let (frame, next) = tail.split_at(len);
        out.push(frame);
        rest = next;
    }
    Ok(out)
}

/// Reads a frames file into owned messages.
pub fn read_frames(path: &Path) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let frames = parse_frames(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    Ok(frames.into_iter().map(<[u8]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_rejects_truncation() -> Result<()> {
        let file = [0, 0, 0, 2, 0xa1, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0xff];
        let frames = parse_frames(&file)?;
        assert_eq!(frames, vec![&[0xa1, 0x01][..], &[][..], &[0xff][..]]);
        assert!(parse_frames(&file[..file.len() - 1]).is_err());
        assert!(parse_frames(&file[..2]).is_err());
        assert!(parse_frames(&[]).map(|f| f.is_empty())?);
        Ok(())
    }
}
