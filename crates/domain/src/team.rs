//! Team environments: what an internal ML or BI team may query in the lake, declared as
//! data and deny by default, and compiled to what Lake Formation enforces: one data cells
//! filter (a row filter and the granted columns), grants to the team's role, and an
//! Athena workgroup of its own with a per-query cutoff and a budget.
//!
//! Lake Formation's row filters are a PartiQL subset: column-to-constant comparisons of
//! string, number and boolean columns joined by AND/OR, no functions, no column-to-column
//! comparison, no `IS NULL` on a partition column, under 2,048 characters. The lake's
//! times are timestamps, which a row filter cannot compare, so a window is whole UTC days
//! on the partition columns (`year`, `month`, `day`: the measurement date); a cohort is the
//! row's own `cohort` column (the assignment's cohort at measurement time). What the
//! subset cannot say, the compiler refuses: nothing is silently widened.
//! [`check_row_filter`] checks any filter text against the subset on its own.

use serde::{Deserialize, Serialize};

use crate::access::{Refusal, check_cohorts, check_dua, check_metrics, check_window};
use crate::time::{DAY_MS, Date, format_rfc3339_ms, parse_rfc3339_ms};

/// One team's policy. Anything not listed is denied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamPolicy {
    /// Metrics by catalog name (as for partners).
    pub metrics: Vec<String>,
    /// Cohorts whose readings the team may see (`*`: every reading, those without a
    /// cohort included).
    pub cohorts: Vec<String>,
    /// The measurement window `[earliest, latest)`, whole UTC days, either end optional.
    #[serde(default)]
    pub earliest: Option<String>,
    #[serde(default)]
    pub latest: Option<String>,
    /// Columns of the readings table the team may read. Identifier columns
    /// ([`Sensitivity::Identifier`]) only when listed here.
    pub columns: Vec<String>,
    /// What the team uses the data for.
    pub purpose: String,
    /// Who answers for the team's access (a person or a mailbox).
    pub owner: String,
    /// When the access ends (RFC 3339): an expired team's grants are revoked.
    pub expires: String,
    /// The data use agreement or approval the access rests on (a reference).
    pub dua: String,
    /// Athena bytes: the most one query may scan, and the month's budget.
    pub budget: QueryBudget,
    /// The IAM role the team queries with (its principals assume it): the grants and
    /// the workgroup are for this role only.
    pub role_arn: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBudget {
    /// Athena cancels a query of the team's workgroup beyond this many bytes scanned.
    pub bytes_per_query: u64,
    /// Bytes scanned per month; an alarm fires when a day scans more than a 30th of it.
    pub bytes_per_month: u64,
}

/// Athena's smallest per-query cutoff (10 MB).
pub const MIN_BYTES_PER_QUERY: u64 = 10_000_000;

/// Lake Formation rejects row filters of 2,048 characters or more.
pub const MAX_ROW_FILTER_CHARS: usize = 2047;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamStatus {
    Active,
    Suspended,
}

/// How sensitive a column is: the value of the `pulselake-sensitivity` LF-tag on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensitivity {
    /// Identifies or links a device, a sensor, a subject or a source record.
    Identifier,
    /// Clinical content: the measurement, its coding, time and cohort.
    Clinical,
    /// How the row arrived.
    Operational,
}

impl Sensitivity {
    pub fn name(self) -> &'static str {
        match self {
            Sensitivity::Identifier => "identifier",
            Sensitivity::Clinical => "clinical",
            Sensitivity::Operational => "operational",
        }
    }

    pub const ALL: [Sensitivity; 3] = [
        Sensitivity::Identifier,
        Sensitivity::Clinical,
        Sensitivity::Operational,
    ];
}

/// A column of the table a team queries, as the compiler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableColumn {
    pub name: &'static str,
    /// The Glue type (`string`, `double`, `timestamp`, ...).
    pub glue_type: &'static str,
    pub partition: bool,
    pub sensitivity: Sensitivity,
}

/// The readings table's columns by sensitivity: the lake crate's column list is tested
/// to have every column here (an unclassified column could not be granted).
pub fn sensitivity_of(column: &str) -> Option<Sensitivity> {
    Some(match column {
        "reading_id" | "subject_id" | "device_id" | "sensor_id" | "source_ref" => {
            Sensitivity::Identifier
        }
        "value" | "unit" | "loinc" | "measured_at" | "cohort" | "metric" | "year" | "month"
        | "day" => Sensitivity::Clinical,
        "received_at" | "source" => Sensitivity::Operational,
        _ => return None,
    })
}

/// A team name: the suffix of its workgroup, filter and results prefix.
pub fn check_team_name(name: &str) -> Result<(), Refusal> {
    let ok = (2..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Refusal(format!(
            "team name {name:?}: 2-32 characters of a-z, 0-9 and '-', starting with a letter, not ending with '-' (it names the team's Athena workgroup and data filter)"
        )))
    }
}

/// What Lake Formation and Athena are asked to enforce for one team.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledTeam {
    pub team: String,
    /// The data cells filter's and the workgroup's name: `pulselake-team-<team>`.
    pub name: String,
    /// The row filter, in Lake Formation's PartiQL subset (checked by [`check_row_filter`]).
    pub row_filter: String,
    /// Columns the filter includes: the granted ones and the partition columns, in
    /// table order.
    pub columns: Vec<&'static str>,
    /// The granted identifier columns (shown wherever the team is listed).
    pub identifiers: Vec<&'static str>,
    /// Query results go under this prefix of the results bucket, and nowhere else.
    pub results_prefix: String,
    pub budget: QueryBudget,
    pub role_arn: String,
    pub expires_ms: i64,
}

/// Compiles `policy` for `team` against `table`, at `now_ms`. Every problem is listed.
pub fn compile(
    team: &str,
    policy: &TeamPolicy,
    table: &[TableColumn],
    now_ms: i64,
) -> Result<CompiledTeam, Vec<String>> {
    let mut problems = Vec::new();
    let mut note = |r: Result<(), Refusal>| {
        if let Err(e) = r {
            problems.push(e.0);
        }
    };
    note(check_team_name(team));
    note(check_metrics(&policy.metrics));
    note(check_cohorts(&policy.cohorts));
    note(check_dua(&policy.dua));
    for (what, text) in [("purpose", &policy.purpose), ("owner", &policy.owner)] {
        if text.trim().is_empty() {
            problems.push(format!("`{what}` is required"));
        }
    }
    for c in policy.cohorts.iter().filter(|c| *c != "*") {
        if c.is_empty()
            || c.len() > 64
            || !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            problems.push(format!(
                "cohort {c:?}: 1-64 characters of letters, digits, '-' and '_'"
            ));
        }
    }
    let window = check_window(policy.earliest.as_deref(), policy.latest.as_deref());
    let (from, to) = match window {
        Ok(w) => w,
        Err(e) => {
            problems.push(e.0);
            (None, None)
        }
    };
    for (name, t) in [("earliest", from), ("latest", to)] {
        if let Some(t) = t
            && t.rem_euclid(DAY_MS) != 0
        {
            problems.push(format!(
                "`{name}` {}: a team window is whole UTC days (Lake Formation row filters cannot compare timestamps, so the window is the measurement date's partition); use {}",
                format_rfc3339_ms(t),
                format_rfc3339_ms(t - t.rem_euclid(DAY_MS))
            ));
        }
    }
    let expires_ms = match parse_rfc3339_ms(&policy.expires) {
        Some(t) if t <= now_ms => {
            problems.push(format!(
                "`expires` {} is in the past: the team could query nothing",
                policy.expires
            ));
            t
        }
        Some(t) => t,
        None => {
            problems.push(format!(
                "`expires` {:?} is not an RFC 3339 time",
                policy.expires
            ));
            0
        }
    };
    if policy.budget.bytes_per_query < MIN_BYTES_PER_QUERY {
        problems.push(format!(
            "`budget.bytes_per_query` {} is below Athena's smallest cutoff ({MIN_BYTES_PER_QUERY})",
            policy.budget.bytes_per_query
        ));
    }
    if policy.budget.bytes_per_month < policy.budget.bytes_per_query {
        problems.push("`budget.bytes_per_month` is less than one query may scan".into());
    }
    if !is_role_arn(&policy.role_arn) {
        problems.push(format!(
            "`role_arn` {:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
            policy.role_arn
        ));
    }
    if policy.columns.is_empty() {
        problems.push("`columns` is empty: the team could read nothing".into());
    }
    let mut seen = Vec::new();
    for c in &policy.columns {
        match table.iter().find(|t| t.name == c) {
            None => problems.push(format!("column {c:?} is not in the readings table")),
            Some(t) if t.partition => problems.push(format!(
                "column {c:?} is a partition column: every team has those"
            )),
            Some(_) if seen.contains(&c) => problems.push(format!("column {c:?} is listed twice")),
            Some(_) => seen.push(c),
        }
    }
    let columns: Vec<&'static str> = table
        .iter()
        .filter(|t| t.partition || policy.columns.iter().any(|c| c == t.name))
        .map(|t| t.name)
        .collect();
    let identifiers = table
        .iter()
        .filter(|t| t.sensitivity == Sensitivity::Identifier && columns.contains(&t.name))
        .map(|t| t.name)
        .collect();
    let row_filter = row_filter(policy, from, to);
    if problems.is_empty()
        && let Err(mut p) = check_row_filter(&row_filter, table)
    {
        problems.append(&mut p);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(CompiledTeam {
        team: team.to_owned(),
        name: format!("pulselake-team-{team}"),
        row_filter,
        columns,
        identifiers,
        results_prefix: format!("teams/{team}/"),
        budget: policy.budget,
        role_arn: policy.role_arn.clone(),
        expires_ms,
    })
}

fn is_role_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource.strip_prefix("role/").is_some_and(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
        })
}

/// A string literal of the subset (quotes doubled).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The row filter: metrics, cohorts and the window, each a parenthesised term, ANDed.
fn row_filter(policy: &TeamPolicy, from: Option<i64>, to: Option<i64>) -> String {
    let list = |values: &[String]| {
        values
            .iter()
            .map(|v| literal(v))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut terms = vec![format!("metric IN ({})", list(&policy.metrics))];
    if !policy.cohorts.iter().any(|c| c == "*") {
        terms.push(format!("cohort IN ({})", list(&policy.cohorts)));
    }
    if let Some(t) = from {
        terms.push(date_bound(Date::from_epoch_ms(t), ">"));
    }
    if let Some(t) = to {
        terms.push(date_bound(Date::from_epoch_ms(t), "<"));
    }
    terms
        .iter()
        .map(|t| format!("({t})"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `date >= d` (`cmp` ">") or `date < d` (`cmp` "<") on the zero-padded partition strings,
/// which order as the dates do.
fn date_bound(d: Date, cmp: &str) -> String {
    let (y, m, day) = (
        literal(&format!("{:04}", d.year)),
        literal(&format!("{:02}", d.month)),
        literal(&format!("{:02}", d.day)),
    );
    let last = if cmp == ">" { ">=" } else { "<" };
    format!(
        "(year {cmp} {y}) OR (year = {y} AND month {cmp} {m}) OR (year = {y} AND month = {m} AND day {last} {day})"
    )
}

/// Checks `filter` against Lake Formation's row filter subset on `table`: every problem.
/// Independent of the compiler (it parses the text), so the compiler's output is checked
/// by what Lake Formation would accept, not by how it was built.
pub fn check_row_filter(filter: &str, table: &[TableColumn]) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if filter.chars().count() > MAX_ROW_FILTER_CHARS {
        problems.push(format!(
            "the row filter is {} characters: Lake Formation takes fewer than 2,048 (grant fewer metrics or cohorts, or split the team)",
            filter.chars().count()
        ));
    }
    match tokens(filter) {
        Err(e) => problems.push(e.0),
        Ok(tokens) => {
            let mut p = Parser {
                tokens: &tokens,
                at: 0,
                table,
                problems: &mut problems,
            };
            p.expression();
            if p.at < tokens.len() {
                let rest = format!("{:?}", tokens[p.at]);
                p.problems
                    .push(format!("unexpected {rest} in the row filter"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.dedup();
        Err(problems)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(String),
    Op(&'static str),
    Open,
    Close,
    Comma,
}

fn tokens(s: &str) -> Result<Vec<Token>, Refusal> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' => {
                chars.next();
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '\'' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(Refusal("a string in the row filter is not closed".into()));
                        }
                        Some((_, '\'')) if chars.peek().map(|x| x.1) == Some('\'') => {
                            chars.next();
                            text.push('\'');
                        }
                        Some((_, '\'')) => break,
                        Some((_, c)) => text.push(c),
                    }
                }
                out.push(Token::Text(text));
            }
            '=' | '<' | '>' | '!' => {
                let two = &s[i..s.len().min(i + 2)];
                let op = ["<=", ">=", "<>", "!="]
                    .into_iter()
                    .find(|op| two.starts_with(op))
                    .or_else(|| ["=", "<", ">"].into_iter().find(|op| two.starts_with(op)))
                    .ok_or_else(|| {
                        Refusal(format!(
                            "operator {two:?} is not in Lake Formation's subset"
                        ))
                    })?;
                for _ in 0..op.len() {
                    chars.next();
                }
                out.push(Token::Op(op));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let mut n = String::new();
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_ascii_digit() || d == '.' || (n.is_empty() && d == '-') {
                        n.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Number(n));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut w = String::new();
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        w.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(w));
            }
            other => {
                return Err(Refusal(format!(
                    "character {other:?} is not in Lake Formation's row filter subset"
                )));
            }
        }
    }
    Ok(out)
}

struct Parser<'t, 'p> {
    tokens: &'t [Token],
    at: usize,
    table: &'t [TableColumn],
    problems: &'p mut Vec<String>,
}

/// Row filters compare these types only (the Glue names).
const FILTERABLE: [&str; 8] = [
    "string", "char", "varchar", "int", "bigint", "double", "float", "boolean",
];

impl Parser<'_, '_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn keyword(&mut self, k: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(k) => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn fail(&mut self, problem: String) {
        self.problems.push(problem);
        // Stop: one clear problem, not a cascade.
        self.at = self.tokens.len();
    }

    /// expression := term ((AND | OR) term)*
    fn expression(&mut self) {
        self.term();
        while self.keyword("AND") || self.keyword("OR") {
            self.term();
        }
    }

    /// term := '(' expression ')' | NOT term | comparison
    fn term(&mut self) {
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            self.expression();
            if self.peek() == Some(&Token::Close) {
                self.at += 1;
            } else if self.at < self.tokens.len() {
                self.fail("a parenthesis in the row filter is not closed".into());
            } else if self.problems.is_empty() {
                self.problems
                    .push("a parenthesis in the row filter is not closed".into());
            }
            return;
        }
        if self.keyword("NOT") {
            return self.term();
        }
        self.comparison();
    }

    /// comparison := column (op value | [NOT] IN (values) | [NOT] BETWEEN v AND v |
    /// [NOT] LIKE 'text' | IS [NOT] NULL)
    fn comparison(&mut self) {
        let Some(Token::Word(name)) = self.peek().cloned() else {
            let found = format!("{:?}", self.peek());
            return self.fail(format!(
                "expected a column in the row filter, found {found}"
            ));
        };
        self.at += 1;
        if self.peek() == Some(&Token::Open) {
            return self.fail(format!(
                "{name}(...): Lake Formation row filters allow no functions"
            ));
        }
        let Some(column) = self.table.iter().find(|c| c.name == name).copied() else {
            return self.fail(format!("{name:?} is not a column of the readings table"));
        };
        if !FILTERABLE.contains(&column.glue_type) {
            return self.fail(format!(
                "column {name} is a {}: Lake Formation row filters cannot compare it",
                column.glue_type
            ));
        }
        if let Some(Token::Op(_)) = self.peek() {
            self.at += 1;
            return self.value(column);
        }
        if self.keyword("IS") {
            self.keyword("NOT");
            if !self.keyword("NULL") {
                return self.fail("IS must be followed by [NOT] NULL".into());
            }
            if column.partition {
                return self.fail(format!(
                    "IS [NOT] NULL on partition column {name}: Lake Formation does not allow it"
                ));
            }
            return;
        }
        self.keyword("NOT");
        if self.keyword("IN") {
            if self.peek() != Some(&Token::Open) {
                return self.fail("IN must be followed by a parenthesised list".into());
            }
            self.at += 1;
            loop {
                self.value(column);
                match self.peek() {
                    Some(Token::Comma) => self.at += 1,
                    Some(Token::Close) => {
                        self.at += 1;
                        return;
                    }
                    _ => return self.fail("an IN list is not closed".into()),
                }
            }
        }
        if self.keyword("BETWEEN") {
            self.value(column);
            if !self.keyword("AND") {
                return self.fail("BETWEEN needs AND".into());
            }
            return self.value(column);
        }
        if self.keyword("LIKE") {
            return match self.peek() {
                Some(Token::Text(_)) if column.glue_type == "string" => self.at += 1,
                _ => self.fail(format!("LIKE on {name} needs a string pattern")),
            };
        }
        let found = format!("{:?}", self.peek());
        self.fail(format!("expected a comparison after {name}, found {found}"))
    }

    /// A constant of the column's type (never another column).
    fn value(&mut self, column: TableColumn) {
        let text = matches!(column.glue_type, "string" | "char" | "varchar");
        match self.peek().cloned() {
            Some(Token::Text(_)) if text => self.at += 1,
            Some(Token::Number(_)) if !text && column.glue_type != "boolean" => self.at += 1,
            Some(Token::Word(w))
                if column.glue_type == "boolean"
                    && (w.eq_ignore_ascii_case("true") || w.eq_ignore_ascii_case("false")) =>
            {
                self.at += 1
            }
            Some(Token::Word(w)) if self.table.iter().any(|c| c.name == w) => self.fail(format!(
                "{} compared with column {w}: Lake Formation compares columns with constants only",
                column.name
            )),
            other => self.fail(format!(
                "{} ({}) compared with {other:?}: the constant must be of the column's type",
                column.name, column.glue_type
            )),
        }
    }
}

/// Whether a reading of `metric`, `cohort` and measured at `measured_at` passes `policy`:
/// the policy's meaning, stated directly (tests hold the compiled filter to it).
pub fn admits(policy: &TeamPolicy, metric: &str, cohort: Option<&str>, measured_at: i64) -> bool {
    let (from, to) = check_window(policy.earliest.as_deref(), policy.latest.as_deref())
        .unwrap_or((Some(i64::MAX), None));
    policy.metrics.iter().any(|m| m == metric)
        && policy
            .cohorts
            .iter()
            .any(|c| c == "*" || Some(c.as_str()) == cohort)
        && from.is_none_or(|f| measured_at >= f)
        && to.is_none_or(|t| measured_at < t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: fn(&'static str, &'static str, bool, Sensitivity) -> TableColumn =
        |name, glue_type, partition, sensitivity| TableColumn {
            name,
            glue_type,
            partition,
            sensitivity,
        };

    fn table() -> Vec<TableColumn> {
        use Sensitivity::*;
        vec![
            T("reading_id", "string", false, Identifier),
            T("subject_id", "string", false, Identifier),
            T("device_id", "string", false, Identifier),
            T("value", "double", false, Clinical),
            T("measured_at", "timestamp", false, Clinical),
            T("cohort", "string", false, Clinical),
            T("metric", "string", true, Clinical),
            T("year", "string", true, Clinical),
            T("month", "string", true, Clinical),
            T("day", "string", true, Clinical),
        ]
    }

    const NOW: i64 = 1_796_000_000_000; // 2026-12-01

    fn policy() -> TeamPolicy {
        TeamPolicy {
            metrics: vec!["heart_rate".into(), "spo2".into()],
            cohorts: vec!["neonatal".into()],
            earliest: Some("2026-03-15T00:00:00Z".into()),
            latest: Some("2026-06-01T00:00:00Z".into()),
            columns: vec!["value".into(), "measured_at".into(), "cohort".into()],
            purpose: "sepsis early-warning model".into(),
            owner: "ml-lead@example.org".into(),
            expires: "2027-06-30T00:00:00Z".into(),
            dua: "IRB-2026-041".into(),
            budget: QueryBudget {
                bytes_per_query: 10_000_000_000,
                bytes_per_month: 5_000_000_000_000,
            },
            role_arn: "arn:aws:iam::123456789012:role/pulselake-team-sepsis".into(),
        }
    }

    #[test]
    fn a_policy_compiles_to_a_row_filter_in_the_subset_and_the_granted_columns() {
        let c = compile("sepsis", &policy(), &table(), NOW).unwrap();
        assert_eq!(
            c.row_filter,
            "(metric IN ('heart_rate', 'spo2')) AND (cohort IN ('neonatal')) AND \
             ((year > '2026') OR (year = '2026' AND month > '03') OR (year = '2026' AND month = '03' AND day >= '15')) AND \
             ((year < '2026') OR (year = '2026' AND month < '06') OR (year = '2026' AND month = '06' AND day < '01'))"
        );
        assert_eq!(
            c.columns,
            [
                "value",
                "measured_at",
                "cohort",
                "metric",
                "year",
                "month",
                "day"
            ]
        );
        assert!(c.identifiers.is_empty());
        assert_eq!(c.name, "pulselake-team-sepsis");
        assert_eq!(c.results_prefix, "teams/sepsis/");
        assert!(check_row_filter(&c.row_filter, &table()).is_ok());
    }

    #[test]
    fn every_cohort_means_no_cohort_term_and_identifiers_are_named() {
        let p = TeamPolicy {
            cohorts: vec!["*".into()],
            earliest: None,
            latest: None,
            columns: vec!["device_id".into(), "value".into()],
            ..policy()
        };
        let c = compile("bi", &p, &table(), NOW).unwrap();
        assert_eq!(c.row_filter, "(metric IN ('heart_rate', 'spo2'))");
        assert_eq!(c.identifiers, ["device_id"]);
    }

    #[test]
    fn what_lake_formation_cannot_enforce_is_refused_with_every_problem() {
        let p = TeamPolicy {
            metrics: vec!["pulse".into()],
            earliest: Some("2026-03-15T12:00:00Z".into()),
            columns: vec!["value".into(), "ssn".into(), "year".into(), "value".into()],
            expires: "2026-01-01T00:00:00Z".into(),
            budget: QueryBudget {
                bytes_per_query: 1_000,
                bytes_per_month: 10,
            },
            role_arn: "arn:aws:iam::123:user/bob".into(),
            cohorts: vec!["neo'natal".into()],
            ..policy()
        };
        let problems = compile("Bad_Team", &p, &table(), NOW).unwrap_err();
        let all = problems.join("\n");
        for expected in [
            "team name",
            "\"pulse\"",
            "whole UTC days",
            "2026-03-15T00:00:00.000Z",
            "\"ssn\"",
            "partition column",
            "listed twice",
            "in the past",
            "smallest cutoff",
            "less than one query",
            "role ARN",
            "cohort \"neo'natal\"",
        ] {
            assert!(all.contains(expected), "{expected:?} missing from:\n{all}");
        }
    }

    #[test]
    fn too_many_cohorts_for_one_filter_are_refused_not_cut() {
        let p = TeamPolicy {
            cohorts: (0..200).map(|i| format!("cohort-{i:03}")).collect(),
            ..policy()
        };
        let problems = compile("wide", &p, &table(), NOW).unwrap_err();
        assert!(problems[0].contains("2,048"), "{problems:?}");
    }

    #[test]
    fn the_checker_refuses_what_lake_formation_refuses() {
        let t = table();
        for (filter, expected) in [
            ("lower(cohort) = 'adult'", "no functions"),
            ("value > measured_at", "constants only"),
            ("measured_at > 5", "timestamp"),
            ("cohort = device_id", "constants only"),
            ("year IS NULL", "partition column"),
            ("value = 'x'", "column's type"),
            ("nonesuch = 'x'", "not a column"),
            (
                "cohort = 'a' ; DROP TABLE readings",
                "not in Lake Formation's row filter subset",
            ),
            ("(cohort = 'a'", "not closed"),
            ("cohort IN ('a', 'b'", "not closed"),
            ("cohort = 'a", "not closed"),
            ("cohort == 'a'", "column's type"),
        ] {
            let problems = check_row_filter(filter, &t).expect_err(filter).join("\n");
            assert!(problems.contains(expected), "{filter}: {problems}");
        }
        for ok in [
            "cohort IS NULL",
            "NOT (cohort = 'a') OR value BETWEEN 1 AND 2.5",
            "cohort NOT IN ('a', 'it''s') AND device_id LIKE 'dev-%' AND value != -3",
        ] {
            assert!(check_row_filter(ok, &t).is_ok(), "{ok}");
        }
    }

    #[test]
    fn admits_is_the_policy_stated_directly() {
        let p = policy();
        let at = parse_rfc3339_ms("2026-03-15T00:00:00Z").unwrap();
        assert!(admits(&p, "spo2", Some("neonatal"), at));
        assert!(!admits(&p, "spo2", Some("neonatal"), at - 1));
        assert!(!admits(&p, "spo2", None, at));
        assert!(!admits(&p, "body_temp", Some("neonatal"), at));
        let end = parse_rfc3339_ms("2026-06-01T00:00:00Z").unwrap();
        assert!(admits(&p, "heart_rate", Some("neonatal"), end - 1));
        assert!(!admits(&p, "heart_rate", Some("neonatal"), end));
    }
}
