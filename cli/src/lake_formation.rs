//! [`TeamControl`] on AWS: Lake Formation (LF-tags, data cells filters, grants), Athena
//! (one workgroup per team) and CloudWatch (the budget alarm). Only the CLI links these
//! clients; the functions never manage teams.
//!
//! moto (the local stack) stores LF-tags, grants and workgroups but has no data cells
//! filters, no UpdateWorkGroup, and does not speak the CBOR protocol this CloudWatch client
//! uses: with [`AwsTeamControl::local`] those calls are skipped (the team record holds the
//! compiled filter, which `teams preview` evaluates with DuckDB). Their requests are
//! tested against mocked clients instead.

use aws_sdk_athena::types::{
    EncryptionConfiguration, EncryptionOption, EngineVersion, ResultConfiguration,
    ResultConfigurationUpdates, Tag, WorkGroupConfiguration, WorkGroupConfigurationUpdates,
    WorkGroupState,
};
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat,
};
use aws_sdk_lakeformation::types::{
    DataCellsFilter, DataCellsFilterResource, DataLakePrincipal, DatabaseResource, LfTagPair,
    Permission, Resource, RowFilter, TableResource, TableWithColumnsResource,
};
use pulselake_adapters::AwsError;
use pulselake_domain::team::{CompiledTeam, Sensitivity, TableColumn};

use crate::teams::TeamControl;

/// The LF-tag every lake column carries.
pub const SENSITIVITY_TAG: &str = "pulselake-sensitivity";

/// Where teams' grants and workgroups live.
pub struct AwsTeamControl {
    pub lake_formation: aws_sdk_lakeformation::Client,
    pub athena: aws_sdk_athena::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// The account that owns the Glue catalog.
    pub catalog_id: String,
    pub database: String,
    pub table: String,
    /// The Athena results bucket; a team's results go under `teams/<team>/`.
    pub results_bucket: String,
    /// Encrypts query results (none locally).
    pub kms_key: Option<String>,
    /// Where budget alarms go.
    pub ops_topic: String,
    /// The local stack: skip what moto lacks (see the module docs).
    pub local: bool,
}

fn lf(op: &'static str) -> impl Fn(String) -> AwsError {
    move |m| AwsError::permanent(op, m)
}

fn sdk<E>(
    op: &'static str,
) -> impl Fn(
    aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> AwsError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    move |e| AwsError::from_sdk(op, e)
}

/// Whether `e` says the thing to delete or revoke is not there (so it is already undone).
/// Athena answers a missing workgroup with `InvalidRequestException` ("... is not found").
fn absent(e: &AwsError) -> bool {
    match e.code.as_deref() {
        Some("EntityNotFoundException" | "ResourceNotFoundException") => true,
        Some("InvalidRequestException") => e.message.contains("not found"),
        _ => false,
    }
}

impl AwsTeamControl {
    fn principal(role_arn: &str) -> DataLakePrincipal {
        DataLakePrincipal::builder()
            .data_lake_principal_identifier(role_arn)
            .build()
    }

    fn filter_resource(&self, name: &str) -> Resource {
        Resource::builder()
            .data_cells_filter(
                DataCellsFilterResource::builder()
                    .table_catalog_id(&self.catalog_id)
                    .database_name(&self.database)
                    .table_name(&self.table)
                    .name(name)
                    .build(),
            )
            .build()
    }

    fn database_resource(&self) -> Result<Resource, AwsError> {
        Ok(Resource::builder()
            .database(
                DatabaseResource::builder()
                    .catalog_id(&self.catalog_id)
                    .name(&self.database)
                    .build()
                    .map_err(|e| lf("lakeformation:GrantPermissions")(e.to_string()))?,
            )
            .build())
    }

    fn table_resource(&self) -> Result<Resource, AwsError> {
        Ok(Resource::builder()
            .table(
                TableResource::builder()
                    .catalog_id(&self.catalog_id)
                    .database_name(&self.database)
                    .name(&self.table)
                    .build()
                    .map_err(|e| lf("lakeformation:GrantPermissions")(e.to_string()))?,
            )
            .build())
    }

    /// The grants a team holds: SELECT through its filter, DESCRIBE of the database and
    /// the table (so engines can plan; DESCRIBE reveals no data).
    fn grants(&self, name: &str) -> Result<[(Resource, Permission); 3], AwsError> {
        Ok([
            (self.filter_resource(name), Permission::Select),
            (self.database_resource()?, Permission::Describe),
            (self.table_resource()?, Permission::Describe),
        ])
    }

    fn results_location(&self, team: &CompiledTeam) -> String {
        format!("s3://{}/{}", self.results_bucket, team.results_prefix)
    }

    fn encryption(&self) -> Option<EncryptionConfiguration> {
        self.kms_key.as_ref().and_then(|k| {
            EncryptionConfiguration::builder()
                .encryption_option(EncryptionOption::SseKms)
                .kms_key(k)
                .build()
                .ok()
        })
    }

    fn bytes_per_query(team: &CompiledTeam) -> i64 {
        i64::try_from(team.budget.bytes_per_query).unwrap_or(i64::MAX)
    }
}

impl TeamControl for AwsTeamControl {
    async fn tag_columns(&self, table: &[TableColumn]) -> Result<(), AwsError> {
        let values: Vec<String> = Sensitivity::ALL
            .iter()
            .map(|s| s.name().to_owned())
            .collect();
        let created = self
            .lake_formation
            .create_lf_tag()
            .catalog_id(&self.catalog_id)
            .tag_key(SENSITIVITY_TAG)
            .set_tag_values(Some(values))
            .send()
            .await
            .map_err(sdk("lakeformation:CreateLFTag"));
        match created {
            Err(e) if e.code.as_deref() != Some("AlreadyExistsException") => return Err(e),
            _ => {}
        }
        let pair = |s: Sensitivity| {
            LfTagPair::builder()
                .catalog_id(&self.catalog_id)
                .tag_key(SENSITIVITY_TAG)
                .tag_values(s.name())
                .build()
                .map_err(|e| lf("lakeformation:AddLFTagsToResource")(e.to_string()))
        };
        // The database and table carry the strictest value: a column added without a
        // tag of its own inherits `identifier`, so it is never granted by accident.
        let mut targets = vec![
            (self.database_resource()?, Sensitivity::Identifier),
            (self.table_resource()?, Sensitivity::Identifier),
        ];
        for s in Sensitivity::ALL {
            let columns: Vec<String> = table
                .iter()
                .filter(|c| c.sensitivity == s && !c.partition)
                .map(|c| c.name.to_owned())
                .collect();
            if columns.is_empty() {
                continue;
            }
            let resource = Resource::builder()
                .table_with_columns(
                    TableWithColumnsResource::builder()
                        .catalog_id(&self.catalog_id)
                        .database_name(&self.database)
                        .name(&self.table)
                        .set_column_names(Some(columns))
                        .build()
                        .map_err(|e| lf("lakeformation:AddLFTagsToResource")(e.to_string()))?,
                )
                .build();
            targets.push((resource, s));
        }
        for (resource, s) in targets {
            self.lake_formation
                .add_lf_tags_to_resource()
                .catalog_id(&self.catalog_id)
                .resource(resource)
                .lf_tags(pair(s)?)
                .send()
                .await
                .map_err(sdk("lakeformation:AddLFTagsToResource"))?;
        }
        Ok(())
    }

    async fn put_filter(&self, team: &CompiledTeam, replace: bool) -> Result<(), AwsError> {
        if self.local {
            return Ok(());
        }
        let filter = DataCellsFilter::builder()
            .table_catalog_id(&self.catalog_id)
            .database_name(&self.database)
            .table_name(&self.table)
            .name(&team.name)
            .row_filter(
                RowFilter::builder()
                    .filter_expression(&team.row_filter)
                    .build(),
            )
            .set_column_names(Some(team.columns.iter().map(|c| (*c).to_owned()).collect()))
            .build()
            .map_err(|e| lf("lakeformation:CreateDataCellsFilter")(e.to_string()))?;
        if replace {
            self.lake_formation
                .update_data_cells_filter()
                .table_data(filter)
                .send()
                .await
                .map_err(sdk("lakeformation:UpdateDataCellsFilter"))?;
        } else {
            self.lake_formation
                .create_data_cells_filter()
                .table_data(filter)
                .send()
                .await
                .map_err(sdk("lakeformation:CreateDataCellsFilter"))?;
        }
        Ok(())
    }

    async fn delete_filter(&self, name: &str) -> Result<(), AwsError> {
        if self.local {
            return Ok(());
        }
        let deleted = self
            .lake_formation
            .delete_data_cells_filter()
            .table_catalog_id(&self.catalog_id)
            .database_name(&self.database)
            .table_name(&self.table)
            .name(name)
            .send()
            .await
            .map_err(sdk("lakeformation:DeleteDataCellsFilter"));
        match deleted {
            Err(e) if !absent(&e) => Err(e),
            _ => Ok(()),
        }
    }

    async fn grant(&self, team: &CompiledTeam) -> Result<(), AwsError> {
        for (resource, permission) in self.grants(&team.name)? {
            self.lake_formation
                .grant_permissions()
                .catalog_id(&self.catalog_id)
                .principal(Self::principal(&team.role_arn))
                .resource(resource)
                .permissions(permission)
                .send()
                .await
                .map_err(sdk("lakeformation:GrantPermissions"))?;
        }
        Ok(())
    }

    async fn revoke(&self, role_arn: &str, name: &str) -> Result<(), AwsError> {
        for (resource, permission) in self.grants(name)? {
            let revoked = self
                .lake_formation
                .revoke_permissions()
                .catalog_id(&self.catalog_id)
                .principal(Self::principal(role_arn))
                .resource(resource)
                .permissions(permission)
                .send()
                .await
                .map_err(sdk("lakeformation:RevokePermissions"));
            match revoked {
                Err(e) if !absent(&e) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    async fn create_workgroup(&self, team: &CompiledTeam) -> Result<(), AwsError> {
        let results = ResultConfiguration::builder()
            .output_location(self.results_location(team))
            .expected_bucket_owner(&self.catalog_id)
            .set_encryption_configuration(self.encryption())
            .build();
        let config = WorkGroupConfiguration::builder()
            .result_configuration(results)
            .enforce_work_group_configuration(true)
            .publish_cloud_watch_metrics_enabled(true)
            .bytes_scanned_cutoff_per_query(Self::bytes_per_query(team))
            .requester_pays_enabled(false)
            .engine_version(
                EngineVersion::builder()
                    .selected_engine_version("Athena engine version 3")
                    .build(),
            )
            .build();
        self.athena
            .create_work_group()
            .name(&team.name)
            .description(format!(
                "pulselake team {} (results under {})",
                team.team, team.results_prefix
            ))
            .configuration(config)
            .tags(
                Tag::builder()
                    .key("pulselake-team")
                    .value(&team.team)
                    .build(),
            )
            .send()
            .await
            .map_err(sdk("athena:CreateWorkGroup"))?;
        Ok(())
    }

    async fn update_workgroup(&self, team: &CompiledTeam, enabled: bool) -> Result<(), AwsError> {
        if self.local {
            return Ok(());
        }
        let results = ResultConfigurationUpdates::builder()
            .output_location(self.results_location(team))
            .expected_bucket_owner(&self.catalog_id)
            .set_encryption_configuration(self.encryption())
            .build();
        self.athena
            .update_work_group()
            .work_group(&team.name)
            .state(if enabled {
                WorkGroupState::Enabled
            } else {
                WorkGroupState::Disabled
            })
            .configuration_updates(
                WorkGroupConfigurationUpdates::builder()
                    .result_configuration_updates(results)
                    .enforce_work_group_configuration(true)
                    .bytes_scanned_cutoff_per_query(Self::bytes_per_query(team))
                    .build(),
            )
            .send()
            .await
            .map_err(sdk("athena:UpdateWorkGroup"))?;
        Ok(())
    }

    async fn delete_workgroup(&self, name: &str) -> Result<(), AwsError> {
        let deleted = self
            .athena
            .delete_work_group()
            .work_group(name)
            .recursive_delete_option(true)
            .send()
            .await
            .map_err(sdk("athena:DeleteWorkGroup"));
        match deleted {
            Err(e) if !absent(&e) => Err(e),
            _ => Ok(()),
        }
    }

    async fn put_budget_alarm(&self, team: &CompiledTeam) -> Result<(), AwsError> {
        if self.local {
            return Ok(());
        }
        // Athena publishes ProcessedBytes per workgroup, query state and type: the alarm
        // adds the states of DML queries (what scans the lake) over a day.
        let series = |state: &str, id: &str| {
            MetricDataQuery::builder()
                .id(id)
                .return_data(false)
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace("AWS/Athena")
                                .metric_name("ProcessedBytes")
                                .dimensions(
                                    Dimension::builder()
                                        .name("WorkGroup")
                                        .value(&team.name)
                                        .build(),
                                )
                                .dimensions(
                                    Dimension::builder().name("QueryState").value(state).build(),
                                )
                                .dimensions(
                                    Dimension::builder().name("QueryType").value("DML").build(),
                                )
                                .build(),
                        )
                        .period(86_400)
                        .stat("Sum")
                        .build(),
                )
                .build()
        };
        let daily = team.budget.bytes_per_month as f64 / 30.0;
        self.cloudwatch
            .put_metric_alarm()
            .alarm_name(format!("{}-budget", team.name))
            .alarm_description(format!(
                "Team {} scanned more than a 30th of its monthly budget ({} bytes) in a day. Runbook: docs/teams.md#budgets",
                team.team, team.budget.bytes_per_month
            ))
            .metrics(series("SUCCEEDED", "succeeded"))
            .metrics(series("FAILED", "failed"))
            .metrics(series("CANCELED", "canceled"))
            .metrics(
                MetricDataQuery::builder()
                    .id("scanned")
                    .expression("FILL(succeeded, 0) + FILL(failed, 0) + FILL(canceled, 0)")
                    .label("bytes scanned per day")
                    .return_data(true)
                    .build(),
            )
            .evaluation_periods(1)
            .threshold(daily)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .treat_missing_data("notBreaching")
            .alarm_actions(&self.ops_topic)
            .send()
            .await
            .map_err(sdk("cloudwatch:PutMetricAlarm"))?;
        Ok(())
    }

    async fn delete_budget_alarm(&self, name: &str) -> Result<(), AwsError> {
        if self.local {
            return Ok(());
        }
        self.cloudwatch
            .delete_alarms()
            .alarm_names(format!("{name}-budget"))
            .send()
            .await
            .map_err(sdk("cloudwatch:DeleteAlarms"))?;
        Ok(())
    }

    async fn month_bytes(&self, name: &str, now_ms: i64) -> Result<Option<u64>, AwsError> {
        if self.local {
            return Ok(None);
        }
        use aws_smithy_types::DateTime;
        let d = pulselake_domain::time::Date::from_epoch_ms(now_ms);
        let start = pulselake_domain::time::Date { day: 1, ..d }.start_epoch_ms();
        let mut total = None;
        for state in ["SUCCEEDED", "FAILED", "CANCELED"] {
            let out = self
                .cloudwatch
                .get_metric_statistics()
                .namespace("AWS/Athena")
                .metric_name("ProcessedBytes")
                .dimensions(Dimension::builder().name("WorkGroup").value(name).build())
                .dimensions(Dimension::builder().name("QueryState").value(state).build())
                .dimensions(Dimension::builder().name("QueryType").value("DML").build())
                .start_time(DateTime::from_millis(start))
                .end_time(DateTime::from_millis(now_ms.max(start + 60_000)))
                .period(86_400)
                .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
                .send()
                .await
                .map_err(sdk("cloudwatch:GetMetricStatistics"))?;
            for p in out.datapoints() {
                *total.get_or_insert(0u64) += p.sum().unwrap_or(0.0).max(0.0) as u64;
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    //! The requests Lake Formation, Athena and CloudWatch receive, on mocked clients (moto
    //! has no data cells filters and no UpdateWorkGroup; AWS itself is not reachable here).
    use aws_sdk_athena::operation::create_work_group::CreateWorkGroupOutput;
    use aws_sdk_athena::operation::update_work_group::UpdateWorkGroupOutput;
    use aws_sdk_cloudwatch::operation::put_metric_alarm::PutMetricAlarmOutput;
    use aws_sdk_lakeformation::operation::create_data_cells_filter::CreateDataCellsFilterOutput;
    use aws_sdk_lakeformation::operation::delete_data_cells_filter::DeleteDataCellsFilterOutput;
    use aws_sdk_lakeformation::operation::grant_permissions::GrantPermissionsOutput;
    use aws_sdk_lakeformation::operation::revoke_permissions::RevokePermissionsOutput;
    use aws_sdk_lakeformation::operation::update_data_cells_filter::UpdateDataCellsFilterOutput;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use pulselake_domain::team::{TeamPolicy, compile};

    use super::*;
    use crate::teams::lake_table;

    const ROLE: &str = "arn:aws:iam::123456789012:role/pulselake-team-sepsis";

    fn team() -> CompiledTeam {
        let policy: TeamPolicy = serde_json::from_str(&format!(
            r#"{{"metrics":["spo2"],"cohorts":["neonatal"],"columns":["value","measured_at"],
            "earliest":"2026-01-01T00:00:00Z",
            "purpose":"model","owner":"ml@example.org","expires":"2027-06-30T00:00:00Z","dua":"IRB-1",
            "budget":{{"bytes_per_query":10000000000,"bytes_per_month":3000000000000}},"role_arn":"{ROLE}"}}"#
        ))
        .unwrap();
        compile("sepsis", &policy, &lake_table().unwrap(), 1_796_000_000_000).unwrap()
    }

    fn control(lf: &[&Rule], athena: &[&Rule], cw: &[&Rule]) -> AwsTeamControl {
        AwsTeamControl {
            lake_formation: mock_client!(aws_sdk_lakeformation, RuleMode::MatchAny, lf),
            athena: mock_client!(aws_sdk_athena, RuleMode::MatchAny, athena),
            cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, cw),
            catalog_id: "123456789012".into(),
            database: "pulselake_lake".into(),
            table: "readings".into(),
            results_bucket: "results".into(),
            kms_key: Some("arn:aws:kms:eu-west-1:123456789012:key/k".into()),
            ops_topic: "arn:aws:sns:eu-west-1:123456789012:ops".into(),
            local: false,
        }
    }

    #[tokio::test]
    async fn add_creates_the_filter_grants_it_creates_the_workgroup_and_the_alarm() {
        let t = team();
        let expected_filter = t.row_filter.clone();
        let filter = mock!(aws_sdk_lakeformation::Client::create_data_cells_filter)
            .match_requests(move |r| {
                let f = r.table_data().unwrap();
                f.name() == "pulselake-team-sepsis"
                    && f.database_name() == "pulselake_lake"
                    && f.table_name() == "readings"
                    && f.row_filter().and_then(|r| r.filter_expression())
                        == Some(expected_filter.as_str())
                    && f.column_names()
                        == ["value", "measured_at", "metric", "year", "month", "day"]
            })
            .then_output(|| CreateDataCellsFilterOutput::builder().build());
        let select = mock!(aws_sdk_lakeformation::Client::grant_permissions)
            .match_requests(|r| {
                r.principal()
                    .and_then(|p| p.data_lake_principal_identifier())
                    == Some(ROLE)
                    && r.permissions() == [Permission::Select]
                    && r.resource()
                        .and_then(|x| x.data_cells_filter())
                        .and_then(|f| f.name())
                        == Some("pulselake-team-sepsis")
            })
            .then_output(|| GrantPermissionsOutput::builder().build());
        let describe = mock!(aws_sdk_lakeformation::Client::grant_permissions)
            .match_requests(|r| {
                r.permissions() == [Permission::Describe]
                    && r.resource()
                        .is_some_and(|x| x.database().is_some() || x.table().is_some())
            })
            .then_output(|| GrantPermissionsOutput::builder().build());
        let workgroup = mock!(aws_sdk_athena::Client::create_work_group)
            .match_requests(|r| {
                let c = r.configuration().unwrap();
                let results = c.result_configuration().unwrap();
                r.name() == Some("pulselake-team-sepsis")
                    && c.enforce_work_group_configuration() == Some(true)
                    && c.publish_cloud_watch_metrics_enabled() == Some(true)
                    && c.bytes_scanned_cutoff_per_query() == Some(10_000_000_000)
                    && results.output_location() == Some("s3://results/teams/sepsis/")
                    && results
                        .encryption_configuration()
                        .is_some_and(|e| e.encryption_option() == &EncryptionOption::SseKms)
                    && r.tags()
                        .iter()
                        .any(|t| t.key() == Some("pulselake-team") && t.value() == Some("sepsis"))
            })
            .then_output(|| CreateWorkGroupOutput::builder().build());
        let alarm = mock!(aws_sdk_cloudwatch::Client::put_metric_alarm)
            .match_requests(|r| {
                r.alarm_name() == Some("pulselake-team-sepsis-budget")
                    && r.threshold() == Some(100_000_000_000.0)
                    && r.alarm_actions() == ["arn:aws:sns:eu-west-1:123456789012:ops"]
                    && r.metrics()
                        .iter()
                        .filter(|m| m.metric_stat().is_some())
                        .count()
                        == 3
                    && r.metrics().iter().all(|m| {
                        m.metric_stat().is_none_or(|s| {
                            s.metric().is_some_and(|m| {
                                m.dimensions().iter().any(|d| {
                                    d.name() == Some("WorkGroup")
                                        && d.value() == Some("pulselake-team-sepsis")
                                })
                            })
                        })
                    })
            })
            .then_output(|| PutMetricAlarmOutput::builder().build());
        let c = control(&[&filter, &select, &describe], &[&workgroup], &[&alarm]);
        c.create_workgroup(&t).await.unwrap();
        c.put_filter(&t, false).await.unwrap();
        c.grant(&t).await.unwrap();
        c.put_budget_alarm(&t).await.unwrap();
        assert_eq!(
            [
                filter.num_calls(),
                select.num_calls(),
                describe.num_calls(),
                workgroup.num_calls(),
                alarm.num_calls()
            ],
            [1, 1, 2, 1, 1]
        );
    }

    #[tokio::test]
    async fn update_replaces_the_filter_and_suspend_revokes_and_disables() {
        let t = team();
        let update = mock!(aws_sdk_lakeformation::Client::update_data_cells_filter)
            .match_requests(|r| {
                r.table_data()
                    .is_some_and(|f| f.name() == "pulselake-team-sepsis")
            })
            .then_output(|| UpdateDataCellsFilterOutput::builder().build());
        let revoke = mock!(aws_sdk_lakeformation::Client::revoke_permissions)
            .match_requests(|r| {
                r.principal()
                    .and_then(|p| p.data_lake_principal_identifier())
                    == Some(ROLE)
            })
            .then_output(|| RevokePermissionsOutput::builder().build());
        let disable = mock!(aws_sdk_athena::Client::update_work_group)
            .match_requests(|r| {
                r.work_group() == Some("pulselake-team-sepsis")
                    && r.state() == Some(&WorkGroupState::Disabled)
                    && r.configuration_updates()
                        .and_then(|u| u.bytes_scanned_cutoff_per_query())
                        == Some(10_000_000_000)
            })
            .then_output(|| UpdateWorkGroupOutput::builder().build());
        let c = control(&[&update, &revoke], &[&disable], &[]);
        c.put_filter(&t, true).await.unwrap();
        c.revoke(ROLE, &t.name).await.unwrap();
        c.update_workgroup(&t, false).await.unwrap();
        assert_eq!(
            [update.num_calls(), revoke.num_calls(), disable.num_calls()],
            [1, 3, 1]
        );
    }

    #[tokio::test]
    async fn remove_deletes_the_filter_and_takes_a_missing_one_as_removed() {
        let deleted = mock!(aws_sdk_lakeformation::Client::delete_data_cells_filter)
            .match_requests(|r| {
                r.name() == Some("pulselake-team-sepsis") && r.table_name() == Some("readings")
            })
            .then_output(|| DeleteDataCellsFilterOutput::builder().build());
        let c = control(&[&deleted], &[], &[]);
        c.delete_filter("pulselake-team-sepsis").await.unwrap();
        assert_eq!(deleted.num_calls(), 1);
        let gone = mock!(aws_sdk_lakeformation::Client::delete_data_cells_filter).then_error(|| {
            aws_sdk_lakeformation::operation::delete_data_cells_filter::DeleteDataCellsFilterError::EntityNotFoundException(
                aws_sdk_lakeformation::types::error::EntityNotFoundException::builder()
                    .message("filter not found")
                    .meta(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code("EntityNotFoundException")
                            .build(),
                    )
                    .build(),
            )
        });
        let c = control(&[&gone], &[], &[]);
        c.delete_filter("pulselake-team-sepsis").await.unwrap();
    }
}
