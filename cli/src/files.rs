//! Reading and writing the files a command is given, with errors that name the file and what
//! was being done ([`CliError::Io`], exit 3), and the check of output paths that runs before a
//! command changes anything on the ledger.

use std::path::Path;

use crate::CliError;

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(CliError::io("read", path))
}

/// Reads a whole file as UTF-8 text.
pub fn read_to_string(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(CliError::io("read", path))
}

/// Writes a whole file.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), CliError> {
    std::fs::write(path, bytes).map_err(CliError::io("write", path))
}

/// Refuses to write over an existing file at `out` (exit 2).
pub fn refuse_existing(out: &Path) -> Result<(), CliError> {
    if out.exists() {
        return Err(CliError::Invalid(format!(
            "{} already exists",
            out.display()
        )));
    }
    Ok(())
}

/// Checks, before anything is submitted, that a new file can be written at `out`: it does not
/// exist yet (exit 2), its folder exists, and a file can be created there (exit 3 if not). The
/// check creates the file and removes it again.
pub fn check_output(out: &Path) -> Result<(), CliError> {
    refuse_existing(out)?;
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(CliError::Io {
            doing: "write",
            path: out.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the folder {} does not exist", dir.display()),
            ),
        });
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(CliError::io("create", out))?;
    std::fs::remove_file(out).map_err(CliError::io("remove the test file", out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_in_a_missing_folder_is_an_io_error_naming_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nodir").join("r.json");
        let e = check_output(&out).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::IO_ERROR);
        assert!(e.to_string().contains("nodir"), "{e}");
        assert!(!out.exists());
    }

    #[test]
    fn a_writable_output_is_checked_without_leaving_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.json");
        check_output(&out).unwrap();
        assert!(!out.exists());
        std::fs::write(&out, b"x").unwrap();
        assert_eq!(
            check_output(&out).unwrap_err().exit_code(),
            crate::exit::INVALID_INPUT
        );
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let e = read(Path::new("/nonexistent/twinctl-test")).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::IO_ERROR);
        assert!(
            e.to_string()
                .starts_with("cannot read /nonexistent/twinctl-test:"),
            "{e}"
        );
    }
}
