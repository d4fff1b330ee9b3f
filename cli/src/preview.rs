//! `pulselake teams preview <team>` on the local stack: what the team would see, from the
//! team's compiled filter evaluated by DuckDB over a copy of the local lake. Lake
//! Formation enforces the filter in AWS; moto enforces nothing and has no data cells
//! filters, so this is how the filter is tried before a team gets it.

use std::path::{Path, PathBuf};
use std::process::Command;

use pulselake_domain::team::{TableColumn, check_row_filter};

use crate::AdminError;

/// What a team sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The columns the team's queries return, in table order.
    pub columns: Vec<String>,
    /// Per metric: rows, first and last measurement day.
    pub metrics: Vec<(String, u64, String, String)>,
    /// Rows the team sees, and rows the lake holds.
    pub visible: u64,
    pub total: u64,
}

impl Preview {
    /// A few readable lines.
    pub fn lines(&self, team: &str) -> Vec<String> {
        let mut out = vec![format!(
            "{team} sees {} of the lake's {} readings, columns: {}",
            self.visible,
            self.total,
            self.columns.join(", ")
        )];
        for (metric, rows, first, last) in &self.metrics {
            out.push(format!(
                "  {metric:<16} {rows:>7} readings  {first} .. {last}"
            ));
        }
        if self.metrics.is_empty() {
            out.push("  (no reading passes the filter)".into());
        }
        out
    }
}

/// The Python that has DuckDB: `PULSELAKE_PYTHON`, else the project venv's.
pub fn duckdb_python() -> PathBuf {
    std::env::var_os("PULSELAKE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".venv/bin/python"))
}

/// Copies every lake object under `readings/` from `bucket` into `dir`, by key.
pub async fn copy_lake(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    dir: &Path,
) -> Result<usize, AdminError> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("readings/")
        .into_paginator()
        .send();
    let mut copied = 0;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AdminError::Setup(format!("cannot list the lake: {e}")))?;
        for o in page.contents() {
            let Some(key) = o.key().filter(|k| k.ends_with(".parquet")) else {
                continue;
            };
            if key.split('/').any(|part| part == ".." || part.is_empty()) {
                continue;
            }
            let body = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| AdminError::Setup(format!("cannot read {key}: {e}")))?
                .body
                .collect()
                .await
                .map_err(|e| AdminError::Setup(format!("cannot read {key}: {e}")))?
                .into_bytes();
            let path = dir.join(key);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    AdminError::Setup(format!("cannot write {}: {e}", parent.display()))
                })?;
            }
            std::fs::write(&path, &body)
                .map_err(|e| AdminError::Setup(format!("cannot write {}: {e}", path.display())))?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Evaluates `row_filter` and `columns` with DuckDB over the lake copied into `dir`. The
/// filter is checked against Lake Formation's subset first (DuckDB would take more).
pub fn preview(
    python: &Path,
    dir: &Path,
    row_filter: &str,
    columns: &[String],
    table: &[TableColumn],
) -> Result<Preview, AdminError> {
    check_row_filter(row_filter, table).map_err(AdminError::Refused)?;
    if let Some(c) = columns
        .iter()
        .find(|c| !table.iter().any(|t| t.name == c.as_str()))
    {
        return Err(AdminError::Refused(vec![format!(
            "column {c:?} is not in the readings table"
        )]));
    }
    const SCRIPT: &str = r#"
import json, sys, duckdb
root, row_filter, columns = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
con = duckdb.connect()
files = (root + "/readings/*/*/*/*/*.parquet").replace("'", "''")
con.execute(
    f"CREATE VIEW readings AS SELECT * FROM read_parquet('{files}', hive_partitioning = true, "
    "union_by_name = true, hive_types = {'metric': VARCHAR, 'year': VARCHAR, 'month': VARCHAR, 'day': VARCHAR})"
)
cols = ", ".join('"' + c + '"' for c in columns)
seen = f"SELECT {cols} FROM readings WHERE {row_filter}"
names = [d[0] for d in con.execute(f"SELECT * FROM ({seen}) LIMIT 0").description]
per_metric = con.execute(
    f"SELECT metric, count(*), min(year || '-' || month || '-' || day), max(year || '-' || month || '-' || day) "
    f"FROM ({seen}) GROUP BY metric ORDER BY metric"
).fetchall()
total = con.execute("SELECT count(*) FROM readings").fetchone()[0]
print(json.dumps({"columns": names, "metrics": per_metric, "total": total}))
"#;
    if !dir.join("readings").exists() {
        return Ok(Preview {
            columns: columns.to_vec(),
            metrics: Vec::new(),
            visible: 0,
            total: 0,
        });
    }
    let out = Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(dir)
        .arg(row_filter)
        .arg(serde_json::to_string(columns).unwrap_or_default())
        .output()
        .map_err(|e| {
            AdminError::Setup(format!(
                "cannot run {} for DuckDB (run `make venv`, or set PULSELAKE_PYTHON to a Python with duckdb): {e}",
                python.display()
            ))
        })?;
    if !out.status.success() {
        return Err(AdminError::Setup(format!(
            "DuckDB could not evaluate the filter: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    #[derive(serde::Deserialize)]
    struct Out {
        columns: Vec<String>,
        metrics: Vec<(String, u64, String, String)>,
        total: u64,
    }
    let o: Out = serde_json::from_slice(&out.stdout).map_err(|e| {
        AdminError::Setup(format!("DuckDB's answer is not what was asked for: {e}"))
    })?;
    Ok(Preview {
        visible: o.metrics.iter().map(|m| m.1).sum(),
        columns: o.columns,
        metrics: o.metrics,
        total: o.total,
    })
}
