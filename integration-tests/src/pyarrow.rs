//! pyarrow (Apache Arrow's own Parquet reader, PyPI, pinned) reading every lake file:
//! a second independent engine beside DuckDB. Each file is read whole (every page is
//! decoded), and its schema and row count are reported.

use std::path::Path;
use std::process::Command;

use crate::Result;
use crate::moto::venv_bin;

/// What pyarrow read in one file.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct FileRead {
    pub path: String,
    pub rows: u64,
    /// (column name, Arrow type) in file order.
    pub fields: Vec<(String, String)>,
}

/// Reads every `*.parquet` file under `dir` with pyarrow.
pub fn read_all(dir: &Path) -> Result<Vec<FileRead>> {
    const SCRIPT: &str = r#"
import json, pathlib, sys
import pyarrow.parquet as pq
out = []
for p in sorted(pathlib.Path(sys.argv[1]).rglob("*.parquet")):
    t = pq.read_table(p)
    out.append({"path": str(p), "rows": t.num_rows,
                "fields": [[f.name, str(f.type)] for f in t.schema]})
print(json.dumps(out))
"#;
    let out = Command::new(venv_bin("python"))
        .arg("-c")
        .arg(SCRIPT)
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run the venv's python for pyarrow (run `make venv`): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pyarrow could not read the lake: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The Arrow type pyarrow reads a lake column as.
pub fn arrow_type(glue_type: &str) -> &'static str {
    match glue_type {
        "double" => "double",
        "timestamp" => "timestamp[ms, tz=UTC]",
        _ => "string",
    }
}

/// Files whose schema is not the lake's or whose row count differs from the footer
/// pulselake's reader sees: each named with what is wrong.
pub fn mismatches(dir: &Path, files: &[FileRead]) -> Vec<String> {
    let expected: Vec<(String, String)> = pulselake_lake::COLUMNS
        .iter()
        .map(|c| (c.name.to_owned(), arrow_type(c.glue_type).to_owned()))
        .collect();
    let mut bad = Vec::new();
    for f in files {
        let footer = std::fs::read(&f.path)
            .ok()
            .and_then(|b| pulselake_lake::row_count(b.into()).ok());
        let name = Path::new(&f.path)
            .strip_prefix(dir)
            .map_or(f.path.clone(), |p| p.display().to_string());
        if f.fields != expected {
            bad.push(format!("{name}: schema {:?}", f.fields));
        }
        if footer != Some(f.rows) {
            bad.push(format!(
                "{name}: pyarrow read {} rows, the footer says {footer:?}",
                f.rows
            ));
        }
    }
    bad
}
