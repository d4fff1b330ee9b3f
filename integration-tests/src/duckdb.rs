//! DuckDB, an engine nobody here wrote, reading the lake the way the Glue table
//! describes it: Parquet under Hive partitions, partition keys as strings. Runs the
//! project venv's pinned `duckdb` (PyPI) over a copy of the local lake.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::Result;
use crate::moto::venv_bin;

/// Runs `sql` over the lake copied into `dir`, where the view `readings` is the table;
/// returns the rows, each a list of values as text.
pub fn query(dir: &Path, sql: &str) -> Result<Vec<Vec<String>>> {
    const SCRIPT: &str = r#"
import json, sys, duckdb
root, sql = sys.argv[1], sys.argv[2]
con = duckdb.connect()
files = (root + "/readings/*/*/*/*/*").replace("'", "''")
con.execute(
    f"CREATE VIEW readings AS SELECT * FROM read_parquet('{files}', hive_partitioning = true, union_by_name = true, "
    "hive_types = {'metric': VARCHAR, 'year': VARCHAR, 'month': VARCHAR, 'day': VARCHAR})"
)
# Values come back as DuckDB renders them (no Python conversions, no pytz needed).
rows = con.execute(f"SELECT COLUMNS(*)::VARCHAR FROM ({sql})").fetchall()
print(json.dumps([[None if v is None else str(v) for v in row] for row in rows]))
"#;
    let out = Command::new(venv_bin("python"))
        .arg("-c")
        .arg(SCRIPT)
        .arg(dir)
        .arg(sql)
        .output()
        .map_err(|e| format!("cannot run the venv's python for DuckDB (run `make venv`): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "DuckDB query failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let rows: Vec<Vec<Option<String>>> = serde_json::from_slice(&out.stdout)?;
    Ok(rows
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
        .collect())
}

/// Rows per metric, as DuckDB counts them.
pub fn rows_per_metric(dir: &Path) -> Result<BTreeMap<String, usize>> {
    query(dir, "SELECT metric, count(*) FROM readings GROUP BY metric")?
        .into_iter()
        .map(|r| Ok((r[0].clone(), r[1].parse()?)))
        .collect()
}
