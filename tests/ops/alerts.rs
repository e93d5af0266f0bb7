//! The alerting rules (`ops/prometheus/`) and the dashboard (`ops/grafana/`): valid for
//! promtool and Grafana, every alert explained, linked to its runbook line and unit-tested
//! both firing and not firing, and every series they use served by `/metrics` (a rule on a
//! misspelt series would never fire, and nothing else would say so).
//!
//! `promtool` comes with Debian's `prometheus` package (`scripts/test` installs it); these
//! tests fail without it rather than pass unseen.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::support::{metrics, redis::RedisServer, Settings, TestApp};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `.yml` files directly in `dir` (under the repository), sorted.
fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .yml files in {dir}");
    files
}

/// Runs `promtool ARGS FILES` in the repository; fails the test when promtool is missing
/// or reports a failure, with its output.
fn promtool(args: &[&str], files: &[PathBuf]) {
    promtool_with_input(args, files, "");
}

/// [`promtool`], with `input` on its standard input.
fn promtool_with_input(args: &[&str], files: &[PathBuf], input: &str) {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(args)
        .args(files)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let output = match child {
        Ok(mut child) => {
            let mut stdin = child.stdin.take().expect("promtool's stdin");
            stdin.write_all(input.as_bytes()).expect("input written");
            drop(stdin);
            child.wait_with_output().expect("promtool ran")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool not found: install it (Debian: apt-get install prometheus) to run the alerting rule tests"
        ),
        Err(e) => panic!("promtool could not run: {e}"),
    };
    assert!(
        output.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_rules_pass_promtool_check() {
    promtool(&["check", "rules"], &yaml_files("ops/prometheus"));
}

#[test]
fn the_rule_unit_tests_pass() {
    promtool(&["test", "rules"], &yaml_files("ops/prometheus/tests"));
}

#[derive(Debug, Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    alert: Option<String>,
    expr: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct RuleTestFile {
    tests: Vec<RuleTestGroup>,
}

#[derive(Debug, Deserialize)]
struct RuleTestGroup {
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
}

#[derive(Debug, Deserialize)]
struct AlertTest {
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<serde_yaml_ng::Value>,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rules() -> Vec<Rule> {
    yaml_files("ops/prometheus")
        .iter()
        .flat_map(|path| {
            let file: RuleFile = serde_yaml_ng::from_str(&read(path))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            file.groups.into_iter().flat_map(|group| group.rules)
        })
        .collect()
}

fn alert_tests() -> Vec<AlertTest> {
    yaml_files("ops/prometheus/tests")
        .iter()
        .flat_map(|path| {
            let file: RuleTestFile = serde_yaml_ng::from_str(&read(path))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            file.tests
                .into_iter()
                .flat_map(|group| group.alert_rule_test)
        })
        .collect()
}

#[test]
fn every_alert_is_explained_linked_to_its_runbook_line_and_tested_firing_and_not() {
    let readme = read(&repo().join("README.md"));
    let tests = alert_tests();
    let alerts: Vec<(String, Rule)> = rules()
        .into_iter()
        .filter_map(|rule| Some((rule.alert.clone()?, rule)))
        .collect();
    assert!(alerts.len() >= 10, "{} alerts", alerts.len());
    let mut problems = Vec::new();
    for (name, rule) in &alerts {
        let severity = rule.labels.get("severity").map(String::as_str);
        if !matches!(severity, Some("critical" | "warning")) {
            problems.push(format!("{name}: severity {severity:?}"));
        }
        for annotation in ["summary", "description"] {
            if rule
                .annotations
                .get(annotation)
                .is_none_or(|t| t.trim().is_empty())
            {
                problems.push(format!("{name}: no {annotation}"));
            }
        }
        let anchor = name.to_lowercase();
        if rule.annotations.get("runbook_url") != Some(&format!("README.md#{anchor}")) {
            problems.push(format!("{name}: runbook_url is not README.md#{anchor}"));
        }
        if !readme.contains(&format!("<a id=\"{anchor}\"></a>")) {
            problems.push(format!("{name}: no runbook line in the README"));
        }
        let cases = tests.iter().filter(|t| &t.alertname == name);
        let (firing, quiet): (Vec<_>, Vec<_>) = cases.partition(|t| !t.exp_alerts.is_empty());
        if firing.is_empty() {
            problems.push(format!("{name}: no test where it fires"));
        }
        if quiet.is_empty() {
            problems.push(format!("{name}: no test where it does not fire"));
        }
    }
    let names: BTreeSet<&String> = alerts.iter().map(|(name, _)| name).collect();
    for test in &tests {
        if !names.contains(&test.alertname) {
            problems.push(format!("a test of {}, which is no alert", test.alertname));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

fn dashboard() -> Value {
    let path = repo().join("ops/grafana/tessera.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel of the dashboard, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// The PromQL expressions of the dashboard's panels.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_dashboard_is_importable_with_the_prometheus_datasource_as_a_variable() {
    let dashboard = dashboard();
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["uid"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a datasource variable of type prometheus"
    );
    assert_eq!(
        dashboard["__inputs"],
        Value::Null,
        "no import-time input: the datasource is picked on the dashboard"
    );
    let panels = panels(&dashboard);
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(panel["id"].as_u64().expect("an id")),
            "id of {title} is unique"
        );
        assert!(
            panel["gridPos"]["w"].as_u64().is_some(),
            "{title} is placed"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"],
            json!({"type": "prometheus", "uid": "${datasource}"}),
            "{title} queries the chosen datasource"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has queries");
        for target in targets {
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains("tessera_")),
                "{title}: {target}"
            );
            assert_eq!(target["datasource"], panel["datasource"], "{title}");
        }
    }
}

#[test]
fn the_dashboard_queries_are_valid_promql() {
    // promtool checks PromQL in rule files: each query becomes a recording rule, with the
    // dashboard's `$job` variable given a value.
    let rules: Vec<Value> = dashboard_exprs(&dashboard())
        .iter()
        .enumerate()
        .map(|(i, expr)| json!({"record": format!("dashboard:query_{i}"), "expr": expr.replace("$job", "tessera")}))
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dashboard-queries.yml");
    let yaml =
        serde_yaml_ng::to_string(&json!({"groups": [{"name": "dashboard", "rules": rules}]}))
            .expect("yaml");
    std::fs::write(&file, yaml).expect("write");
    promtool(&["check", "rules"], &[file]);
}

/// The `tessera_...` series names in a PromQL expression (recording rules, named
/// `tessera:...`, left out).
fn series_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tessera_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn series_names_are_found_in_expressions() {
    assert_eq!(
        series_in(
            r#"sum(rate(tessera_a_total{x="tessera_b"}[5m])) / tessera:c / my_tessera_d + tessera_e"#
        ),
        BTreeSet::from([
            "tessera_a_total".to_string(),
            "tessera_b".into(),
            "tessera_e".into()
        ])
    );
}

/// Sessions in Redis and a cleanup run recorded: every reading `/metrics` can serve is
/// there, and each series the rules and the dashboard use is among them.
#[tokio::test]
async fn every_series_the_rules_and_the_dashboard_use_is_served() {
    let server = RedisServer::start();
    let app = TestApp::with(Settings {
        sessions: json!({
            "store": "redis",
            "redis": {"url": server.url()},
            "metrics_token": metrics::TOKEN,
        }),
        ..Settings::default()
    })
    .await;
    app.create_user("lee@example.com", false).await;
    app.browser_logged_in_as("lee@example.com").await;
    app.task("sessions_cleanup", &[]).await.expect("cleanup");
    let text = metrics::scrape(&app).await;
    // Well-formed text that follows Prometheus's naming and help conventions.
    promtool_with_input(&["check", "metrics"], &[], &text);
    let served = metrics::series_names(&text);

    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in rules() {
        let origin = rule.alert.unwrap_or_else(|| "a recording rule".to_string());
        for name in series_in(&rule.expr) {
            used.entry(name).or_default().insert(origin.clone());
        }
    }
    for expr in dashboard_exprs(&dashboard()) {
        for name in series_in(&expr) {
            used.entry(name)
                .or_default()
                .insert("the dashboard".to_string());
        }
    }
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<_> = used
        .iter()
        .filter(|(name, _)| !served.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "used but not served: {missing:#?}\nserved: {served:#?}"
    );
}
