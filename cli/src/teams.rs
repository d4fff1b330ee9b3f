//! `pulselake teams ...`: add, update-policy, suspend, reactivate, remove, sweep, list,
//! preview. A team environment is its policy (deny by default), compiled to one Lake
//! Formation data cells filter granted to the team's role, an Athena workgroup of its own
//! and a budget alarm. Nothing is copied: the team queries the lake through the filter.
//!
//! Every change is applied step by step with its undo kept, so a step that fails undoes
//! the ones before it (a failed `add` leaves no grant, filter, workgroup or alarm), and
//! every change is recorded in the audit store.

use pulselake_adapters::{AuditLog, AwsError, Team, Teams};
use pulselake_domain::team::{
    CompiledTeam, Sensitivity, TableColumn, TeamPolicy, TeamStatus, compile, sensitivity_of,
};
use pulselake_domain::time::format_rfc3339_ms;

use crate::AdminError;

/// Port: what Lake Formation, Athena and CloudWatch are asked to do for teams.
#[allow(async_fn_in_trait)]
pub trait TeamControl {
    /// The `pulselake-sensitivity` LF-tag and its values on the table's columns (idempotent).
    async fn tag_columns(&self, table: &[TableColumn]) -> Result<(), AwsError>;
    /// Creates the team's data cells filter, or replaces the one of that name.
    async fn put_filter(&self, team: &CompiledTeam, replace: bool) -> Result<(), AwsError>;
    async fn delete_filter(&self, name: &str) -> Result<(), AwsError>;
    /// SELECT through the filter, DESCRIBE on the database and table, to the team's role.
    async fn grant(&self, team: &CompiledTeam) -> Result<(), AwsError>;
    async fn revoke(&self, role_arn: &str, name: &str) -> Result<(), AwsError>;
    async fn create_workgroup(&self, team: &CompiledTeam) -> Result<(), AwsError>;
    async fn update_workgroup(&self, team: &CompiledTeam, enabled: bool) -> Result<(), AwsError>;
    async fn delete_workgroup(&self, name: &str) -> Result<(), AwsError>;
    async fn put_budget_alarm(&self, team: &CompiledTeam) -> Result<(), AwsError>;
    async fn delete_budget_alarm(&self, name: &str) -> Result<(), AwsError>;
    /// Bytes the team's workgroup scanned this month (`None` where nothing is published).
    async fn month_bytes(&self, name: &str, now_ms: i64) -> Result<Option<u64>, AwsError>;
}

/// The readings table as teams see it: the lake's columns and its partition keys, each
/// with its sensitivity. A column without one is a setup error: it could not be granted.
pub fn lake_table() -> Result<Vec<TableColumn>, AdminError> {
    let data = pulselake_lake::COLUMNS
        .iter()
        .map(|c| (c.name, c.glue_type, false));
    let keys = pulselake_lake::PARTITION_KEYS
        .iter()
        .map(|k| (*k, "string", true));
    data.chain(keys)
        .map(|(name, glue_type, partition)| {
            let sensitivity = sensitivity_of(name).ok_or_else(|| {
                AdminError::Setup(format!("lake column {name} has no sensitivity class"))
            })?;
            Ok(TableColumn {
                name,
                glue_type,
                partition,
                sensitivity,
            })
        })
        .collect()
}

/// The ports the team commands use.
pub struct TeamAdmin<'a, T, C, A> {
    pub teams: &'a T,
    pub control: &'a C,
    pub audit: &'a A,
    pub table: Vec<TableColumn>,
}

/// A step already applied, and how to take it back.
enum Undo {
    Workgroup(String),
    Filter(String),
    Grant { role: String, name: String },
    Alarm(String),
    Record(String),
}

fn policy_of(text: &str) -> Result<TeamPolicy, AdminError> {
    serde_json::from_str(text).map_err(|e| AdminError::Refused(vec![format!("policy: {e}")]))
}

fn status_word(t: &Team, now_ms: i64) -> &'static str {
    match t.status {
        TeamStatus::Suspended => "suspended",
        TeamStatus::Active if expired(&t.policy, now_ms) => "expired",
        TeamStatus::Active => "active",
    }
}

fn expired(p: &TeamPolicy, now_ms: i64) -> bool {
    pulselake_domain::time::parse_rfc3339_ms(&p.expires).is_none_or(|t| t <= now_ms)
}

impl<T: Teams, C: TeamControl, A: AuditLog> TeamAdmin<'_, T, C, A> {
    fn compile(&self, team: &str, p: &TeamPolicy, now_ms: i64) -> Result<CompiledTeam, AdminError> {
        compile(team, p, &self.table, now_ms).map_err(AdminError::Refused)
    }

    async fn existing(&self, team: &str) -> Result<Team, AdminError> {
        self.teams
            .get(team)
            .await?
            .ok_or_else(|| AdminError::Refused(vec![format!("no team {team}")]))
    }

    async fn record(
        &self,
        action: &str,
        c: &CompiledTeam,
        p: &TeamPolicy,
        now_ms: i64,
    ) -> Result<(), AwsError> {
        let record = serde_json::json!({
            "action": action,
            "team": c.team,
            "at": format_rfc3339_ms(now_ms),
            "role_arn": c.role_arn,
            "row_filter": c.row_filter,
            "columns": c.columns,
            "identifiers": c.identifiers,
            "purpose": p.purpose,
            "owner": p.owner,
            "dua": p.dua,
            "expires": p.expires,
            "bytes_per_query": c.budget.bytes_per_query,
            "bytes_per_month": c.budget.bytes_per_month,
        });
        self.audit.append("teams", now_ms, &record).await
    }

    /// Takes back `done`, latest first. Returns what could not be undone.
    async fn undo(&self, done: Vec<Undo>) -> Vec<String> {
        let mut left = Vec::new();
        for step in done.into_iter().rev() {
            let (what, result) = match &step {
                Undo::Workgroup(n) => (
                    format!("workgroup {n}"),
                    self.control.delete_workgroup(n).await,
                ),
                Undo::Filter(n) => (
                    format!("data cells filter {n}"),
                    self.control.delete_filter(n).await,
                ),
                Undo::Grant { role, name } => (
                    format!("grant of {name} to {role}"),
                    self.control.revoke(role, name).await,
                ),
                Undo::Alarm(n) => (
                    format!("alarm {n}"),
                    self.control.delete_budget_alarm(n).await,
                ),
                Undo::Record(n) => (format!("team record {n}"), self.teams.delete(n).await),
            };
            if let Err(e) = result {
                left.push(format!("{what} ({e})"));
            }
        }
        left
    }

    fn failed(team: &str, what: &str, e: AwsError, left: Vec<String>) -> AdminError {
        if left.is_empty() {
            AdminError::Setup(format!(
                "team {team}: {what} failed ({e}); every step before it was undone, nothing is left applied"
            ))
        } else {
            AdminError::Setup(format!(
                "team {team}: {what} failed ({e}); these could not be undone and need removing by hand: {}",
                left.join("; ")
            ))
        }
    }

    /// Adds a team environment. Refused, with every problem listed, if the name or the
    /// policy is wrong or the team exists; if a step fails, the steps before it are undone.
    pub async fn add(
        &self,
        team: &str,
        policy: &str,
        now_ms: i64,
    ) -> Result<CompiledTeam, AdminError> {
        let p = policy_of(policy)?;
        let c = self.compile(team, &p, now_ms)?;
        let record = Team {
            team: team.to_owned(),
            status: TeamStatus::Active,
            policy: p.clone(),
            row_filter: c.row_filter.clone(),
            columns: c.columns.iter().map(|s| (*s).to_owned()).collect(),
            updated_at: now_ms,
            version: 0,
        };
        // The name is claimed first: of two adds of one name, one gets it.
        if !self.teams.put(&record).await? {
            return Err(AdminError::Refused(vec![format!(
                "team {team} exists already"
            )]));
        }
        let mut done = vec![Undo::Record(team.to_owned())];
        macro_rules! step {
            ($what:expr, $call:expr, $undo:expr) => {
                match $call.await {
                    Ok(_) => done.extend($undo),
                    Err(e) => {
                        let left = self.undo(done).await;
                        return Err(Self::failed(team, $what, e, left));
                    }
                }
            };
        }
        step!(
            "tagging the lake's columns",
            self.control.tag_columns(&self.table),
            None
        );
        step!(
            "creating the workgroup",
            self.control.create_workgroup(&c),
            Some(Undo::Workgroup(c.name.clone()))
        );
        step!(
            "creating the data cells filter",
            self.control.put_filter(&c, false),
            Some(Undo::Filter(c.name.clone()))
        );
        step!(
            "granting the filter to the team's role",
            self.control.grant(&c),
            Some(Undo::Grant {
                role: c.role_arn.clone(),
                name: c.name.clone()
            })
        );
        step!(
            "creating the budget alarm",
            self.control.put_budget_alarm(&c),
            Some(Undo::Alarm(c.name.clone()))
        );
        step!(
            "recording the change in the audit store",
            self.record("add", &c, &p, now_ms),
            None
        );
        Ok(c)
    }

    /// Replaces a team's policy: the filter, grants, workgroup limits and alarm follow.
    pub async fn update_policy(
        &self,
        team: &str,
        policy: &str,
        now_ms: i64,
    ) -> Result<CompiledTeam, AdminError> {
        let p = policy_of(policy)?;
        let c = self.compile(team, &p, now_ms)?;
        let mut t = self.existing(team).await?;
        let before = self.compile(team, &t.policy, i64::MIN).ok();
        let active = t.status == TeamStatus::Active;
        let result = async {
            self.control.put_filter(&c, true).await?;
            if active {
                if before.as_ref().is_some_and(|b| b.role_arn != c.role_arn) {
                    self.control.revoke(&t.policy.role_arn, &c.name).await?;
                }
                self.control.grant(&c).await?;
            }
            self.control.update_workgroup(&c, active).await?;
            self.control.put_budget_alarm(&c).await
        }
        .await;
        if let Err(e) = result {
            // Back to what was in force: the previous filter, grant and limits.
            if let Some(b) = &before {
                let _ = self.control.put_filter(b, true).await;
                if b.role_arn != c.role_arn {
                    let _ = self.control.revoke(&c.role_arn, &c.name).await;
                }
                if active {
                    let _ = self.control.grant(b).await;
                }
                let _ = self.control.update_workgroup(b, active).await;
                let _ = self.control.put_budget_alarm(b).await;
            }
            return Err(AdminError::Setup(format!(
                "team {team}: the new policy could not be applied ({e}); the previous one was put back"
            )));
        }
        t.policy = p.clone();
        t.row_filter = c.row_filter.clone();
        t.columns = c.columns.iter().map(|s| (*s).to_owned()).collect();
        t.updated_at = now_ms;
        if !self.teams.put(&t).await? {
            return Err(AdminError::Setup(format!(
                "team {team} changed while its policy was replaced; run update-policy again"
            )));
        }
        self.record("update-policy", &c, &p, now_ms).await?;
        Ok(c)
    }

    /// Suspends a team: its grant is revoked at once (queries through the filter stop
    /// reading) and its workgroup disabled.
    pub async fn suspend(&self, team: &str, now_ms: i64) -> Result<(), AdminError> {
        let mut t = self.existing(team).await?;
        let c = self.compile(team, &t.policy, i64::MIN)?;
        self.control.revoke(&c.role_arn, &c.name).await?;
        self.control.update_workgroup(&c, false).await?;
        t.status = TeamStatus::Suspended;
        t.updated_at = now_ms;
        if !self.teams.put(&t).await? {
            return Err(AdminError::Setup(format!(
                "team {team} changed while it was suspended (its grant is revoked); run suspend again"
            )));
        }
        self.record("suspend", &c, &t.policy, now_ms).await?;
        Ok(())
    }

    /// Lets a suspended team back in (refused once its policy has expired: update it).
    pub async fn reactivate(&self, team: &str, now_ms: i64) -> Result<(), AdminError> {
        let mut t = self.existing(team).await?;
        let c = self.compile(team, &t.policy, now_ms)?;
        self.control.grant(&c).await?;
        self.control.update_workgroup(&c, true).await?;
        t.status = TeamStatus::Active;
        t.updated_at = now_ms;
        if !self.teams.put(&t).await? {
            return Err(AdminError::Setup(format!(
                "team {team} changed while it was reactivated; run reactivate again"
            )));
        }
        self.record("reactivate", &c, &t.policy, now_ms).await?;
        Ok(())
    }

    /// Removes a team: the grant first (a query still running loses access), then the
    /// filter, the workgroup and the alarm. Its results expire with the results bucket's
    /// lifecycle rule.
    pub async fn remove(&self, team: &str, now_ms: i64) -> Result<(), AdminError> {
        let t = self.existing(team).await?;
        let c = self.compile(team, &t.policy, i64::MIN)?;
        self.control.revoke(&c.role_arn, &c.name).await?;
        self.control.delete_filter(&c.name).await?;
        self.control.delete_workgroup(&c.name).await?;
        self.control.delete_budget_alarm(&c.name).await?;
        self.teams.delete(team).await?;
        self.record("remove", &c, &t.policy, now_ms).await?;
        Ok(())
    }

    /// Suspends every active team whose policy has expired; returns their names. Run it
    /// daily (ops' scheduler): expiry is not left to a person remembering.
    pub async fn sweep(&self, now_ms: i64) -> Result<Vec<String>, AdminError> {
        let mut suspended = Vec::new();
        for t in self.teams.all().await? {
            if t.status == TeamStatus::Active && expired(&t.policy, now_ms) {
                self.suspend(&t.team, now_ms).await?;
                suspended.push(t.team);
            }
        }
        Ok(suspended)
    }

    /// One line per team: status, scope, identifiers granted, spend and expiry.
    pub async fn list(&self, now_ms: i64) -> Result<Vec<String>, AdminError> {
        let mut out = Vec::new();
        for t in self.teams.all().await? {
            let p = &t.policy;
            let name = format!("pulselake-team-{}", t.team);
            let spend = match self.control.month_bytes(&name, now_ms).await? {
                Some(b) => format!(
                    "{:.1} of {:.1} GB",
                    b as f64 / 1e9,
                    p.budget.bytes_per_month as f64 / 1e9
                ),
                None => format!("n/a of {:.1} GB", p.budget.bytes_per_month as f64 / 1e9),
            };
            let identifiers: Vec<&str> = t
                .columns
                .iter()
                .map(String::as_str)
                .filter(|c| sensitivity_of(c) == Some(Sensitivity::Identifier))
                .collect();
            out.push(format!(
                "{}  {}  metrics={}  cohorts={}  window={}..{}  columns={}  identifiers={}  spend={}  expires={}  owner={}",
                t.team,
                status_word(&t, now_ms),
                p.metrics.join(","),
                p.cohorts.join(","),
                p.earliest.as_deref().unwrap_or(""),
                p.latest.as_deref().unwrap_or(""),
                t.columns.len(),
                if identifiers.is_empty() { "none".to_owned() } else { identifiers.join(",") },
                spend,
                p.expires,
                p.owner,
            ));
        }
        Ok(out)
    }

    /// The team's record (for `preview`).
    pub async fn get(&self, team: &str) -> Result<Team, AdminError> {
        self.existing(team).await
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use pulselake_adapters::{MemoryAuditLog, MemoryTeams};

    use super::*;

    /// Records every call; fails the one named in `fail`.
    #[derive(Default)]
    struct Recording {
        calls: RefCell<Vec<String>>,
        fail: Option<&'static str>,
    }

    impl Recording {
        fn call(&self, what: String) -> Result<(), AwsError> {
            let op = what.split(' ').next().unwrap_or_default().to_owned();
            self.calls.borrow_mut().push(what);
            if self.fail == Some(op.as_str()) {
                return Err(AwsError::permanent("test", format!("{op} refused")));
            }
            Ok(())
        }
    }

    impl TeamControl for Recording {
        async fn tag_columns(&self, table: &[TableColumn]) -> Result<(), AwsError> {
            self.call(format!("tag {}", table.len()))
        }
        async fn put_filter(&self, t: &CompiledTeam, replace: bool) -> Result<(), AwsError> {
            self.call(format!("put_filter {} {replace} {}", t.name, t.row_filter))
        }
        async fn delete_filter(&self, name: &str) -> Result<(), AwsError> {
            self.call(format!("delete_filter {name}"))
        }
        async fn grant(&self, t: &CompiledTeam) -> Result<(), AwsError> {
            self.call(format!("grant {} {}", t.name, t.role_arn))
        }
        async fn revoke(&self, role: &str, name: &str) -> Result<(), AwsError> {
            self.call(format!("revoke {name} {role}"))
        }
        async fn create_workgroup(&self, t: &CompiledTeam) -> Result<(), AwsError> {
            self.call(format!("create_workgroup {}", t.name))
        }
        async fn update_workgroup(&self, t: &CompiledTeam, enabled: bool) -> Result<(), AwsError> {
            self.call(format!("update_workgroup {} {enabled}", t.name))
        }
        async fn delete_workgroup(&self, name: &str) -> Result<(), AwsError> {
            self.call(format!("delete_workgroup {name}"))
        }
        async fn put_budget_alarm(&self, t: &CompiledTeam) -> Result<(), AwsError> {
            self.call(format!("put_budget_alarm {}", t.name))
        }
        async fn delete_budget_alarm(&self, name: &str) -> Result<(), AwsError> {
            self.call(format!("delete_budget_alarm {name}"))
        }
        async fn month_bytes(&self, _: &str, _: i64) -> Result<Option<u64>, AwsError> {
            Ok(Some(2_500_000_000))
        }
    }

    const NOW: i64 = 1_796_000_000_000;

    fn policy(role: &str) -> String {
        format!(
            r#"{{"metrics":["spo2"],"cohorts":["neonatal"],"columns":["value","measured_at"],
            "purpose":"model","owner":"ml@example.org","expires":"2027-06-30T00:00:00Z","dua":"IRB-1",
            "budget":{{"bytes_per_query":10000000000,"bytes_per_month":1000000000000}},
            "role_arn":"arn:aws:iam::123456789012:role/{role}"}}"#
        )
    }

    fn admin<'a>(
        teams: &'a MemoryTeams,
        control: &'a Recording,
        audit: &'a MemoryAuditLog,
    ) -> TeamAdmin<'a, MemoryTeams, Recording, MemoryAuditLog> {
        TeamAdmin {
            teams,
            control,
            audit,
            table: lake_table().unwrap(),
        }
    }

    #[test]
    fn every_lake_column_has_a_sensitivity() {
        let table = lake_table().unwrap();
        assert_eq!(
            table.len(),
            pulselake_lake::COLUMNS.len() + pulselake_lake::PARTITION_KEYS.len()
        );
    }

    #[tokio::test]
    async fn a_failed_add_leaves_nothing_behind() {
        for fail in [
            "create_workgroup",
            "put_filter",
            "grant",
            "put_budget_alarm",
        ] {
            let (teams, audit) = (MemoryTeams::default(), MemoryAuditLog::default());
            let control = Recording {
                fail: Some(fail),
                ..Recording::default()
            };
            let err = admin(&teams, &control, &audit)
                .add("sepsis", &policy("r"), NOW)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("nothing is left applied"), "{fail}: {err}");
            assert!(teams.all().await.unwrap().is_empty(), "{fail}: record left");
            assert!(audit.0.lock().unwrap().is_empty());
            let calls = control.calls.borrow();
            let count = |op: &str| calls.iter().filter(|c| c.starts_with(op)).count();
            // Whatever was created before the failure was taken back (the failed call
            // created nothing).
            let made = |op: &str| count(op) - usize::from(op == fail);
            assert_eq!(
                made("create_workgroup"),
                count("delete_workgroup"),
                "{fail}: {calls:?}"
            );
            assert_eq!(
                made("put_filter"),
                count("delete_filter"),
                "{fail}: {calls:?}"
            );
            assert_eq!(made("grant"), count("revoke"), "{fail}: {calls:?}");
            assert_eq!(
                made("put_budget_alarm"),
                count("delete_budget_alarm"),
                "{fail}: {calls:?}"
            );
            assert!(count(fail) == 1, "{fail} was tried: {calls:?}");
        }
    }

    #[tokio::test]
    async fn a_team_is_added_narrowed_suspended_swept_and_removed_with_each_step_audited() {
        let (teams, audit, control) = (
            MemoryTeams::default(),
            MemoryAuditLog::default(),
            Recording::default(),
        );
        let a = admin(&teams, &control, &audit);
        let c = a.add("sepsis", &policy("r"), NOW).await.unwrap();
        assert_eq!(
            c.columns,
            ["value", "measured_at", "metric", "year", "month", "day"]
        );
        assert!(matches!(
            a.add("sepsis", &policy("r"), NOW).await,
            Err(AdminError::Refused(p)) if p[0].contains("exists already")
        ));
        // The role changes: the old one loses the grant before the new one gets it.
        a.update_policy("sepsis", &policy("r2"), NOW).await.unwrap();
        let calls = control.calls.borrow().clone();
        let revoke = calls
            .iter()
            .position(|c| {
                c.contains("revoke pulselake-team-sepsis arn:aws:iam::123456789012:role/r")
            })
            .unwrap();
        let grant = calls
            .iter()
            .rposition(|c| {
                c.contains("grant pulselake-team-sepsis arn:aws:iam::123456789012:role/r2")
            })
            .unwrap();
        assert!(revoke < grant, "{calls:?}");
        a.suspend("sepsis", NOW).await.unwrap();
        assert!(
            a.list(NOW).await.unwrap()[0]
                .starts_with("sepsis  suspended  metrics=spo2  cohorts=neonatal")
        );
        a.reactivate("sepsis", NOW).await.unwrap();
        // Past its expiry the sweep suspends it, and it cannot be reactivated.
        let later = pulselake_domain::time::parse_rfc3339_ms("2027-07-01T00:00:00Z").unwrap();
        assert!(a.list(later).await.unwrap()[0].starts_with("sepsis  expired"));
        assert_eq!(a.sweep(later).await.unwrap(), ["sepsis"]);
        assert!(
            matches!(a.reactivate("sepsis", later).await, Err(AdminError::Refused(p)) if p.iter().any(|p| p.contains("in the past")))
        );
        a.remove("sepsis", later).await.unwrap();
        assert!(teams.all().await.unwrap().is_empty());
        let actions: Vec<String> = audit
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, r)| format!("{k}:{}", r["action"].as_str().unwrap()))
            .collect();
        assert_eq!(
            actions,
            [
                "teams:add",
                "teams:update-policy",
                "teams:suspend",
                "teams:reactivate",
                "teams:suspend",
                "teams:remove"
            ]
        );
    }
}
