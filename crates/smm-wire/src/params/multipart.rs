//! A small `multipart/form-data` reader over a complete body (RFC 7578 / RFC 2046), tolerant of
//! LF-only line ends and a missing closing delimiter.

use super::{Params, ParamsError, header_params};

/// Longest boundary accepted (RFC 2046 allows 70; some clients exceed it a little).
const MAX_BOUNDARY: usize = 200;

pub(super) fn parse(input: &[u8], boundary: &str) -> Result<Params, ParamsError> {
    let boundary = boundary.trim();
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
        return Err(ParamsError::NoBoundary);
    }
    let mut delimiter = Vec::with_capacity(boundary.len() + 2);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary.as_bytes());

    let mut params = Params::new();
    let Some(mut at) = find_delimiter(input, &delimiter, 0) else {
        if input.iter().all(u8::is_ascii_whitespace) {
            return Ok(params);
        }
        return Err(ParamsError::Multipart("no boundary delimiter in the body"));
    };
    loop {
        let after = at.saturating_add(delimiter.len());
        let rest = input.get(after..).unwrap_or_default();
        if rest.starts_with(b"--") {
            return Ok(params);
        }
        let Some(content_start) = line_end(input, after) else {
            // A delimiter that ends the input without `--`: the missing final `--`.
            return Ok(params);
        };
        match find_delimiter(input, &delimiter, content_start) {
            Some(next) => {
                // The line break before the delimiter belongs to the delimiter.
                let mut end = next.saturating_sub(1).max(content_start);
                if end > content_start && input.get(end - 1) == Some(&b'\r') {
                    end -= 1;
                }
                let part = input.get(content_start..end).unwrap_or_default();
                read_part(part, &mut params)?;
                at = next;
            }
            None => {
                let mut part = input.get(content_start..).unwrap_or_default();
                part = part.strip_suffix(b"\n").unwrap_or(part);
                part = part.strip_suffix(b"\r").unwrap_or(part);
                read_part(part, &mut params)?;
                return Ok(params);
            }
        }
    }
}

/// The start of the next real delimiter at or after `from`: at the start of the input or of a
/// line, and followed by `--`, optional padding and a line break, or the end of the input.
fn find_delimiter(input: &[u8], delimiter: &[u8], from: usize) -> Option<usize> {
    let mut from = from;
    loop {
        let hay = input.get(from..)?;
        let offset = hay
            .windows(delimiter.len())
            .position(|window| window == delimiter)?;
        let at = from.checked_add(offset)?;
        let line_start = at == 0 || input.get(at - 1) == Some(&b'\n');
        let after = at.checked_add(delimiter.len())?;
        let rest = input.get(after..).unwrap_or_default();
        if line_start
            && (rest.starts_with(b"--") || line_end(input, after).is_some() || rest.is_empty())
        {
            return Some(at);
        }
        from = at.checked_add(1)?;
    }
}

/// After a delimiter at `pos`: skips transport padding (spaces, tabs) and one `\r\n` or `\n`,
/// returning where the next line starts; `None` when something else follows or the input ends.
fn line_end(input: &[u8], pos: usize) -> Option<usize> {
    let rest = input.get(pos..)?;
    let padding = rest
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count();
    let rest = rest.get(padding..)?;
    let skip = if rest.starts_with(b"\r\n") {
        2
    } else if rest.starts_with(b"\n") {
        1
    } else {
        return None;
    };
    pos.checked_add(padding)?.checked_add(skip)
}

/// Reads one part: headers up to a blank line, then the value. An empty part is skipped.
fn read_part(part: &[u8], params: &mut Params) -> Result<(), ParamsError> {
    if part.is_empty() {
        return Ok(());
    }
    let mut headers: Vec<String> = Vec::new();
    let mut pos = 0;
    loop {
        let rest = part.get(pos..).unwrap_or_default();
        let Some(newline) = rest.iter().position(|b| *b == b'\n') else {
            return Err(ParamsError::Multipart(
                "part headers are not followed by a blank line",
            ));
        };
        let line = rest.get(..newline).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos = pos.saturating_add(newline).saturating_add(1);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        match headers.last_mut() {
            // Obsolete header folding: a continuation line.
            Some(last) if line.starts_with(b" ") || line.starts_with(b"\t") => {
                last.push(' ');
                last.push_str(text.trim());
            }
            _ => headers.push(text.into_owned()),
        }
    }
    let value = part.get(pos..).unwrap_or_default();
    let name = headers
        .iter()
        .filter_map(|h| h.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case("content-disposition"))
        .find_map(|(_, v)| {
            let (_, rest) = v.split_once(';')?;
            header_params(rest)
                .into_iter()
                .find(|(n, _)| n == "name")
                .map(|(_, v)| v)
        })
        .ok_or(ParamsError::Multipart(
            "a part has no name in its Content-Disposition",
        ))?;
    params.insert(name, String::from_utf8_lossy(value).into_owned());
    Ok(())
}
